"""The ``MessageBroker`` protocol itself, on every broker: what a delivery means.

These tests drive the brokers directly (no bus, no actors), so they pin down
the settlement rules of ``actorbus.brokers.base`` that the runtime builds on:
prefetch, ack, requeue, pause, cancel, settling twice, and the fast paths. Each
would fail if its feature were removed from either broker (e.g. the in-memory
broker ignoring the prefetch, or its ack doing nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.rabbit_cleanup import delete_names

from actorbus.brokers.base import BrokerStats, FunctionSink, MessageBroker, QueueSpec
from actorbus.brokers.memory import InMemoryBroker, InMemoryServer
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker
from actorbus.messages import Delivery, Envelope, make_envelope, register_message_type

pytestmark = pytest.mark.anyio

TICK = register_message_type("protocol.tick")
SETTLE = 0.3
"""Seconds given to a broker to deliver what it may (over RabbitMQ: a round trip or two)."""


@pytest.fixture(
    params=[
        "in_memory",
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("rabbitmq_plain", marks=pytest.mark.rabbitmq),
    ]
)
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[MessageBroker]:
    """A connected broker of each kind, on a prefix of its own."""
    prefix = f"protocol-{uuid.uuid4().hex[:10]}"
    made: MessageBroker
    if request.param == "in_memory":
        made = InMemoryBroker(InMemoryServer(), prefix=prefix)
    else:
        url = request.getfixturevalue("rabbitmq_url")
        made = AsyncRabbitMQBroker(url, prefix=prefix, coalesce_writes=request.param == "rabbitmq")
    await made.connect()
    yield made
    await made.close()
    if isinstance(made, AsyncRabbitMQBroker):
        queues, exchanges = made.declared_names()
        await delete_names(request.getfixturevalue("rabbitmq_url"), queues, exchanges)


class Holder:
    """A consumer's sink that keeps every delivery unsettled until told otherwise."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._more = asyncio.Event()

    def offer(self, delivery: Delivery) -> bool:
        self.deliveries.append(delivery)
        self._more.set()
        return True

    async def put(self, delivery: Delivery) -> None:
        self.offer(delivery)

    async def arrival(self) -> None:
        """Return at the next delivery."""
        self._more.clear()
        await self._more.wait()

    def take_back(self, which: Callable[[Delivery], bool]) -> list[Delivery]:
        return []

    @property
    def numbers(self) -> list[int]:
        return [delivery.envelope.data["n"] for delivery in self.deliveries]


async def queue_of(broker: MessageBroker, **options: Any) -> str:
    name = f"{getattr(broker, 'prefix', 'memory')}.q.{uuid.uuid4().hex[:6]}"
    await broker.declare_queue(QueueSpec(name=name, patterns=(TICK,), **options))
    return name


def tick(n: int) -> Envelope:
    return make_envelope(TICK, {"n": n})


def publish_all(broker: MessageBroker, count: int) -> asyncio.Task[Any]:
    """Publish ``count`` ticks in order, in the background (in memory, flow control may wait)."""

    async def publish() -> None:
        for n in range(count):
            await broker.publish(tick(n))

    return asyncio.get_running_loop().create_task(publish())


