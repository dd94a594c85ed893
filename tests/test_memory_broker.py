"""The in-memory broker: routing, queues, consumers, replies, dead letters."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from support.waiting import wait_until

from actorbus import DeadLetter, MessageTypes
from actorbus.brokers.base import REPLAYS_HEADER, DeadLetterFilter, FunctionSink, QueueSpec
from actorbus.brokers.memory import InMemoryBroker, InMemoryServer
from actorbus.errors import QueueFull, Unroutable
from actorbus.mailbox import Mailbox
from actorbus.messages import Delivery, Envelope, make_envelope

pytestmark = pytest.mark.anyio


@pytest.fixture
async def broker(server: InMemoryServer) -> InMemoryBroker:
    connection = InMemoryBroker(server)
    await connection.connect()
    return connection


class Sink:
    """A consumer sink that records deliveries and acks them."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        delivery.ack()

    @property
    def data(self) -> list[Any]:
        return [d.envelope.data for d in self.deliveries]


def signal(n: int, message_type: str = MessageTypes.STRATEGY_SIGNAL) -> Envelope:
    return make_envelope(message_type, {"n": n})


async def test_default_server_is_shared() -> None:
    assert InMemoryServer.default() is InMemoryServer.default()
    assert InMemoryBroker().server is InMemoryServer.default()
    assert InMemoryBroker.name == "in_memory"


async def test_topic_routing_to_bound_queues(broker: InMemoryBroker) -> None:
    exact, wild, other = Sink(), Sink(), Sink()
    await broker.declare_queue(QueueSpec(name="q.exact", patterns=("strategy.signal",)))
    await broker.declare_queue(QueueSpec(name="q.wild", patterns=("strategy.#", "*.signal")))
    await broker.declare_queue(QueueSpec(name="q.other", patterns=("risk.*",)))
    await broker.consume("q.exact", FunctionSink(exact), prefetch=10, owner="test")
    await broker.consume("q.wild", FunctionSink(wild), prefetch=10, owner="test")
    await broker.consume("q.other", FunctionSink(other), prefetch=10, owner="test")
    await broker.publish(signal(1))
    await broker.publish(signal(2, MessageTypes.STRATEGY_STATUS))
    await wait_until(lambda: len(wild.deliveries) == 2)
    assert exact.data == [{"n": 1}]
    assert wild.data == [{"n": 1}, {"n": 2}]  # bound twice, delivered once
    assert other.data == []


async def test_unrouted_publish_is_dropped_unless_mandatory(broker: InMemoryBroker) -> None:
    await broker.publish(signal(1))
    with pytest.raises(Unroutable, match=r"strategy\.signal"):
        await broker.publish(signal(1), mandatory=True)


