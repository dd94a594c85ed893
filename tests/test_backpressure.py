"""Backpressure: a slow actor and 100k messages keep memory bounded.

These tests measure depths (mailbox, broker backlog), never time.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, Conflate, Envelope, MessageTypes, handles
from actorbus.brokers.memory import InMemoryServer

pytestmark = pytest.mark.anyio

MESSAGES = 100_000


class Depths:
    """Largest depths seen while the load runs."""

    def __init__(self) -> None:
        self.mailbox = 0
        self.backlog = 0
        self.handled = 0


async def test_slow_actor_and_100k_messages(bus: AsyncMessageBus, server: InMemoryServer) -> None:
    depths = Depths()
    mailbox_size = 64

    class Slow(Actor):
        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            # slower than its publishers: a few turns of the loop per message
            for _ in range(3):
                await asyncio.sleep(0)
            depths.handled += 1

    Slow.mailbox_size = mailbox_size
    supervisor = await bus.spawn(Slow)
    (cell,) = supervisor.cells
    queue = server.queues[cell.queue]

    def sample() -> None:
        depths.mailbox = max(depths.mailbox, len(cell.mailbox))
        depths.backlog = max(depths.backlog, len(queue.backlog))

    async def publisher(offset: int, count: int) -> None:
        for n in range(offset, offset + count):
            await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "n": n})
            sample()

    gc.collect()
    before = len(gc.get_objects())
    await asyncio.gather(*(publisher(i * MESSAGES // 4, MESSAGES // 4) for i in range(4)))
    # every publish returned, yet the actor is far behind: the publishers were held back
    assert depths.handled >= MESSAGES - mailbox_size - 1
    assert depths.mailbox <= mailbox_size
    assert depths.backlog <= 4, "at most one message per waiting publisher (flow control)"
    await wait_until(lambda: depths.handled == MESSAGES)
    gc.collect()
    # nothing piled up anywhere: live objects did not grow with the message count
    assert len(gc.get_objects()) - before < 5_000
    assert bus.stats().actors["slow"].processed == MESSAGES


async def test_queue_without_consumer_is_bounded(server: InMemoryServer) -> None:
    from actorbus.brokers.base import QueueSpec
    from actorbus.errors import QueueFull

    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        assert bus.broker is not None
        await bus.broker.declare_queue(
            QueueSpec(name="idle", patterns=(MessageTypes.MARKET_DATA_UPDATE,), max_length=1000)
        )
        for n in range(1000):
            await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"n": n})
        with pytest.raises(QueueFull):
            await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"n": 1000})
        assert len(server.queues["idle"].backlog) == 1000


async def test_conflating_actor_under_100k_ticks(bus: AsyncMessageBus) -> None:
    gate = asyncio.Event()
    handled: list[Any] = []
    symbols = [f"SYM{i}" for i in range(10)]

    class Quotes(Actor):
        mailbox_size = 1000
        mailbox_policy = Conflate([MessageTypes.MARKET_DATA_UPDATE])

        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            await gate.wait()
            handled.append(msg.data)

    supervisor = await bus.spawn(Quotes)
    (cell,) = supervisor.cells
    most = 0
    for n in range(MESSAGES):
        await bus.publish(
            MessageTypes.MARKET_DATA_UPDATE, {"symbol": symbols[n % 10], "price": float(n)}
        )
        most = max(most, len(cell.mailbox))
    # never blocked, never grew past one slot per symbol (plus the one being handled)
    assert most <= len(symbols)
    gate.set()
    await wait_until(lambda: bus.stats().actors["quotes"].mailbox == 0 and not cell.busy)
    latest = {d["symbol"]: d["price"] for d in handled}
    assert latest == {symbols[i]: float(MESSAGES - 10 + i) for i in range(10)}
    stats = bus.stats().actors["quotes"]
    assert stats.processed + stats.conflated == MESSAGES


async def test_backpressure_holds_behind_a_backlog(
    bus: AsyncMessageBus, server: InMemoryServer
) -> None:
    """Messages waiting in the queue (after a restart, a replay...) must not lift backpressure."""
    handled = 0

    class Slow(Actor):
        mailbox_size = 16

        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            nonlocal handled
            for _ in range(3):
                await asyncio.sleep(0)
            handled += 1

    supervisor = await bus.spawn(Slow)
    queue = server.queues[supervisor.cells[0].queue]
    await bus.stop(supervisor)
    for n in range(1000):  # nobody consumes: they wait in the queue
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"n": n})
    assert len(queue.backlog) == 1000
    supervisor = await bus.spawn(Slow)
    (cell,) = supervisor.cells
    most_backlog = 0
    most_mailbox = 0
    for n in range(MESSAGES):
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"n": n})
        most_backlog = max(most_backlog, len(queue.backlog))
        most_mailbox = max(most_mailbox, len(cell.mailbox))
    assert most_backlog <= 1000  # it only shrank
    assert most_mailbox <= Slow.mailbox_size
    await wait_until(lambda: handled == MESSAGES + 1000)


async def test_an_actor_publishing_to_its_own_queue_past_its_prefetch_never_waits_on_itself(
    bus: AsyncMessageBus, server: InMemoryServer
) -> None:
    """Flow control holds back other publishers, never the actor that would free the room.

    Each message here makes two more, so the actor's own publishes outgrow its
    prefetch: waiting for its queue to drain would wait for itself. Its messages
    wait in the queue instead, as RabbitMQ keeps them, and it works them off.
    """
    handled: list[int] = []

    class Countdown(Actor):
        mailbox_size = 2

        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            n = msg.data["n"]
            handled.append(n)
            if n > 0:
                await self.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "n": n - 1})
                await self.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "n": 0})

    supervisor = await bus.spawn(Countdown)
    (cell,) = supervisor.cells
    async with asyncio.timeout(10.0):  # (a publisher held back for good would hang here)
        for _ in range(4):
            await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "n": 5})
        # each message n makes 2n + 1 in all
        await wait_until(lambda: len(handled) == 4 * 11, timeout=10.0)
    assert sorted(handled).count(0) == 4 * 6
    assert len(server.queues[cell.queue].backlog) == 0
