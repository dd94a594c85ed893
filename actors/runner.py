"""Running the trading system on a bus: start, trade, wind down, report.

:func:`run_trading_system` is what ``actorbus run`` does, without the command
line: spawn the tree (or the part of it placed in this process), let the feed
run (for ``duration`` seconds of the feed's time, or to its end), then wind
down in an order that leaves a book worth auditing:

1. stop the feed (and, with ``flatten``, close every position: POSITION_CLOSE,
   sent again while a close order is rejected, up to :data:`FLATTEN_ROUNDS`);
2. wait until this process has settled (see :func:`quiesce`: no message left
   for its actors anywhere, and, when it runs the whole system, every message
   accounted for);
3. switch chaos off and replay this process's dead letters until none are left
   (or three rounds have passed), waiting for quiet after each;
4. ask market data for the last quote of each symbol (request/reply);
5. take the report: the system's snapshot, the bus's per-actor counters, the
   dead letters left, the throughput, and the audit's findings.

Steps 1 to 4 together take at most ``wind_down`` seconds (:data:`WIND_DOWN`):
past that, or when ``abort`` is set (a Ctrl-C after the feed ended), the run
reports what it has, marked not settled (``drained`` false), which the audit
counts as a problem.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from actorbus import ActorState, AskTimeout, AsyncMessageBus, MessageTypes, Supervisor
from actorbus.stats import ActorStats
from actorbus.telemetry.status import HEARTBEAT_COMPONENT, broker_status, describe_tree

from .audit import audit
from .schemas import PositionClose, QuoteRequest, Tick, as_struct
from .system import ACTOR_CLASSES, TradingSystem

__all__ = ["Progress", "quiesce", "run_trading_system"]

HEARTBEAT_INTERVAL = 1.0
PUBLISH_WINDOW = 256
"""Ticks in flight at once over RabbitMQ (each publish waits for its confirm)."""

Progress = Callable[[dict[str, Any]], None]
"""Called about every ``interval`` seconds with the live numbers (see :func:`live_numbers`)."""


WIND_DOWN = 15.0
"""Longest wind-down in seconds, from the end of the feed to the report."""
FLATTEN_ROUNDS = 10
"""POSITION_CLOSE rounds sent while positions stay open (a close order can be rejected)."""
QUIET_POLLS = 5
"""Consecutive settled looks :func:`quiesce` wants besides its quiet time (see there)."""
POLL = 0.02


async def quiesce(
    bus: AsyncMessageBus,
    system: TradingSystem | None = None,
    *,
    balance: bool = False,
    carried: Mapping[str, int] | None = None,
    quiet: float = 0.3,
    timeout: float = WIND_DOWN,
    abort: Callable[[], bool] | None = None,
) -> bool:
    """Wait until this process's actors have handled everything there is for them.

    Settled means, all at once: every actor here has an empty mailbox, no handler
    running (one may be waiting for a confirm, a reply or the exchange's latency)
    and no message waiting for it in the broker. With ``system``, also: the feed
    has stopped (when it runs here), every actor placed here is running (not
    between two incarnations), and, with ``balance`` (the whole system runs in
    this process), the audit's equation holds for every actor: the messages
    published to its types (plus ``carried``: those waiting for it before the run)
    are handled, conflated or in the dead-letter queue now (the queue itself is
    asked, so replays by a supervisor after a restart count as they should).
    That must hold, with no counter moving, for ``quiet`` seconds and at least
    :data:`QUIET_POLLS` looks in a row. Quiet time alone is no proof: on a loaded
    machine a message can sit in the broker, or a handler wait for a confirm,
    longer than any quiet time, and the counters stand still meanwhile.

    Returns False after ``timeout`` seconds, or as soon as ``abort()`` is true.
    """
    started = time.monotonic()
    last: Any = None
    calm_since: float | None = None
    calm_looks = 0
    while time.monotonic() - started < timeout and not (abort is not None and abort()):
        actors = bus.stats().actors
        key = tuple(
            (name, a.processed, a.failed, a.dead_lettered, a.conflated, a.mailbox)
            for name, a in sorted(actors.items())
        )
        now = time.monotonic()
        if key != last:
            last, calm_since = key, None
        settled = not any(a.mailbox or a.busy for a in actors.values())
        if settled and system is not None:
            settled = _system_running(system, actors)
        if settled:
            settled = not any((await bus.queued()).values())
        if settled and system is not None and balance:
            settled = not unbalanced(
                system, actors, await dead_letters_by_actor(bus, system), carried
            )
        if settled:
            if calm_since is None:
                calm_since, calm_looks = now, 0
            calm_looks += 1
            if now - calm_since >= quiet and calm_looks >= QUIET_POLLS:
                return True
        else:
            calm_since = None
        await asyncio.sleep(POLL)
    return False


async def dead_letters_by_actor(bus: AsyncMessageBus, system: TradingSystem) -> Counter[str]:
    """Dead letters now in the queue, per actor placed in this process."""
    placed = set(system.placed)
    return Counter(entry.actor for entry in await bus.dead_letters() if entry.actor in placed)


def _system_running(system: TradingSystem, actors: dict[str, ActorStats]) -> bool:
    """The trading system's part of :func:`quiesce`: feed stopped, actors up."""
    market = system.market
    if "market_data" in system.placed and market.feed is not None and not market.exhausted:
        return False
    return all(name in actors and actors[name].state == "running" for name in system.placed)


def unbalanced(
    system: TradingSystem,
    actors: dict[str, ActorStats],
    in_dlq: Mapping[str, int],
    carried: Mapping[str, int] | None = None,
) -> dict[str, tuple[int, int]]:
    """Actors whose messages do not add up: name -> (delivered, accounted for)."""
    published = system.env.published
    carried = carried or {}
    wrong: dict[str, tuple[int, int]] = {}
    for name in system.placed:
        counters = actors[name]
        expected = sum(published[t] for t in ACTOR_CLASSES[name].handled_types())
        expected += carried.get(name, 0)
        accounted = counters.processed + counters.conflated + in_dlq.get(name, 0)
        if accounted != expected:
            wrong[name] = (expected, accounted)
    return wrong


def live_numbers(
    system: TradingSystem, bus: AsyncMessageBus, elapsed: float, tree: Supervisor
) -> dict[str, Any]:
    """The numbers the live views show (the demo's and ``actorbus top``'s), tree included."""
    return {
        "elapsed": elapsed,
        "counts": system.counts(),
        "positions": system.positions_report() if "position" in system.placed else {},
        "actors": msgspec.to_builtins(bus.stats().actors),
        "state": str(tree.state),
        "tree": describe_tree(tree),
    }


async def _heartbeat(bus: AsyncMessageBus, system: TradingSystem, numbers: dict[str, Any]) -> None:
    """Publish this process's counters as a COMPONENT_STATUS heartbeat.

    With the supervisor tree (in ``numbers``) and the broker link, so ``actorbus top``
    shows every process of a prefix as it is, not only its counters.
    """
    await bus.publish(
        MessageTypes.COMPONENT_STATUS,
        {
            "component": HEARTBEAT_COMPONENT,
            "source": bus.source,
            "placed": list(system.placed),
            "broker": broker_status(bus),
            **numbers,
        },
    )


async def _announce_changes(bus: AsyncMessageBus, seen: dict[str, tuple[str, int]]) -> None:
    """Publish COMPONENT_STATUS for each actor whose state or restart count changed.

    Each trading actor announces itself when it starts (``running``, with its
    incarnation); this adds what an actor cannot say itself: that it crashed and
    was restarted, or that it is down.
    """
    for name, counters in bus.stats().actors.items():
        now = (counters.state, counters.restarts)
        before = seen.get(name)
        seen[name] = now
        if before is None or before == now:
            continue
        state = "restarted" if now[1] > before[1] else now[0]
        if state == "running":
            continue
        await bus.publish(
            MessageTypes.COMPONENT_STATUS,
            {"component": name, "state": state, "restarts": now[1], "source": bus.source},
        )


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
    placed = set(system.placed)
    next_progress = started + interval
    next_heartbeat = started
    seen_states: dict[str, tuple[str, int]] = {}
    while True:
        now = time.monotonic()
        if stop.is_set():
            ended_by = "interrupted"
            break
        if tree.state is ActorState.FAILED:
            ended_by = "failed"
            break
        if feed_here and system.market.exhausted:
            ended_by = FEED_ENDINGS.get(system.market.ended_by or "", "feed ended")
            break
        if not feed_here and duration is not None and now - started >= duration:
            ended_by = "duration"
            break
        if progress is not None and now >= next_progress:
            next_progress = now + interval
            progress(live_numbers(system, bus, now - started, tree))
        if now >= next_heartbeat:
            next_heartbeat = now + HEARTBEAT_INTERVAL
            await _heartbeat(bus, system, live_numbers(system, bus, now - started, tree))
        await _announce_changes(bus, seen_states)
        await asyncio.sleep(0.05)
    system.market.stop_feed()
    # The wind-down: bounded, and cut short by ``abort`` (or by ``stop`` when the feed
    # ended by itself, so that a Ctrl-C then ends the wait).
    cut: tuple[asyncio.Event, ...] = (abort,) if ended_by == "interrupted" else (stop, abort)

    def halt() -> bool:
        return any(event.is_set() for event in cut)

    deadline = time.monotonic() + wind_down

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    # A failed tree has no actors left to wait for: only let what is in flight settle.
    settling = system if ended_by != "failed" else None
    replayed_by: Counter[str] = Counter()
    drained = await quiesce(
        bus, settling, balance=balance, carried=carried, timeout=left(), abort=halt
    )
    flat: bool | None = None
    if flatten and "position" in placed and ended_by != "failed":
        flat, drained = await _flatten(bus, system, balance, carried, left, halt)
    system.env.chaos.enabled = False
    if ended_by != "failed" and not halt() and left() > 0:
        for _ in range(3):
            count = 0
            for name in system.placed:
                replays = await bus.replay_dead_letters(actor=name)
                replayed_by[name] += replays
                count += replays
            if not count:
                break
            drained = await quiesce(
                bus, settling, balance=balance, carried=carried, timeout=left(), abort=halt
            )
    if halt():
        drained = False
    quotes: dict[str, float] = {}
    if "market_data" in placed and ended_by != "failed" and not halt():
        for symbol in sorted(system.market.quotes):  # request/reply, as any client would
            system.env.published[MessageTypes.MARKET_DATA_REQUEST] += 1
            try:
                reply = await bus.ask(
                    MessageTypes.MARKET_DATA_REQUEST,
                    QuoteRequest(symbol=symbol),
                    timeout=max(0.5, left()),
                )
            except AskTimeout:
                continue
            if reply is not None:
                quotes[symbol] = as_struct(reply, Tick).price
    report = system.snapshot()
    report["last_quotes"] = quotes
    stats = bus.stats()
    report["mode"] = stats.mode
    report["ended_by"] = ended_by
    report["interrupted_wind_down"] = halt()
    report["supervisor"] = str(tree.state)
    report["drained"] = drained
    report["wind_down_limit"] = wind_down
    report["duration"] = round(time.monotonic() - started, 3)
    report["actors"] = {
        name: msgspec.to_builtins(counters)
        for name, counters in stats.actors.items()
        if name in placed
    }
    by_actor = await dead_letters_by_actor(bus, system)
    dead_lettered = sum(a["dead_lettered"] for a in report["actors"].values())
    replayed = sum(replayed_by.values())
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
    if flat is not None:
        report["flattened"] = flat
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
    if progress is not None:
        final = live_numbers(system, bus, time.monotonic() - started, tree)
        final["final"] = True
        final["feed_seconds"] = feed_seconds
        progress(final)
    report["problems"] = [*_run_problems(report, feed_here), *audit([report], messages=balance)]
    return report


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


FEED_ENDINGS = {"duration": "duration", "end of feed": "feed ended", "error": "feed failed"}
"""``ended_by`` of the run for each way the feed ends (a stopped feed: ``interrupted``)."""


async def _carried_over(
    bus: AsyncMessageBus, system: TradingSystem, old_letters: Counter[str]
) -> Counter[str]:
    """Messages waiting for each actor before the run: in its queue or its dead letters."""
    carried = Counter(old_letters)
    for name in system.placed:
        carried[name] += await bus.queue_length(f"{bus.prefix}.actor.{name}")
    return +carried


async def _flatten(
    bus: AsyncMessageBus,
    system: TradingSystem,
    balance: bool,
    carried: Mapping[str, int],
    left: Callable[[], float],
    halt: Callable[[], bool],
) -> tuple[bool, bool]:
    """Close every position, again while some stay open; return (flat, settled)."""
    drained = False
    for _ in range(FLATTEN_ROUNDS):
        open_symbols = [s for s, p in sorted(system.positions.positions.items()) if p.quantity]
        if not open_symbols or halt() or left() <= 0:
            break
        for symbol in open_symbols:
            await bus.publish(MessageTypes.POSITION_CLOSE, PositionClose(symbol=symbol))
            system.env.published[MessageTypes.POSITION_CLOSE] += 1
        drained = await quiesce(
            bus, system, balance=balance, carried=carried, timeout=left(), abort=halt
        )
    flat = not any(p.quantity for p in system.positions.positions.values())
    return flat, drained