async def test_backlog_waits_for_a_consumer_in_order(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    for n in range(10):
        await broker.publish(signal(n))
    sink = Sink()
    await broker.consume("q", FunctionSink(sink), prefetch=10, owner="test")
    await wait_until(lambda: len(sink.deliveries) == 10)
    assert sink.data == [{"n": n} for n in range(10)]


async def test_max_length_refuses_publishes(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",), max_length=3))
    for n in range(3):
        await broker.publish(signal(n))
    with pytest.raises(QueueFull, match="'q'"):
        await broker.publish(signal(3))


async def test_competing_consumers_round_robin(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    first, second = Sink(), Sink()
    await broker.consume("q", FunctionSink(first), prefetch=10, owner="test")
    await broker.consume("q", FunctionSink(second), prefetch=10, owner="test")
    for n in range(10):
        await broker.publish(signal(n))
    await wait_until(lambda: len(first.deliveries) + len(second.deliveries) == 10)
    assert len(first.deliveries) == 5
    assert len(second.deliveries) == 5


async def test_cancelled_consumer_gets_nothing_more(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    sink = Sink()
    consumer = await broker.consume("q", FunctionSink(sink), prefetch=10, owner="test")
    await broker.publish(signal(1))
    await consumer.cancel()
    await broker.publish(signal(2))
    assert sink.data == [{"n": 1}]
    assert len(broker.server.queues["q"].backlog) == 1


async def test_requeue_goes_back_to_the_head(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    mailbox = Mailbox(1)
    await broker.consume("q", mailbox, prefetch=1, owner="test")
    await broker.publish(signal(1))
    waiting = asyncio.ensure_future(broker.publish(signal(2)))  # beyond the prefetch
    await asyncio.sleep(0.01)
    first = mailbox.get_nowait()
    assert first is not None
    first.requeue()  # back at the head: delivered again before the one behind it
    again = mailbox.get_nowait()
    assert again is not None
    assert again.envelope.data == {"n": 1}
    again.ack()
    await asyncio.wait_for(waiting, 1)
    last = mailbox.get_nowait()
    assert last is not None
    assert last.envelope.data == {"n": 2}


async def test_a_publisher_waits_until_a_consumer_settles(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    mailbox = Mailbox(2)
    await broker.consume("q", mailbox, prefetch=2, owner="test")
    await broker.publish(signal(1))
    await broker.publish(signal(2))
    blocked = asyncio.ensure_future(broker.publish(signal(3)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    taken = mailbox.get_nowait()
    assert taken is not None
    await asyncio.sleep(0.01)
    assert not blocked.done(), "taken from the mailbox is not settled: the prefetch is full"
    taken.ack()
    await asyncio.wait_for(blocked, 1)
    assert len(mailbox) == 2


async def test_unbind_and_delete(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal", "risk.error")))
    await broker.unbind_queue("q", "strategy.signal")
    await broker.unbind_queue("q", "not.bound")  # harmless
    assert broker.server.bindings() == [("risk.error", "q")]
    await broker.delete_queue("q")
    await broker.delete_queue("q")  # harmless
    assert broker.server.bindings() == []
    assert "q" not in broker.server.queues
    with pytest.raises(Unroutable):
        await broker.consume("q", FunctionSink(Sink()), prefetch=1, owner="test")
    with pytest.raises(Unroutable):
        await broker.send_to_queue("q", signal(1))


async def test_redeclare_adds_bindings_once(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal", "risk.error")))
    assert broker.server.bindings() == [("strategy.signal", "q"), ("risk.error", "q")]


async def test_replies(broker: InMemoryBroker) -> None:
    got: list[Envelope] = []
    address = await broker.open_reply_address(got.append)
    reply = signal(1)
    await broker.send_reply(address, reply)
    assert got == [reply]
    await broker.send_reply("memory-reply.nobody", reply)  # dropped, not an error
    await broker.close()
    await broker.send_reply(address, reply)
    assert got == [reply]
    await broker.close()  # twice is harmless


async def test_publish_from_another_thread_reaches_this_loop(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    sink = Sink()
    await broker.consume("q", FunctionSink(sink), prefetch=10, owner="test")
    loop_thread: list[int] = []

    async def record(delivery: Delivery) -> None:
        loop_thread.append(threading.get_ident())
        await sink(delivery)

    await broker.declare_queue(QueueSpec(name="q2", patterns=("strategy.signal",)))
    await broker.consume("q2", FunctionSink(record), prefetch=10, owner="test")

    def publish_elsewhere() -> None:
        other = InMemoryBroker(broker.server)
        asyncio.run(other.publish(signal(1)))

    await asyncio.to_thread(publish_elsewhere)
    await wait_until(lambda: len(sink.deliveries) == 2)
    assert loop_thread == [threading.get_ident()]


def dead(envelope: Envelope, queue: str, actor: str) -> DeadLetter:
    return DeadLetter.for_failure(
        envelope, queue=queue, actor=actor, error=ValueError("bad"), attempts=3, first_failure=1.0
    )


async def test_dead_letter_store(broker: InMemoryBroker) -> None:
    first = dead(signal(1), "q", "a")
    second = dead(signal(2, MessageTypes.RISK_ERROR), "q", "b")
    await broker.dead_letter(first)
    await broker.dead_letter(second)
    assert await broker.dead_letters(DeadLetterFilter()) == [first, second]
    assert await broker.dead_letters(DeadLetterFilter(actor="b")) == [second]
    assert await broker.dead_letters(DeadLetterFilter(type="strategy.signal")) == [first]
    assert await broker.dead_letters(DeadLetterFilter(actor="a", type="risk.error")) == []
    assert first.error_type == "ValueError"
    assert first.reason == "bad"
    assert first.first_failure == 1.0
    assert first.last_failure >= first.first_failure
    assert await broker.purge_dead_letters(DeadLetterFilter(actor="a")) == 1
    assert await broker.dead_letters(DeadLetterFilter()) == [second]


async def test_replay_sends_back_to_the_queue_and_counts(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="q", patterns=("strategy.signal",)))
    await broker.declare_queue(QueueSpec(name="other", patterns=("strategy.signal",)))
    failed = signal(1)
    await broker.dead_letter(dead(failed, "q", "a"))
    assert await broker.replay_dead_letters(DeadLetterFilter()) == 1
    assert await broker.dead_letters(DeadLetterFilter()) == []
    (replayed,) = broker.server.queues["q"].backlog
    assert len(broker.server.queues["other"].backlog) == 0  # its own queue only
    assert replayed.id == failed.id
    assert replayed.headers[REPLAYS_HEADER] == "1"
    assert replayed.attempt == 1
    # the cap: an entry replayed max_replays times stays put
    await broker.dead_letter(dead(replayed, "q", "a"))
    assert await broker.replay_dead_letters(DeadLetterFilter(), max_replays=1) == 0
    (entry,) = await broker.dead_letters(DeadLetterFilter())
    assert entry.replays == 1


async def test_replay_keeps_entries_whose_queue_is_gone(broker: InMemoryBroker) -> None:
    await broker.declare_queue(QueueSpec(name="kept", patterns=("strategy.signal",)))
    gone = dead(signal(1), "gone", "a")
    await broker.dead_letter(gone)
    await broker.dead_letter(dead(signal(2), "kept", "b"))
    await broker.dead_letter(dead(signal(3), "kept", "b"))
    assert await broker.replay_dead_letters(DeadLetterFilter()) == 2
    assert await broker.dead_letters(DeadLetterFilter()) == [gone]
    assert [e.data for e in broker.server.queues["kept"].backlog] == [{"n": 2}, {"n": 3}]
