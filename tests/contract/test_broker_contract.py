"""Behaviour every broker must share, run on the in-memory broker and on the real RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from support.waiting import wait_until

from actorbus import (
    Actor,
    AsyncMessageBus,
    Conflate,
    Envelope,
    MessageTypes,
    RetryPolicy,
    SchemaError,
    handles,
    register_message_type,
)
from actorbus.errors import Unroutable

pytestmark = pytest.mark.anyio

SIGNAL = MessageTypes.STRATEGY_SIGNAL
TICK = MessageTypes.MARKET_DATA_UPDATE
ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
DEEP = register_message_type("strategy.signal.deep")


class Recorder:
    """A subscriber that keeps what it received."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []

        async def handler(message_type: str, data: Any) -> None:
            self.received.append((str(message_type), data))

        self.handler = handler


async def test_publish_subscribe_in_order(bus: AsyncMessageBus) -> None:
    recorder = Recorder()
    await bus.subscribe(SIGNAL, recorder.handler)
    for i in range(20):
        await bus.publish(SIGNAL, {"i": i})
    await wait_until(lambda: len(recorder.received) == 20)
    assert [data["i"] for _, data in recorder.received] == list(range(20))
    assert {t for t, _ in recorder.received} == {SIGNAL}


async def test_topic_wildcards(bus: AsyncMessageBus) -> None:
    star, hash_all, star_first, zero_words = Recorder(), Recorder(), Recorder(), Recorder()
    await bus.subscribe("market_data.*", star.handler)
    await bus.subscribe("#", hash_all.handler)
    await bus.subscribe("*.signal", star_first.handler)
    await bus.subscribe("strategy.signal.#", zero_words.handler)
    await bus.publish(TICK, {"n": 1})
    await bus.publish(SIGNAL, {"n": 2})
    await bus.publish(DEEP, {"n": 3})
    await bus.publish(ORDER, {"n": 4})
    await wait_until(lambda: len(hash_all.received) >= 4 and len(zero_words.received) >= 2)
    await asyncio.sleep(0.1)
    assert [d["n"] for _, d in star.received] == [1]
    assert sorted(d["n"] for t, d in hash_all.received if t != "system.startup") == [1, 2, 3, 4]
    assert [d["n"] for _, d in star_first.received] == [2]
    assert sorted(d["n"] for _, d in zero_words.received) == [2, 3]


class Worker(Actor):
    """A competing consumer: both processes' instances share its queue."""

    name = "worker"
    seen: ClassVar[list[tuple[str, int]]] = []

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        self.seen.append((envelope.headers.get("bus", "?"), envelope.data["i"]))
        await asyncio.sleep(0.002)


async def test_competing_consumers(make_bus: Callable[..., AsyncMessageBus]) -> None:
    Worker.seen = []
    first, second = make_bus(source="first"), make_bus(source="second")

    class TaggingWorker(Worker):
        @handles(ORDER)
        async def on_order(self, envelope: Envelope) -> None:
            self.seen.append((self.context.name + str(id(type(self))), envelope.data["i"]))
            await asyncio.sleep(0.002)

    class OtherWorker(TaggingWorker):
        pass

    await first.spawn(TaggingWorker)
    await second.spawn(OtherWorker)
    await asyncio.gather(*(first.publish(ORDER, {"i": i}) for i in range(40)))
    await wait_until(lambda: len(Worker.seen) >= 40)
    await asyncio.sleep(0.1)
    numbers = sorted(i for _, i in Worker.seen)
    assert numbers == list(range(40)), "every message handled exactly once"
    assert len({who for who, _ in Worker.seen}) == 2, "both consumers took a share"


class Echo(Actor):
    """Answers every ask."""

    @handles(MessageTypes.RISK_EXPOSURE_UPDATE)
    async def on_exposure(self, envelope: Envelope) -> dict[str, Any]:
        return {"echo": envelope.data, "by": self.context.name}


async def test_ask(bus: AsyncMessageBus) -> None:
    await bus.spawn(Echo)
    reply = await bus.ask(MessageTypes.RISK_EXPOSURE_UPDATE, {"x": 1}, timeout=5)
    assert reply == {"echo": {"x": 1}, "by": "echo"}
    replies = await asyncio.gather(
        *(bus.ask(MessageTypes.RISK_EXPOSURE_UPDATE, {"x": i}, timeout=5) for i in range(20))
    )
    assert [r["echo"]["x"] for r in replies] == list(range(20))


