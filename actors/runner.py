"""Running the trading system on a bus: start, trade, wind down, report.

:func:`run_trading_system` is what ``actorbus run`` does, without the command
line: spawn the tree (or the part of it placed in this process), let the feed
run for the given time, then wind down in an order that leaves a book worth
auditing:

1. stop the feed (and, with ``flatten``, send POSITION_CLOSE for every symbol);
2. wait until this process has settled (see :func:`quiesce`: no message left
   for its actors anywhere, and, when it runs the whole system, every message
   accounted for);
3. switch chaos off and replay this process's dead letters until none are left
   (or three rounds have passed), waiting for quiet after each;
4. ask market data for the last quote of each symbol (request/reply);
5. take the report: the system's snapshot, the bus's per-actor counters, the
   dead letters left, the throughput, and the audit's findings.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actorbus import ActorState, AsyncMessageBus, MessageTypes

from .audit import audit
from .schemas import PositionClose, QuoteRequest, Tick, as_struct
from .system import ACTOR_CLASSES, TradingSystem

__all__ = ["HEARTBEAT_COMPONENT", "Progress", "quiesce", "run_trading_system"]

HEARTBEAT_COMPONENT = "trading_system"
"""``component`` of the COMPONENT_STATUS heartbeat of a running system (``actorbus stats``)."""
HEARTBEAT_INTERVAL = 1.0
PUBLISH_WINDOW = 256
"""Ticks in flight at once over RabbitMQ (each publish waits for its confirm)."""

Progress = Callable[[dict[str, Any]], None]
"""Called about every ``interval`` seconds with the live numbers (see :func:`live_numbers`)."""


QUIET_POLLS = 5
"""Consecutive settled looks :func:`quiesce` wants besides its quiet time (see there)."""
POLL = 0.02


async def quiesce(
    bus: AsyncMessageBus,
    system: TradingSystem | None = None,
    *,
    balance: bool = False,
    replayed: Mapping[str, int] | None = None,
    quiet: float = 0.3,
    stall: float = 10.0,
    timeout: float = 300.0,
) -> bool:
    """Wait until this process's actors have handled everything there is for them.

    Settled means, all at once: every actor here has an empty mailbox, no handler
    running (one may be waiting for a confirm, a reply or the exchange's latency)
    and no message waiting for it in the broker. With ``system``, also: the feed
    has stopped (when it runs here), every actor placed here is running (not
    between two incarnations), and, with ``balance`` (the whole system runs in
    this process), every message published to an actor's types is handled,
    conflated or in the dead-letter queue (the audit's equation; ``replayed``
    counts the dead letters of each actor sent back since). That must hold, with
    no counter moving, for ``quiet`` seconds and at least :data:`QUIET_POLLS`
    looks in a row. Quiet time alone is no proof: on a loaded machine a message
    can sit in the broker, or a handler wait for a confirm, longer than any
    quiet time, and the counters stand still meanwhile.

    Waits as long as work is left and something moves (a backlog in RabbitMQ
    queues can take a while to drain); returns False when nothing moved for
    ``stall`` seconds while work was left, or after ``timeout`` seconds in all.
    """
    started = time.monotonic()
    last: Any = None
    changed = started
    calm_since: float | None = None
    calm_looks = 0
    while time.monotonic() - started < timeout:
        actors = bus.stats()["actors"]
        key = tuple(
            (name, a["processed"], a["failed"], a["dead_lettered"], a["conflated"], a["mailbox"])
            for name, a in sorted(actors.items())
        )
        now = time.monotonic()
        if key != last:
            last, changed, calm_since = key, now, None
        settled = not any(a["mailbox"] or a["busy"] for a in actors.values())
        if settled and system is not None:
            settled = _system_settled(system, actors, balance, replayed or {})
        if settled:
            settled = not any((await bus.queued()).values())
        if settled:
            if calm_since is None:
                calm_since, calm_looks = now, 0
            calm_looks += 1
            if now - calm_since >= quiet and calm_looks >= QUIET_POLLS:
                return True
        else:
            calm_since = None
            if now - changed >= stall:
                return False
        await asyncio.sleep(POLL)
    return False


def _system_settled(
    system: TradingSystem,
    actors: dict[str, dict[str, Any]],
    balance: bool,
    replayed: Mapping[str, int],
) -> bool:
    """The trading system's part of :func:`quiesce`: feed stopped, actors up, books balanced."""
    market = system.market
    if "market_data" in system.placed and market.feed is not None and not market.exhausted:
        return False
    if any(actors.get(name, {}).get("state") != "running" for name in system.placed):
        return False
    if not balance:
        return True  # other processes publish to these actors: no equation to check here
    published = system.env.published
    for name in system.placed:
        counters = actors[name]
        expected = sum(published[t] for t in ACTOR_CLASSES[name].handled_types())
        in_dlq = counters["dead_lettered"] - replayed.get(name, 0)
        if counters["processed"] + counters["conflated"] + in_dlq != expected:
            return False
    return True


def live_numbers(
    system: TradingSystem, bus: AsyncMessageBus, elapsed: float, tree: Any
) -> dict[str, Any]:
    """The numbers the live view shows."""
    return {
        "elapsed": elapsed,
        "counts": system.counts(),
        "positions": system.positions_report() if "position" in system.placed else {},
        "actors": bus.stats()["actors"],
        "state": str(tree.state),
    }


async def _heartbeat(bus: AsyncMessageBus, system: TradingSystem, numbers: dict[str, Any]) -> None:
    """Publish this process's counters as a COMPONENT_STATUS heartbeat."""
    await bus.publish(
        MessageTypes.COMPONENT_STATUS,
        {
            "component": HEARTBEAT_COMPONENT,
            "source": bus.source,
            "placed": list(system.placed),
            **numbers,
        },
    )


async def _announce_changes(bus: AsyncMessageBus, seen: dict[str, tuple[str, int]]) -> None:
    """Publish COMPONENT_STATUS for each actor whose state or restart count changed.

    Each trading actor announces itself when it starts (``running``, with its
    incarnation); this adds what an actor cannot say itself: that it crashed and
    was restarted, or that it is down.
    """
    for name, counters in bus.stats()["actors"].items():
        now = (counters["state"], counters["restarts"])
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
    duration: float,
    only: Sequence[str] | None = None,
    flatten: bool = False,
    progress: Progress | None = None,
    interval: float = 0.5,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:
    """Run the system for ``duration`` seconds (or until ``stop``, or the feed ends); report."""
    stop = stop or asyncio.Event()
    tree = system.tree(only)
    system.market.window = 1 if bus.mode == "in_memory" else PUBLISH_WINDOW
    started = time.monotonic()
    await bus.spawn(tree, actors=list(system.placed) if only is not None else None)
    placed = set(system.placed)
    feed_here = "market_data" in placed
    next_progress = started + interval
    next_heartbeat = started
    seen_states: dict[str, tuple[str, int]] = {}
    ended_by = "duration"
    while True:
        now = time.monotonic()
        if now - started >= duration:
            break
        if stop.is_set():
            ended_by = "interrupted"
            break
        if tree.state is ActorState.FAILED:
            ended_by = "failed"
            break
        if feed_here and system.market.exhausted:
            ended_by = "feed ended"
            break
        if progress is not None and now >= next_progress:
            next_progress = now + interval
            progress(live_numbers(system, bus, now - started, tree))
        if now >= next_heartbeat:
            next_heartbeat = now + HEARTBEAT_INTERVAL
            await _heartbeat(bus, system, live_numbers(system, bus, now - started, tree))
        await _announce_changes(bus, seen_states)
        await asyncio.sleep(min(0.05, max(0.0, duration - (now - started))))
    system.market.stop_feed()
    feed_seconds = time.monotonic() - (system.market.started_at or started)
    ticks = system.market.ticks
    strategy_ticks = bus.stats()["actors"].get("strategy", {}).get("processed", 0)
    # A failed tree has no actors left to wait for: only let what is in flight settle.
    settling = system if ended_by != "failed" else None
    balance = only is None
    replayed_by: Counter[str] = Counter()
    if flatten and "position" in placed and ended_by != "failed":
        await quiesce(bus, settling, balance=balance)
        for symbol in sorted(set(system.config.symbols) | set(system.positions.positions)):
            await bus.publish(MessageTypes.POSITION_CLOSE, PositionClose(symbol=symbol))
            system.env.published[MessageTypes.POSITION_CLOSE] += 1
    drained = await quiesce(bus, settling, balance=balance)
    system.env.chaos.enabled = False
    if ended_by != "failed":
        for _ in range(3):
            count = 0
            for name in system.placed:
                replays = await bus.replay_dead_letters(actor=name)
                replayed_by[name] += replays
                count += replays
            if not count:
                break
            drained = await quiesce(bus, settling, balance=balance, replayed=replayed_by)
    replayed = sum(replayed_by.values())
    quotes: dict[str, float] = {}
    if "market_data" in placed and ended_by != "failed":
        for symbol in sorted(system.market.quotes):  # request/reply, as any client would
            reply = await bus.ask(MessageTypes.MARKET_DATA_REQUEST, QuoteRequest(symbol=symbol))
            system.env.published[MessageTypes.MARKET_DATA_REQUEST] += 1
            if reply is not None:
                quotes[symbol] = as_struct(reply, Tick).price
    if progress is not None:
        progress(live_numbers(system, bus, time.monotonic() - started, tree))
    report = system.snapshot()
    report["last_quotes"] = quotes
    stats = bus.stats()
    report["mode"] = stats["mode"]
    report["ended_by"] = ended_by
    report["supervisor"] = str(tree.state)
    report["drained"] = drained
    report["duration"] = round(time.monotonic() - started, 3)
    report["actors"] = {
        name: counters for name, counters in stats["actors"].items() if name in placed
    }
    letters = await bus.dead_letters()
    by_actor = Counter(entry.actor for entry in letters if entry.actor in placed)
    report["dead_letters"] = {
        "dead_lettered": sum(a["dead_lettered"] for a in report["actors"].values()),
        "replayed_at_end": replayed,
        "remaining": sum(by_actor.values()),
        "by_actor": dict(by_actor),
    }
    report["throughput"] = {
        "feed_seconds": round(feed_seconds, 3),
        "ticks": ticks,
        "ticks_per_second": round(ticks / feed_seconds, 1) if feed_here and feed_seconds else 0.0,
        "strategy_ticks_per_second": (
            round(strategy_ticks / feed_seconds, 1)
            if "strategy" in placed and feed_seconds
            else 0.0
        ),
    }
    if only is None:
        published = report["published"]
        report["accounting"] = {
            "delivered": sum(
                published.get(t, 0)
                for name in system.placed
                for t in ACTOR_CLASSES[name].handled_types()
            ),
            "handled": sum(a["processed"] for a in report["actors"].values()),
            "conflated": sum(a["conflated"] for a in report["actors"].values()),
            "dead_lettered": report["dead_letters"]["remaining"],
        }
    report["problems"] = audit([report], messages=only is None)
    return report
