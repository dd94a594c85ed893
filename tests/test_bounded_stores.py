"""What the in-memory broker keeps is bounded, and a dead subscription blocks nobody."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from typing import Any

import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, DeadLetter, Envelope, MessageTypes, handles
from actorbus.brokers.base import QueueSpec
from actorbus.brokers.memory import DEFAULT_MAX_DEAD_LETTERS, InMemoryBroker, InMemoryServer
from actorbus.errors import QueueFull
from actorbus.messages import make_envelope

pytestmark = pytest.mark.anyio

SIGNAL = MessageTypes.STRATEGY_SIGNAL


def failure(n: int) -> DeadLetter:
    return DeadLetter.for_failure(
        make_envelope(SIGNAL, {"n": n, "pad": "x" * 200}),
        queue="q",
        actor="a",
        error=ValueError(f"failure {n}"),
        attempts=3,
    )


async def test_dead_letters_are_capped_dropping_the_oldest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = InMemoryServer()
    assert server.max_dead_letters == DEFAULT_MAX_DEAD_LETTERS == 10_000
    broker = InMemoryBroker(server)
    # one WARNING per dead letter would fill the log capture, not the store: quiet it here
    monkeypatch.setattr(logging.getLogger("actorbus.brokers.memory"), "disabled", True)
    tracemalloc.start()
    try:
        for n in range(DEFAULT_MAX_DEAD_LETTERS):
            await broker.dead_letter(failure(n))
        gc.collect()
        at_cap, _ = tracemalloc.get_traced_memory()
        for n in range(DEFAULT_MAX_DEAD_LETTERS, 50_000):
            await broker.dead_letter(failure(n))
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = after - at_cap
    assert grown < 2 * 1024 * 1024, f"40,000 more failures grew memory by {grown} bytes"
    kept = await broker.dead_letters(_everything())
    assert len(kept) == 10_000
    assert kept[0].envelope.data["n"] == 40_000, "the oldest went first"
    assert server.dead_letters_dropped == 40_000


def _everything() -> Any:
    from actorbus.brokers.base import DeadLetterFilter

    return DeadLetterFilter()


async def test_dropping_dead_letters_is_counted_in_stats_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = InMemoryServer(max_dead_letters=3)
    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        broker = bus.broker  # type: ignore[union-attr]
        with caplog.at_level(logging.WARNING, logger="actorbus.brokers.memory"):
            for n in range(5):
                await broker.dead_letter(failure(n))
        assert [e.envelope.data["n"] for e in await bus.dead_letters()] == [2, 3, 4]
        assert bus.stats().broker.dead_letters_dropped == 2
        assert any("dead-letter store holds 3" in r.getMessage() for r in caplog.records)


received: list[Any] = []


async def left_behind(message_type: str, data: Any) -> None:
    """A module-level subscriber whose bus goes away."""


class Listener(Actor):
    """An actor whose durable queue outlives its bus."""

    @handles(SIGNAL)
    async def on_signal(self, envelope: Envelope) -> None:
        """Nothing to do."""


async def test_queues_left_by_a_bus_never_block_the_next_bus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("actorbus.brokers._memory_queue.DEFAULT_MAX_LENGTH", 1_000)
    monkeypatch.setattr("actorbus.subscription.SUBSCRIPTION_MAX_LENGTH", 500)
    server = InMemoryServer()
    async with AsyncMessageBus(mode="in_memory", server=server) as first:
        await first.subscribe(SIGNAL, left_behind)
        await first.spawn(Listener)
    got: list[int] = []
    async with AsyncMessageBus(mode="in_memory", server=server) as second:
        await second.subscribe(SIGNAL, lambda t, d: got.append(d["n"]))
        for n in range(3_000):  # past both bounds: no QueueFull, the live subscriber gets all
            await second.publish(SIGNAL, {"n": n})
        await wait_until(lambda: len(got) == 3_000)
        assert got == list(range(3_000))
        assert second.stats().broker.dropped == (3_000 - 1_000) + (3_000 - 500)
    lengths = sorted(len(q.backlog) for q in server.queues.values() if q.backlog)
    assert lengths == [500, 1_000]


async def test_an_explicit_max_length_still_refuses_when_full(server: InMemoryServer) -> None:
    broker = InMemoryBroker(server)
    await broker.declare_queue(QueueSpec(name="bounded", patterns=(SIGNAL,), max_length=2))
    for n in range(2):
        await broker.publish(make_envelope(SIGNAL, {"n": n}))
    with pytest.raises(QueueFull):
        await broker.publish(make_envelope(SIGNAL, {"n": 2}))


async def test_a_queue_expires_after_its_time_without_consumers(server: InMemoryServer) -> None:
    broker = InMemoryBroker(server)
    await broker.declare_queue(QueueSpec(name="brief", patterns=(SIGNAL,), expires=0.01))
    await broker.publish(make_envelope(SIGNAL, {"n": 0}))
    assert "brief" in server.queues
    await asyncio.sleep(0.02)
    await broker.publish(make_envelope(SIGNAL, {"n": 1}))
    assert "brief" not in server.queues


async def test_a_full_queue_does_not_keep_the_message_from_the_others(
    server: InMemoryServer,
) -> None:
    broker = InMemoryBroker(server)
    await broker.declare_queue(QueueSpec(name="a-full", patterns=(SIGNAL,), max_length=1))
    await broker.declare_queue(QueueSpec(name="b-open", patterns=(SIGNAL,)))
    await broker.publish(make_envelope(SIGNAL, {"n": 0}))
    with pytest.raises(QueueFull):  # refused, as RabbitMQ nacks it...
        await broker.publish(make_envelope(SIGNAL, {"n": 1}))
    assert len(server.queues["b-open"].backlog) == 2  # ...but the open queue has it
