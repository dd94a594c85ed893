"""Winding a run down: stop the feed, settle, flatten, replay, last quotes.

:func:`wind_down_system` is steps 1 to 4 of a run (see
:mod:`~actorbus_trading.runner`), in this order, so the book left behind is
worth auditing:

1. stop the feed (and, with ``flatten``, close every position: POSITION_CLOSE,
   sent again while a close order is rejected, up to :data:`FLATTEN_ROUNDS`);
2. wait until this process has settled (see :func:`quiesce`: no message left
   for its actors anywhere, and, when it runs the whole system, every message
   accounted for);
3. switch chaos off and replay this process's dead letters until none are left
   (or three rounds have passed), waiting for quiet after each;
4. ask market data for the last quote of each symbol (request/reply).

All of it takes at most ``limit`` seconds (:data:`WIND_DOWN`): past that, or
when it is cut short, the wind-down is marked not settled (``drained`` false).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actorbus import AskTimeout, AsyncMessageBus, MessageTypes
from actorbus.stats import ActorStats

from .schemas import PositionClose, QuoteRequest, Tick, as_struct
from .system import ACTOR_CLASSES, TradingSystem

__all__ = [
    "WIND_DOWN",
    "WindDownOutcome",
    "dead_letters_by_actor",
    "quiesce",
    "unbalanced",
    "wind_down_system",
]

WIND_DOWN = 15.0
"""Longest wind-down in seconds, from the end of the feed to the report."""
FLATTEN_ROUNDS = 10
"""POSITION_CLOSE rounds sent while positions stay open (a close order can be rejected)."""
QUIET_POLLS = 5
"""Consecutive settled looks :func:`quiesce` wants besides its quiet time (see there)."""
POLL = 0.02
"""Seconds between two looks of :func:`quiesce`."""


@dataclass
class WindDownOutcome:
    """What the wind-down achieved, for the run's report."""

    drained: bool
    """Whether this process settled in time (and was not cut short)."""
    interrupted: bool
    """Whether the wind-down was cut short (``abort``, or ``stop`` after the feed ended)."""
    flattened: bool | None = None
    """With ``flatten``: whether every position was closed (``None``: not asked)."""
    replayed_by: Counter[str] = field(default_factory=Counter)
    """Dead letters replayed at the end, per actor."""
    last_quotes: dict[str, float] = field(default_factory=dict)
    """The last price of each symbol, as market data answered it."""


async def wind_down_system(
    bus: AsyncMessageBus,
    system: TradingSystem,
    *,
    ended_by: str,
    balance: bool,
    carried: Mapping[str, int],
    flatten: bool,
    stop: asyncio.Event,
    abort: asyncio.Event,
    limit: float = WIND_DOWN,
) -> WindDownOutcome:
    """Stop the feed and settle the system after a run; see the module documentation.

    ``ended_by`` is how the run ended (a ``failed`` tree has no actors left to wait
    for: only what is in flight settles, nothing is flattened, replayed or asked).
    ``abort`` cuts the wind-down short, and so does ``stop`` when the feed ended by
    itself (so that a Ctrl-C then ends the wait). ``balance`` and ``carried`` are
    passed on to :func:`quiesce`.
    """
    system.market.stop_feed()
    cut: tuple[asyncio.Event, ...] = (abort,) if ended_by == "interrupted" else (stop, abort)

    def halt() -> bool:
        return any(event.is_set() for event in cut)

    deadline = time.monotonic() + limit

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    failed = ended_by == "failed"
    settling = system if not failed else None
    replayed_by: Counter[str] = Counter()
    drained = await quiesce(
        bus, settling, balance=balance, carried=carried, timeout=left(), abort=halt
    )
    flat: bool | None = None
    if flatten and "position" in system.placed and not failed:
        flat, drained = await _flatten(bus, system, balance, carried, left, halt)
    system.env.chaos.enabled = False
    if not failed and not halt() and left() > 0:
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
    if "market_data" in system.placed and not failed and not halt():
        quotes = await _last_quotes(bus, system, left)
    return WindDownOutcome(
        drained=drained,
        interrupted=halt(),
        flattened=flat,
        replayed_by=replayed_by,
        last_quotes=quotes,
    )


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


async def _last_quotes(
    bus: AsyncMessageBus, system: TradingSystem, left: Callable[[], float]
) -> dict[str, float]:
    """Ask market data for the last price of each symbol, as any client would."""
    quotes: dict[str, float] = {}
    for symbol in sorted(system.market.quotes):
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
    return quotes