async def settled_count(holder: Holder, expected: int, timeout: float = 10.0) -> None:
    """Wait until ``holder`` has ``expected`` deliveries, then a moment for any extra one."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while len(holder.deliveries) < expected:
                await holder.arrival()
    await asyncio.sleep(SETTLE)
    assert len(holder.deliveries) == expected, holder.numbers


async def test_prefetch_bounds_the_unsettled_deliveries(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    holder = Holder()
    await broker.consume(queue, holder, prefetch=3, owner="holder")
    publishing = publish_all(broker, 10)
    await settled_count(holder, 3)
    assert holder.numbers == [0, 1, 2]
    holder.deliveries[0].ack()
    await settled_count(holder, 4)  # one settled: exactly one more
    for delivery in holder.deliveries[1:]:
        delivery.ack()
    await settled_count(holder, 7)
    for delivery in holder.deliveries[4:]:
        delivery.ack()
    await settled_count(holder, 10)
    assert holder.numbers == list(range(10))
    await asyncio.wait_for(publishing, 10)


async def test_acked_messages_are_gone_and_unacked_come_back_at_cancel(
    broker: MessageBroker,
) -> None:
    queue = await queue_of(broker)
    first = Holder()
    consumer = await broker.consume(queue, first, prefetch=10, owner="first")
    await asyncio.wait_for(publish_all(broker, 6), 10)
    await settled_count(first, 6)
    for delivery in first.deliveries[:3]:
        delivery.ack()
    await asyncio.sleep(SETTLE)  # (over RabbitMQ the acks go out in the background)
    await consumer.cancel()
    first.deliveries[3].ack()  # after cancel: does nothing, the broker took it back
    second = Holder()
    await broker.consume(queue, second, prefetch=10, owner="second")
    await settled_count(second, 3)
    assert second.numbers == [3, 4, 5], "the unacked ones, in order; never the acked ones"


async def test_requeue_puts_the_message_back_at_the_head(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    holder = Holder()
    await broker.consume(queue, holder, prefetch=1, owner="holder")
    publishing = publish_all(broker, 3)
    await settled_count(holder, 1)
    holder.deliveries[0].requeue()
    await settled_count(holder, 2)
    assert holder.numbers == [0, 0], "delivered again before the messages behind it"
    holder.deliveries[1].ack()
    await settled_count(holder, 3)
    holder.deliveries[2].ack()
    await settled_count(holder, 4)
    assert holder.numbers == [0, 0, 1, 2]
    await asyncio.wait_for(publishing, 10)


async def test_settling_twice_does_nothing(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    holder = Holder()
    consumer = await broker.consume(queue, holder, prefetch=1, owner="holder")
    publishing = publish_all(broker, 2)
    await settled_count(holder, 1)
    holder.deliveries[0].ack()
    holder.deliveries[0].ack()
    holder.deliveries[0].requeue()
    await settled_count(holder, 2)
    holder.deliveries[1].ack()
    await asyncio.wait_for(publishing, 10)
    await asyncio.sleep(SETTLE)
    await consumer.cancel()
    again = Holder()
    await broker.consume(queue, again, prefetch=5, owner="again")
    await settled_count(again, 0)


async def test_pause_stops_new_deliveries_and_keeps_settling(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    holder = Holder()
    consumer = await broker.consume(queue, holder, prefetch=2, owner="holder")
    publishing = publish_all(broker, 4)
    await settled_count(holder, 2)
    await consumer.pause()
    for delivery in holder.deliveries:
        delivery.ack()
    await settled_count(holder, 2)  # room again, but paused: nothing new
    await consumer.cancel()
    later = Holder()
    await broker.consume(queue, later, prefetch=5, owner="later")
    await settled_count(later, 2)
    assert later.numbers == [2, 3], "the acked ones stayed settled after pause and cancel"
    for delivery in later.deliveries:
        delivery.ack()
    await asyncio.wait_for(publishing, 10)


async def test_competing_consumers_share_within_their_prefetch(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    one, two = Holder(), Holder()
    await broker.consume(queue, one, prefetch=2, owner="one")
    await broker.consume(queue, two, prefetch=2, owner="two")
    publishing = publish_all(broker, 6)
    await settled_count(one, 2)
    await settled_count(two, 2)
    assert sorted(one.numbers + two.numbers) == [0, 1, 2, 3]
    for delivery in one.deliveries:
        delivery.ack()
    await settled_count(one, 4)
    assert len(two.deliveries) == 2, "the consumer at its prefetch got nothing more"
    for delivery in [*one.deliveries, *two.deliveries]:
        delivery.ack()
    await asyncio.wait_for(publishing, 10)


async def test_publish_nowait_is_publish(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    got: list[Envelope] = []

    async def take(delivery: Delivery) -> None:
        got.append(delivery.envelope)
        delivery.ack()

    await broker.consume(queue, FunctionSink(take), prefetch=5, owner="taker")
    pending = broker.publish_nowait(tick(7))
    if pending is not None:
        await pending
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    assert [envelope.data for envelope in got] == [{"n": 7}]
    assert got[0].data is not tick(7).data


async def test_replies_through_the_fast_path(broker: MessageBroker) -> None:
    queue = await queue_of(broker)
    replies: list[Envelope] = []
    address = await broker.open_reply_address(replies.append)

    async def answer(delivery: Delivery) -> None:
        request = delivery.envelope
        assert request.reply_to is not None
        reply = make_envelope(TICK, {"n": request.data["n"] + 1}, correlation_id=request.id)
        pending = broker.send_reply_nowait(request.reply_to, reply)
        if pending is not None:
            await pending
        delivery.ack()

    await broker.consume(queue, FunctionSink(answer), prefetch=5, owner="server")
    await broker.publish(make_envelope(TICK, {"n": 1}, reply_to=address))
    for _ in range(300):
        if replies:
            break
        await asyncio.sleep(0.01)
    assert [reply.data for reply in replies] == [{"n": 2}]


async def test_stats_are_typed(broker: MessageBroker) -> None:
    await broker.publish(tick(1))  # nobody bound: unroutable
    stats = broker.stats()
    assert isinstance(stats, BrokerStats)
    assert stats.mode == broker.name
    assert stats.unroutable == 1
