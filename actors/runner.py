"""Running the trading system on a bus: start, trade, wind down, report.

:func:`run_trading_system` is what ``actorbus run`` does, without the command
line: spawn the tree (or the part of it placed in this process), let the feed
run (for ``duration`` seconds of the feed's time, or to its end), reporting
its progress and heartbeats meanwhile (see :mod:`~actorbus_trading.status`),
then wind down in an order that leaves a book worth auditing:

1. stop the feed (and, with ``flatten``, close every position: POSITION_CLOSE,
   sent again while a close order is rejected, up to
   :data:`~actorbus_trading.wind_down.FLATTEN_ROUNDS`);
2. wait until this process has settled (see
   :func:`~actorbus_trading.wind_down.quiesce`: no message left for its actors
   anywhere, and, when it runs the whole system, every message accounted for);
3. switch chaos off and replay this process's dead letters until none are left
   (or three rounds have passed), waiting for quiet after each;
4. ask market data for the last quote of each symbol (request/reply);
5. take the report: the system's snapshot, the bus's per-actor counters, the
   dead letters left, the throughput, and the audit's findings.

Steps 1 to 4 (:func:`~actorbus_trading.wind_down.wind_down_system`) together
take at most ``wind_down`` seconds (:data:`WIND_DOWN`): past that, or when
``abort`` is set (a Ctrl-C after the feed ended), the run reports what it has,
marked not settled (``drained`` false), which the audit counts as a problem.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from actorbus import ActorState, AsyncMessageBus, Supervisor

from .audit import audit
from .status import LiveStatus, Progress
from .system import ACTOR_CLASSES, TradingSystem
from .wind_down import WIND_DOWN, WindDownOutcome, dead_letters_by_actor, wind_down_system

__all__ = ["run_trading_system"]

PUBLISH_WINDOW = 256
"""Ticks in flight at once over RabbitMQ (each publish waits for its confirm)."""
FEED_ENDINGS = {"duration": "duration", "end of feed": "feed ended", "error": "feed failed"}
"""``ended_by`` of the run for each way the feed ends (a stopped feed: ``interrupted``)."""


async def run_trading_system(
    bus: AsyncMessageBus,
    system: TradingSystem,
    *,
    duration: float | None,
    only: Sequence[str] | None = None,
    flatten: bool = False,
    progress: Progress | None = None,
    interval: float = 0.5,
    stop: asyncio.Event | None = None,
    abort: asyncio.Event | None = None,
    wind_down: float = WIND_DOWN,
) -> dict[str, Any]:
    """Run the system, wind down, report; see the module documentation.

    ``duration``: seconds of the feed's time when the feed runs here (``None``: to
    the end of the feed), else of the wall clock (``None``: until ``stop``).
    ``stop`` ends the feed early; ``abort`` (or ``stop``, once the feed has ended)
    cuts the wind-down short.
    """
    stop = stop or asyncio.Event()
    abort = abort or asyncio.Event()
    tree = system.tree(only)
    feed_here = "market_data" in system.placed
    if feed_here:
        system.market.duration = duration
    system.market.window = 1 if bus.mode == "in_memory" else PUBLISH_WINDOW
    balance = only is None
    old_letters = await dead_letters_by_actor(bus, system)
    carried = await _carried_over(bus, system, old_letters) if balance else Counter()
    started = time.monotonic()
    await bus.spawn(tree, actors=list(system.placed) if only is not None else None)
    status = LiveStatus(bus, system, tree, started=started, progress=progress, interval=interval)
    ended_by = await _run_until_done(system, tree, status, duration=duration, stop=stop)
    outcome = await wind_down_system(
        bus,
        system,
        ended_by=ended_by,
        balance=balance,
        carried=carried,
        flatten=flatten,
        stop=stop,
        abort=abort,
        limit=wind_down,
    )
    report, feed_seconds = await _report(
        bus,
        system,
        tree,
        outcome,
        ended_by=ended_by,
        started=started,
        wind_down=wind_down,
        balance=balance,
        carried=carried,
        old_letters=old_letters,
    )
    status.final(time.monotonic(), feed_seconds)
    report["problems"] = [*_run_problems(report, feed_here), *audit([report], messages=balance)]
    return report


async def _run_until_done(
    system: TradingSystem,
    tree: Supervisor,
    status: LiveStatus,
    *,
    duration: float | None,
    stop: asyncio.Event,
) -> str:
    """Let the system run, its status reported, until the run ends; return how it ended."""
    feed_here = "market_data" in system.placed
    while True:
        now = time.monotonic()
        if stop.is_set():
            return "interrupted"
        if tree.state is ActorState.FAILED:
            return "failed"
        if feed_here and system.market.exhausted:
            return FEED_ENDINGS.get(system.market.ended_by or "", "feed ended")
        if not feed_here and duration is not None and now - status.started >= duration:
            return "duration"
        await status.update(now)
        await asyncio.sleep(0.05)


async def _report(
    bus: AsyncMessageBus,
    system: TradingSystem,
    tree: Supervisor,
    outcome: WindDownOutcome,
    *,
    ended_by: str,
    started: float,
    wind_down: float,
    balance: bool,
    carried: Mapping[str, int],
    old_letters: Mapping[str, int],
) -> tuple[dict[str, Any], float]:
    """The run's report, without its problems, and the feed's wall seconds."""
    placed = set(system.placed)
    feed_here = "market_data" in placed
    report = system.snapshot()
    report["last_quotes"] = outcome.last_quotes
    stats = bus.stats()
    report["mode"] = stats.mode
    report["ended_by"] = ended_by
    report["interrupted_wind_down"] = outcome.interrupted
    report["supervisor"] = str(tree.state)
    report["drained"] = outcome.drained
    report["wind_down_limit"] = wind_down
    report["duration"] = round(time.monotonic() - started, 3)
    report["actors"] = {
        name: msgspec.to_builtins(counters)
        for name, counters in stats.actors.items()
        if name in placed
    }
    by_actor = await dead_letters_by_actor(bus, system)
    dead_lettered = sum(a["dead_lettered"] for a in report["actors"].values())
    replayed = sum(outcome.replayed_by.values())
    remaining = sum(by_actor.values())
    old = sum(old_letters.values())
    report["dead_letters"] = {
        "dead_lettered": dead_lettered,
        "replayed_by_supervisors": max(0, dead_lettered + old - replayed - remaining),
        "replayed_at_end": replayed,
        "remaining": remaining,
        "by_actor": dict(by_actor),
    }
    market = system.market
    feed_seconds = (
        (market.ended_at or time.monotonic()) - market.started_at
        if feed_here and market.started_at is not None
        else 0.0
    )
    ticks = market.ticks
    report["counts"]["ticks"] = ticks
    report["throughput"] = {
        "feed_seconds": round(feed_seconds, 3),
        "ticks": ticks,
        "ticks_per_second": round(ticks / feed_seconds, 1) if feed_here and feed_seconds else 0.0,
    }
    if outcome.flattened is not None:
        report["flattened"] = outcome.flattened
    if balance:
        published = report["published"]
        report["accounting"] = {
            "delivered": sum(
                published.get(t, 0)
                for name in system.placed
                for t in ACTOR_CLASSES[name].handled_types()
            ),
            "carried_over": sum(carried.values()),
            "handled": sum(a["processed"] for a in report["actors"].values()),
            "conflated": sum(a["conflated"] for a in report["actors"].values()),
            "dead_lettered": remaining,
        }
        report["carried_over"] = dict(carried)
    return report, feed_seconds


def _run_problems(report: dict[str, Any], feed_here: bool) -> list[str]:
    """What makes a run fail besides the audit: not settled, feed failed, nothing traded."""
    problems: list[str] = []
    if not report["drained"]:
        why = (
            "cut short"
            if report["interrupted_wind_down"]
            else (f"not within {report['wind_down_limit']:g}s")
        )
        problems.append(f"not settled: the wind-down was {why}, so the counts are incomplete")
    feed = report.get("feed", {})
    if feed.get("error"):
        problems.append(f"feed failed: {feed['error']}")
    if feed_here and not report["counts"]["ticks"] and report["ended_by"] != "interrupted":
        problems.append("the feed published no tick")
    if report.get("flattened") is False:
        still = {
            symbol: p["quantity"]
            for symbol, p in report.get("positions", {}).items()
            if p["quantity"]
        }
        problems.append(
            "still open after --flatten: "
            + ", ".join(f"{symbol} {quantity:,}" for symbol, quantity in still.items())
        )
    return problems


async def _carried_over(
    bus: AsyncMessageBus, system: TradingSystem, old_letters: Counter[str]
) -> Counter[str]:
    """Messages waiting for each actor before the run: in its queue or its dead letters."""
    carried = Counter(old_letters)
    for name in system.placed:
        carried[name] += await bus.queue_length(f"{bus.prefix}.actor.{name}")
    return +carried
