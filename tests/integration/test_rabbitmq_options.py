"""Queue options on the real broker: quorum queues, bounded queues, wire details."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any, ClassVar

import aiormq
import pytest

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, QueueOptions, handles
from actorbus.brokers.base import FunctionSink, QueueSpec
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker
from actorbus.errors import QueueFull, Unroutable
from actorbus.messages import make_envelope

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

BusFactory = Callable[..., AsyncMessageBus]
ORDER = MessageTypes.EXECUTION_ORDER_REQUEST


class Replicated(Actor):
    """Consumes from a quorum queue."""

    queue_options = QueueOptions(queue_type="quorum")
    seen: ClassVar[list[int]] = []

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        self.seen.append(envelope.data["i"])


def queue_type(name: str) -> str:
    """The broker's type of queue ``name`` (classic or quorum)."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "type"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in listing.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return parts[1]
    raise AssertionError(f"queue {name} not found")


async def test_quorum_queue(rabbit_bus: BusFactory, unique_prefix: str) -> None:
    Replicated.seen = []
    bus = rabbit_bus()
    await bus.spawn(Replicated)
    for i in range(20):
        await bus.publish(ORDER, {"i": i})
    for _ in range(1000):
        if len(Replicated.seen) == 20:
            break
        await asyncio.sleep(0.01)
    assert Replicated.seen == list(range(20))
    assert await asyncio.to_thread(queue_type, f"{unique_prefix}.actor.replicated") == "quorum"


async def test_bounded_queue_refuses_past_its_length(
    rabbit_bus: BusFactory, unique_prefix: str
) -> None:
    bus = rabbit_bus(broker_options={"nack_patience": 1.0})
    await bus.start()
    assert bus.broker is not None
    broker = bus.broker
    await broker.declare_queue(
        QueueSpec(name=f"{unique_prefix}.bounded", patterns=(ORDER,), max_length=3)
    )
    for i in range(3):
        await broker.publish(make_envelope(ORDER, {"i": i}))
    with pytest.raises(QueueFull):
        await broker.publish(make_envelope(ORDER, {"i": 3}))


async def test_a_refused_publish_goes_through_once_the_queue_takes_messages_again(
    rabbit_bus: BusFactory, unique_prefix: str, amqp: aiormq.abc.AbstractConnection
) -> None:
    """A nack is not final: a quorum queue electing a new leader refuses for seconds,
    longer on a loaded host. The publish is sent again until ``nack_patience``."""
    bus = rabbit_bus()  # the default patience
    await bus.start()
    broker = bus.broker
    assert isinstance(broker, AsyncRabbitMQBroker)
    name = f"{unique_prefix}.refusing"
    await broker.declare_queue(QueueSpec(name=name, patterns=(ORDER,), max_length=1))
    await broker.publish(make_envelope(ORDER, {"i": 0}))
    refused = asyncio.create_task(broker.publish(make_envelope(ORDER, {"i": 1})))
    await asyncio.sleep(8.0)  # longer than a few quick re-sends: refused all along
    assert not refused.done()
    assert broker.publish_nacks >= 5
    channel = await amqp.channel()
    taken = await channel.basic_get(name, no_ack=True)  # room again
    assert taken.body
    await asyncio.wait_for(refused, 5.0)
    left = await channel.queue_declare(name, passive=True)
    assert left.message_count == 1


async def test_send_to_missing_queue_is_unroutable(
    rabbit_bus: BusFactory, unique_prefix: str
) -> None:
    bus = rabbit_bus()
    await bus.start()
    assert bus.broker is not None
    with pytest.raises(Unroutable):
        await bus.broker.send_to_queue(f"{unique_prefix}.nowhere", make_envelope(ORDER, {"i": 1}))
    # the publishing channel survived the refusal
    await bus.publish(ORDER, {"i": 2})


class Once(Actor):
    """Records every call, to see copies."""

    seen: ClassVar[list[str]] = []

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        self.seen.append(envelope.id)


async def test_copies_of_a_message_are_handled_once(rabbit_bus: BusFactory) -> None:
    Once.seen = []
    bus = rabbit_bus()
    await bus.spawn(Once)
    assert bus.broker is not None
    broker = bus.broker
    envelope = make_envelope(ORDER, {"i": 1})
    await broker.publish(envelope)
    await broker.publish(envelope)  # as after a lost confirm: the same id again
    other = make_envelope(ORDER, {"i": 2})
    await broker.publish(other)
    for _ in range(500):
        if other.id in Once.seen:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert Once.seen == [envelope.id, other.id]


async def test_batched_acks_never_cover_an_unsettled_message(
    rabbit_bus: BusFactory, unique_prefix: str
) -> None:
    """Out-of-order settling: acked ones are gone, held and requeued ones come back."""
    bus = rabbit_bus()
    await bus.start()
    assert bus.broker is not None
    broker = bus.broker
    queue = f"{unique_prefix}.acks"
    await broker.declare_queue(QueueSpec(name=queue, patterns=(ORDER,)))
    for i in range(20):
        await broker.publish(make_envelope(ORDER, {"i": i}))
    held: list[Any] = []

    async def sink(delivery: Any) -> None:
        i = delivery.envelope.data["i"]
        if i % 2 == 0:
            delivery.ack()  # evens handled, odds held: no contiguous run after 0
        elif i % 3 == 0:
            delivery.requeue()
        else:
            held.append(delivery)

    consumer = await broker.consume(queue, FunctionSink(sink), prefetch=20, owner="test")
    for _ in range(200):
        if len(held) == 7:  # 1 5 7 11 13 17 19 (3 9 15 requeued, and come back)
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    await consumer.cancel()  # unsettled deliveries go back to the queue
    left: list[int] = []

    async def drain(delivery: Any) -> None:
        left.append(delivery.envelope.data["i"])
        delivery.ack()

    await broker.consume(queue, FunctionSink(drain), prefetch=50, owner="test")
    for _ in range(300):
        if len(left) >= 10:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert sorted(left) == [i for i in range(20) if i % 2]