async def test_ask_nobody_is_unroutable(bus: AsyncMessageBus) -> None:
    with pytest.raises(Unroutable):
        await bus.ask(MessageTypes.POSITION_CLOSE, {"x": 1}, timeout=5)


class Flaky(Actor):
    """Fails until told to heal; counts its calls."""

    retry = RetryPolicy(max_attempts=2, backoff=0.001)
    healed: ClassVar[bool] = False
    calls: ClassVar[int] = 0
    handled: ClassVar[list[int]] = []

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        type(self).calls += 1
        if not type(self).healed:
            raise ValueError(f"cannot take order {envelope.data['i']}")
        self.handled.append(envelope.data["i"])


def reset_flaky() -> None:
    Flaky.healed, Flaky.calls, Flaky.handled = False, 0, []


async def test_retry_dead_letter_replay(bus: AsyncMessageBus) -> None:
    reset_flaky()
    await bus.spawn(Flaky)
    await bus.publish(ORDER, {"i": 7})
    await wait_until(lambda: Flaky.calls == 2)
    entries: list[Any] = []

    async def stored() -> None:
        while not entries:
            entries.extend(await bus.dead_letters(actor="flaky"))
            await asyncio.sleep(0.01)

    await asyncio.wait_for(stored(), 10)
    [entry] = entries
    assert entry.error_type == "ValueError"
    assert entry.reason == "cannot take order 7"
    assert entry.attempts == 2
    assert entry.first_failure <= entry.last_failure
    assert entry.envelope.data == {"i": 7}
    assert entry.envelope.type == ORDER
    assert entry.queue.endswith(".actor.flaky")
    assert await bus.dead_letters(actor="nobody") == []
    assert len(await bus.dead_letters(type=ORDER)) == 1

    Flaky.healed = True
    assert await bus.replay_dead_letters(actor="flaky") == 1
    await wait_until(lambda: Flaky.handled == [7])
    assert await bus.dead_letters() == []


async def test_max_replays_cap(bus: AsyncMessageBus) -> None:
    reset_flaky()
    await bus.spawn(Flaky)
    await bus.publish(ORDER, {"i": 1})
    await wait_until(lambda: Flaky.calls == 2)

    async def count_entries(expected: int) -> list[Any]:
        async with asyncio.timeout(10):
            while True:
                entries = await bus.dead_letters(actor="flaky")
                if len(entries) == expected:
                    return entries
                await asyncio.sleep(0.01)

    await count_entries(1)
    assert await bus.replay_dead_letters(actor="flaky", max_replays=1) == 1
    await wait_until(lambda: Flaky.calls == 4)
    [entry] = await count_entries(1)
    assert entry.replays == 1
    assert await bus.replay_dead_letters(actor="flaky", max_replays=1) == 0
    assert len(await bus.dead_letters(actor="flaky")) == 1


async def test_purge(bus: AsyncMessageBus) -> None:
    reset_flaky()
    await bus.spawn(Flaky)
    for i in range(3):
        await bus.publish(ORDER, {"i": i})
    await wait_until(lambda: Flaky.calls == 6)
    for _ in range(1000):
        if len(await bus.dead_letters()) == 3:
            break
        await asyncio.sleep(0.01)
    assert await bus.purge_dead_letters(type=SIGNAL) == 0
    assert await bus.purge_dead_letters(actor="flaky") == 3
    assert await bus.dead_letters() == []


async def test_bad_input_is_refused_at_publish(bus: AsyncMessageBus) -> None:
    import msgspec

    class Quote(msgspec.Struct, frozen=True):
        symbol: str
        price: float

    quote_type = register_message_type("market_data.contract_quote", Quote)
    with pytest.raises(SchemaError):
        await bus.publish(quote_type, {"symbol": "X", "price": "not a number"})
    recorder = Recorder()
    await bus.subscribe(quote_type, recorder.handler)
    await bus.publish(quote_type, {"symbol": "X", "price": 1.5})
    await wait_until(lambda: len(recorder.received) == 1)
    assert recorder.received[0][1] == Quote(symbol="X", price=1.5)


class Slow(Actor):
    """Holds each message until released; the mailbox is tiny."""

    mailbox_size = 2
    release: ClassVar[asyncio.Event]
    handled: ClassVar[int] = 0
    deepest: ClassVar[int] = 0

    @handles(TICK)
    async def on_tick(self, envelope: Envelope) -> None:
        await self.release.wait()
        type(self).handled += 1


