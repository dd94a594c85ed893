"""Actors on a bus: handlers, lifecycle, retries, ask, conflation, counters."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec
import pytest
from support.waiting import wait_until

from actorbus import (
    Actor,
    ActorState,
    AskFailed,
    AskTimeout,
    AsyncMessageBus,
    Conflate,
    Envelope,
    MessageTypes,
    RetryPolicy,
    Supervisor,
    handles,
)
from actorbus.actor import _snake
from actorbus.brokers.memory import InMemoryServer
from actorbus.errors import Unroutable

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.005)


class Recorder(Actor):
    received: ClassVar[list[Any]] = []

    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, msg: Envelope) -> None:
        self.received.append(msg.data)


def test_default_names() -> None:
    assert _snake("RiskActor") == "risk"
    assert _snake("MarketDataActor") == "market_data"
    assert _snake("Strategy") == "strategy"
    assert Recorder.default_name() == "recorder"

    class Named(Actor):
        name = "custom"

    assert Named.default_name() == "custom"


def test_handles_needs_a_type() -> None:
    with pytest.raises(TypeError):
        handles()


def test_handler_lookup_exact_before_pattern() -> None:
    class Mixed(Actor):
        @handles("strategy.*")
        def any_strategy(self, msg: Envelope) -> str:
            return "pattern"

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def signal(self, msg: Envelope) -> str:
            return "exact"

    actor = Mixed()
    exact = actor.handler_for("strategy.signal")
    assert exact is not None
    assert exact[0] is Mixed.signal
    assert exact[1] is True
    pattern = actor.handler_for("strategy.status")
    assert pattern is not None
    assert pattern[0] is Mixed.any_strategy
    assert pattern[1] is False
    assert actor.handler_for("risk.error") is None
    assert Mixed.handled_types() == ("strategy.*", "strategy.signal")


def test_subclasses_inherit_and_override_handlers() -> None:
    class Base(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def a(self, msg: Envelope) -> None: ...

    class Child(Base):
        @handles(MessageTypes.RISK_ERROR)
        async def b(self, msg: Envelope) -> None: ...

    assert set(Child.handled_types()) == {"strategy.signal", "risk.error"}
    assert Base.handled_types() == ("strategy.signal",)


def test_context_before_spawn_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="spawn"):
        _ = Recorder().context


async def test_actor_receives_published_messages_in_order(bus: AsyncMessageBus) -> None:
    seen: list[int] = []

    class Ordered(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            seen.append(msg.data["n"])

    await bus.spawn(Ordered)
    for n in range(200):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: len(seen) == 200)
    assert seen == list(range(200))


async def test_one_message_at_a_time(bus: AsyncMessageBus) -> None:
    active = 0
    most = 0
    done = 0

    class Serial(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            nonlocal active, most, done
            active += 1
            most = max(most, active)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            active -= 1
            done += 1

    await bus.spawn(Serial)
    for n in range(50):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: done == 50)
    assert most == 1


async def test_sync_handlers_and_patterns(bus: AsyncMessageBus) -> None:
    seen: list[str] = []

    class Wild(Actor):
        @handles("market_data.#")
        def on_market(self, msg: Envelope) -> None:
            seen.append(msg.type)

    await bus.spawn(Wild)
    await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC"})
    await bus.publish(MessageTypes.MARKET_DATA_ERROR, {})
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: len(seen) == 2)
    assert seen == ["market_data.update", "market_data.error"]


async def test_the_design_card_example(server: InMemoryServer) -> None:
    signals: list[Any] = []
    risks: list[Any] = []

    class Strategy(Actor):
        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            await self.publish(
                MessageTypes.STRATEGY_SIGNAL, {"symbol": msg.data["symbol"], "action": "BUY"}
            )

    class Risk(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            signals.append((msg.source, msg.data))

        @handles(MessageTypes.MARKET_DATA_UPDATE)
        def on_tick(self, msg: Envelope) -> None:
            risks.append(msg.data)

    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        await bus.spawn(
            Supervisor([Strategy, Risk], strategy="one_for_one", max_restarts=3, within=5.0)
        )
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC/USDT", "price": 50000.0})
        await wait_until(lambda: len(signals) == 1 and len(risks) == 1)
    assert signals == [("strategy", {"symbol": "BTC/USDT", "action": "BUY"})]
    assert risks == [{"symbol": "BTC/USDT", "price": 50000.0}]


async def test_lifecycle_hooks_and_states(bus: AsyncMessageBus) -> None:
    events: list[str] = []

    class Hooked(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            events.append("message")

        async def on_start(self) -> None:
            events.append(f"start:{self.context.name}")

        async def on_stop(self) -> None:
            events.append("stop")

    supervisor = await bus.spawn(Hooked)
    assert events == ["start:hooked"]
    (cell,) = supervisor.cells
    assert cell.state is ActorState.RUNNING
    assert supervisor.state is ActorState.RUNNING
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: "message" in events)
    await bus.stop(supervisor)
    assert events == ["start:hooked", "message", "stop"]
    assert cell.state is ActorState.STOPPED


async def test_actor_stop_ends_a_transient_child(bus: AsyncMessageBus) -> None:
    from actorbus import ChildSpec, Restart

    starts = 0

    class Once(Actor):
        async def on_start(self) -> None:
            nonlocal starts
            starts += 1

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            self.stop()

    supervisor = await bus.spawn(Supervisor([ChildSpec(Once, restart=Restart.TRANSIENT)]))
    (cell,) = supervisor.cells
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: cell.state is ActorState.STOPPED and cell.consumer is None)
    assert starts == 1
    assert "once" not in bus.stats().actors


async def test_retry_then_success(bus: AsyncMessageBus) -> None:
    attempts: list[int] = []

    class Flaky(Actor):
        retry = FAST

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            attempts.append(msg.attempt)
            if len(attempts) < 3:
                raise RuntimeError("not yet")

    await bus.spawn(Flaky)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: bus.stats().actors["flaky"].processed == 1)
    assert attempts == [1, 2, 3]
    stats = bus.stats().actors["flaky"]
    assert stats.failed == 2
    assert stats.retried == 2
    assert stats.dead_lettered == 0
    assert await bus.dead_letters() == []


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff=0.1, multiplier=2.0, max_backoff=0.3)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    assert RetryPolicy().max_attempts == 3


async def test_ask_returns_the_handler_value(bus: AsyncMessageBus) -> None:
    class Pricer(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> dict[str, Any]:
            return {"symbol": msg.data["symbol"], "price": 42.0}

    await bus.spawn(Pricer)
    reply = await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC"}, timeout=2)
    assert reply == {"symbol": "BTC", "price": 42.0}


async def test_ask_from_an_actor(bus: AsyncMessageBus) -> None:
    results: list[Any] = []

    class Pricer(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        def on_request(self, msg: Envelope) -> float:
            return 7.0

    class Asker(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            results.append(await self.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=2))

    await bus.spawn(Supervisor([Pricer, Asker]))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: results == [7.0])


async def test_ask_timeout(bus: AsyncMessageBus) -> None:
    gate = asyncio.Event()

    class Slow(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> None:
            await gate.wait()

    await bus.spawn(Slow)
    with pytest.raises(AskTimeout, match=r"market_data\.request"):
        await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=0.05)
    gate.set()


async def test_ask_with_nobody_bound_is_unroutable(bus: AsyncMessageBus) -> None:
    with pytest.raises(Unroutable):
        await bus.ask(MessageTypes.RISK_ERROR, {}, timeout=1)


async def test_ask_failed_when_the_handler_fails_for_good(bus: AsyncMessageBus) -> None:
    class Broken(Actor):
        retry = FAST

        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> None:
            raise ValueError("no price for you")

    await bus.spawn(Broken)
    with pytest.raises(AskFailed, match="ValueError: no price for you"):
        await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=2)
    (entry,) = await bus.dead_letters()
    assert entry.attempts == 3


async def test_conflating_actor_keeps_latest_per_symbol(bus: AsyncMessageBus) -> None:
    gate = asyncio.Event()
    seen: list[tuple[str, float]] = []

    class Quotes(Actor):
        mailbox_policy = Conflate([MessageTypes.MARKET_DATA_UPDATE])

        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            await gate.wait()
            seen.append((msg.data["symbol"], msg.data["price"]))

    await bus.spawn(Quotes)
    await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "price": 0.0})
    await wait_until(lambda: bus.stats().actors["quotes"].mailbox == 0)  # being handled
    for price in range(1, 101):
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC", "price": float(price)})
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "ETH", "price": float(price)})
    assert bus.stats().actors["quotes"].mailbox == 2
    gate.set()
    await wait_until(lambda: len(seen) == 3)
    assert seen == [("BTC", 0.0), ("BTC", 100.0), ("ETH", 100.0)]
    stats = bus.stats().actors["quotes"]
    assert stats.conflated == 198
    assert stats.processed == 3


async def test_stats_counters(bus: AsyncMessageBus) -> None:
    class Counter(Actor):
        retry = RetryPolicy(max_attempts=2, backoff=0.001)

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            if msg.data.get("fail"):
                raise RuntimeError("boom")

    await bus.spawn(Counter)
    for n in range(5):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"fail": True})
    await wait_until(lambda: bus.stats().actors["counter"].dead_lettered == 1)
    stats = bus.stats()
    assert stats.mode == "in_memory"
    assert stats.closed is False
    assert msgspec.to_builtins(stats.actors["counter"]) == {
        "state": "running",
        "processed": 5,
        "failed": 2,
        "retried": 1,
        "dead_lettered": 1,
        "restarts": 0,
        "mailbox": 0,
        "conflated": 0,
        "busy": False,
        "role": None,
    }


async def test_message_without_handler_is_dead_lettered(bus: AsyncMessageBus) -> None:
    class Narrow(Actor):
        @handles("strategy.*")
        async def on_any(self, msg: Envelope) -> None: ...

    class Weird(Narrow):
        # the class is bound to strategy.* but a subclass handler_for says otherwise
        def handler_for(self, message_type: str) -> Any:
            return None

    await bus.spawn(Weird)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: bus.stats().actors["weird"].dead_lettered == 1)
    (entry,) = await bus.dead_letters()
    assert "no handler" in entry.reason
    assert entry.attempts == 0
