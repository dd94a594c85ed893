"""The whole trading system in memory: the tree, a run, the audit, chaos, a split tree."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, Supervisor, handles
from actorbus.brokers.memory import InMemoryServer
from actorbus_trading import (
    ACTOR_NAMES,
    TradingConfig,
    TradingSystem,
    audit,
    register_schemas,
    run_trading_system,
    unregister_schemas,
)
from actorbus_trading.wind_down import quiesce

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def schemas() -> Iterator[None]:
    register_schemas()
    try:
        yield
    finally:
        unregister_schemas()


async def run(config: TradingConfig, duration: float = 1.5, **options: Any) -> dict[str, Any]:
    system = TradingSystem(config)
    async with AsyncMessageBus(mode="in_memory", server=InMemoryServer()) as bus:
        return await run_trading_system(bus, system, duration=duration, **options)


def test_the_tree_groups_the_market_and_the_book() -> None:
    tree = TradingSystem().tree()
    assert tree.strategy == "one_for_one"
    book, market = tree.children
    assert isinstance(book, Supervisor)
    assert isinstance(market, Supervisor)
    names = [child.actor_name for child in book.children]  # type: ignore[union-attr]
    names += [child.actor_name for child in market.children]  # type: ignore[union-attr]
    assert names == ["risk", "execution", "exchange", "position", "strategy", "market_data"]
    assert sorted(names) == sorted(ACTOR_NAMES)


def test_unknown_actor_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown actor"):
        TradingSystem().tree(["risk", "riks"])


async def test_a_run_leaves_a_consistent_book() -> None:
    report = await run(TradingConfig(seed=1), flatten=True)
    assert report["problems"] == []
    assert report["ended_by"] == "duration"
    accounting = report["accounting"]
    assert accounting["delivered"] == accounting["handled"] + accounting["conflated"]
    assert report["counts"]["ticks"] > 1000
    assert report["counts"]["orders"] > 0
    assert report["counts"]["fills"] > 0
    assert report["orders"]["total"] == report["published"][MessageTypes.EXECUTION_ORDER_REQUEST]
    assert report["flattened"] is True  # a close for each open symbol, again if rejected
    assert report["published"][MessageTypes.POSITION_CLOSE] >= 1
    closing = [o for o in report["orders"]["list"] if o["origin"] == "close"]
    assert closing
    for order in closing:  # a close that filled left its symbol flat
        if order["state"] == "filled":
            assert report["positions"][order["symbol"]]["quantity"] == 0
    states = report["orders"]["by_state"]
    assert set(states) <= {"filled", "cancelled", "rejected"}


async def test_a_crash_loop_escalates_to_the_root_which_gives_up() -> None:
    system = TradingSystem(TradingConfig(seed=1, chaos=0.5, crash_interval=0.0))
    async with AsyncMessageBus(mode="in_memory", server=InMemoryServer()) as bus:
        errors: list[Any] = []

        async def on_error(message_type: str, data: Any) -> None:
            errors.append(data)

        await bus.subscribe(MessageTypes.SYSTEM_ERROR, on_error)
        report = await run_trading_system(bus, system, duration=10.0)
        await asyncio.sleep(0.05)
    assert report["ended_by"] == "failed"
    assert report["supervisor"] == "failed"
    assert errors
    assert "gave up" in errors[0]["error"]


async def test_chaos_shows_restarts_and_dead_letters_and_the_book_still_adds_up() -> None:
    system = TradingSystem(TradingConfig(seed=2, chaos=0.05, crash_interval=0.5))
    statuses: list[Any] = []

    async def on_status(message_type: str, data: Any) -> None:
        statuses.append(data)

    async with AsyncMessageBus(mode="in_memory", server=InMemoryServer()) as bus:
        await bus.subscribe(MessageTypes.COMPONENT_STATUS, on_status)
        report = await run_trading_system(bus, system, duration=2.0)
    restarted = {s["component"] for s in statuses if s.get("state") == "restarted"}
    incarnations = {s["component"] for s in statuses if s.get("incarnation", 1) > 1}
    assert restarted
    assert restarted <= incarnations  # each restart seen, and the new instance said hello
    assert report["problems"] == []
    assert report["chaos"]["injected"] > 0
    assert report["chaos"]["crashes"] > 0
    assert sum(a["restarts"] for a in report["actors"].values()) > 0
    assert report["dead_letters"]["dead_lettered"] > 0
    assert report["dead_letters"]["remaining"] == 0
    assert max(report["incarnations"].values()) > 1


async def test_the_audit_catches_a_broken_book() -> None:
    report = await run(TradingConfig(seed=3), duration=1.0)
    assert report["problems"] == []
    filled = next(o for o in report["orders"]["list"] if o["fills"])

    lost_fill = copy.deepcopy(report)
    lost_fill["booked_fills"] = [
        f for f in lost_fill["booked_fills"] if f[0] != filled["fills"][0][0]
    ]
    assert any("executed but not in positions" in p for p in audit([lost_fill]))

    bad_pnl = copy.deepcopy(report)
    symbol = next(iter(bad_pnl["positions"]))
    bad_pnl["positions"][symbol]["realised_pnl"] += 1.0
    assert any("realised + unrealised" in p for p in audit([bad_pnl]))

    impossible = copy.deepcopy(report)
    order = impossible["orders"]["list"][0]
    order["history"] = ["new", "filled", "acknowledged"]
    order["state"] = "acknowledged"
    problems = audit([impossible])
    assert any("impossible move filled -> acknowledged" in p for p in problems)

    lost_message = copy.deepcopy(report)
    lost_message["published"]["strategy.signal"] += 1
    assert any(p.startswith("risk:") for p in audit([lost_message]))


async def test_a_tree_split_over_two_buses_adds_up() -> None:
    """Two buses on one server stand in for two processes; RabbitMQ does it for real."""
    server = InMemoryServer()
    venue_side = ["risk", "execution", "exchange", "position"]
    market_side = ["market_data", "strategy"]
    book_system, market_system = (
        TradingSystem(TradingConfig(seed=4)),
        TradingSystem(TradingConfig(seed=4)),
    )
    async with (
        AsyncMessageBus(mode="in_memory", server=server, source="book") as book_bus,
        AsyncMessageBus(mode="in_memory", server=server, source="market") as market_bus,
    ):
        book_done = asyncio.Event()
        book_run = asyncio.create_task(
            run_trading_system(
                book_bus, book_system, duration=60.0, only=venue_side, stop=book_done
            )
        )
        await asyncio.sleep(0.2)  # the consumers' queues exist before the feed starts
        market_report = await run_trading_system(
            market_bus, market_system, duration=1.0, only=market_side
        )
        book_done.set()  # the feed is done: wind the book side down
        book_report = await book_run
    assert market_report["problems"] == []
    assert book_report["problems"] == []
    assert book_report["counts"]["fills"] > 0
    assert audit([market_report, book_report]) == []


class Slowpoke(Actor):
    """Takes longer over a message than quiesce's quiet time (as a handler waiting for a
    confirm from a busy broker does), then passes it on."""

    handled: list[str] = []

    @handles(MessageTypes.COMPONENT_STATUS)
    async def on_status(self, msg: Envelope) -> None:
        await asyncio.sleep(0.6)
        self.handled.append(msg.id)


async def test_quiesce_waits_for_a_busy_handler_not_just_for_still_counters() -> None:
    Slowpoke.handled = []
    async with AsyncMessageBus(mode="in_memory", server=InMemoryServer()) as bus:
        await bus.spawn(Slowpoke)
        sent = await bus.publish(MessageTypes.COMPONENT_STATUS, {"component": "x"})
        assert await quiesce(bus, quiet=0.3)
        assert Slowpoke.handled == [sent]