async def test_backpressure_through_prefetch(bus: AsyncMessageBus, broker_kind: str) -> None:
    Slow.release, Slow.handled, Slow.deepest = asyncio.Event(), 0, 0
    supervisor = await bus.spawn(Slow)
    [cell] = supervisor.cells
    publishing = asyncio.gather(*(bus.publish(TICK, {"i": i}) for i in range(12)))
    for _ in range(60):
        Slow.deepest = max(Slow.deepest, len(cell.mailbox))
        await asyncio.sleep(0.005)
    assert Slow.handled == 0
    assert Slow.deepest <= Slow.mailbox_size, "never more than prefetch in the mailbox"
    if broker_kind == "in_memory":  # flow control: the publishers wait for the actor
        assert not publishing.done()
    Slow.release.set()
    await publishing
    await wait_until(lambda: Slow.handled == 12)


async def test_queued_and_busy_tell_what_an_actor_has_left(
    bus: AsyncMessageBus, broker_kind: str
) -> None:
    Slow.release, Slow.handled, Slow.deepest = asyncio.Event(), 0, 0
    await bus.spawn(Slow)
    publishing = asyncio.gather(*(bus.publish(TICK, {"i": i}) for i in range(12)))
    await wait_until(lambda: bus.stats().actors["slow"].busy)
    if broker_kind.startswith("rabbitmq"):  # confirmed: the publishers are done
        await publishing
    # Beyond the prefetch (the one being handled counts): ready in the queue, on both
    # brokers (in memory the publishers still wait for them to be handed on). Without
    # the prefetch, all twelve would have left the queue.
    expected = 12 - Slow.mailbox_size
    for _ in range(200):
        if (await bus.queued())["slow"] == expected:
            break
        await asyncio.sleep(0.01)
    assert (await bus.queued())["slow"] == expected
    Slow.release.set()
    await publishing
    await wait_until(lambda: Slow.handled == 12)
    assert await bus.queued() == {"slow": 0}
    await wait_until(lambda: not bus.stats().actors["slow"].busy)


class Crash(Exception):
    """Fatal for :class:`Fragile`: crashes the actor instead of being retried."""


class Fragile(Actor):
    """Crashes on its first message; the restarted instance handles the replay."""

    retry = RetryPolicy(max_attempts=1, backoff=0.001, fatal=(Crash,))
    crashes_left: ClassVar[int] = 1
    handled: ClassVar[list[int]] = []

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        if type(self).crashes_left > 0:
            type(self).crashes_left -= 1
            raise Crash("boom")
        self.handled.append(envelope.data["i"])


async def test_supervisor_replays_dead_letters_after_restart(bus: AsyncMessageBus) -> None:
    Fragile.crashes_left, Fragile.handled = 1, []
    await bus.spawn(Fragile)
    await bus.publish(ORDER, {"i": 42})
    await wait_until(lambda: Fragile.handled == [42])
    assert await bus.dead_letters() == []
    assert bus.stats().actors["fragile"].restarts == 1


class Latest(Actor):
    """Keeps only the newest tick per symbol; conflated ones are settled out of order."""

    mailbox_size = 50
    mailbox_policy = Conflate([TICK])
    release: ClassVar[asyncio.Event]
    seen: ClassVar[list[tuple[str, int]]] = []

    @handles(TICK)
    async def on_tick(self, envelope: Envelope) -> None:
        await self.release.wait()
        self.seen.append((envelope.data["symbol"], envelope.data["n"]))


async def test_conflation_settles_every_message(make_bus: Callable[..., AsyncMessageBus]) -> None:
    Latest.release, Latest.seen = asyncio.Event(), []
    bus = make_bus()
    supervisor = await bus.spawn(Latest)
    for n in range(30):
        await bus.publish(TICK, {"symbol": "ABC"[n % 3], "n": n})
    await wait_until(lambda: supervisor.cells[0].mailbox.conflated >= 20)
    Latest.release.set()
    await wait_until(lambda: ("C", 29) in Latest.seen)
    await asyncio.sleep(0.2)
    assert {("A", 27), ("B", 28), ("C", 29)} <= set(Latest.seen)
    await bus.stop(supervisor)
    # Everything was settled: a new consumer of the same queue gets nothing back.
    Latest.seen = []
    again = make_bus()
    await again.spawn(Latest)
    await asyncio.sleep(0.5)
    assert Latest.seen == []
