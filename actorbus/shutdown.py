"""Shutting a bus down: its phases, and the report of what became of every message.

``AsyncMessageBus.shutdown(timeout, drain=...)`` runs these phases, each
bounded, so it returns within ``timeout`` plus at most :data:`GRACE` twice
(cancelled handlers and ``on_stop`` hooks get one, closing the broker the other):

1. **Drain** (``drain`` seconds, half of ``timeout`` by default): the bus
   finishes its work in flight, as it runs: actors handle what reaches their
   mailboxes, and the follow-ups they publish to this bus's other actors are
   delivered and handled too, until every actor is idle (for :data:`QUIET`).
2. **Stop.** Every consumer is paused first: the broker delivers nothing new
   and keeps what it holds. Then no actor starts a new message; a handler in
   progress is left to finish until ``timeout``, and ``on_stop`` runs. Nothing
   is cancelled while time remains.
3. **Cut** (at ``timeout``): what still runs is cancelled; each handler cut
   mid-way is counted, and its message is given back like the unread ones.

Why deliveries stop after the drain rather than before it: in memory, a
pipeline of actors (a tick to a strategy, its signal to risk) is work in
flight in this very process; stopping deliveries first would strand the
signal in risk's queue, to vanish with the process. Over RabbitMQ the drain
may take more deliveries from a backlog; whatever it does not handle goes
back to the queue.

Every message the bus had taken and did not handle is given back to its queue
(RabbitMQ redelivers it; in memory a durable queue keeps it in its
:class:`~actorbus.brokers.memory.InMemoryServer` for the next bus of the
process, and it ends with the process). A non-durable queue is deleted with
the bus: what it held is *dropped*, counted by actor and named in the log.

The outcome is a :class:`ShutdownReport`, returned by ``shutdown()`` and
summed up in one log line (a WARNING when anything was left unhandled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .cell import ActorCell
from .errors import BusClosed
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .control import StopControl
    from .hosting import TreeHost
    from .router import Router
    from .subscribing import Subscriptions

__all__ = [
    "GRACE",
    "QUIET",
    "ActorShutdown",
    "ShutdownReport",
    "close",
    "end_trees",
]

logger = logging.getLogger("actorbus.bus")

GRACE = 0.5
"""Seconds past the timeout given to cancelled handlers and ``on_stop``, then to closing."""

QUIET = 0.005
"""Seconds every actor must stay idle for the drain to end: a message published a moment
ago (over RabbitMQ: confirmed, not yet delivered) gets the time to arrive."""


class ActorShutdown(msgspec.Struct, frozen=True, kw_only=True):
    """What one actor (or subscription) did with its messages while the bus shut down."""

    queue: str
    """The queue it consumed from."""
    durable: bool
    """Whether that queue outlives the bus (else what it holds is dropped with it)."""
    handled: int = 0
    """Messages handled successfully during the shutdown."""
    dead_lettered: int = 0
    """Messages that failed for good during the shutdown and went to the dead letters."""
    returned: int = 0
    """Messages taken but not handled, given back to the (durable) queue."""
    dropped: int = 0
    """Messages in its non-durable queue, deleted with the bus."""
    cut: int = 0
    """Handlers cancelled mid-way at the timeout (their messages are among ``returned``
    or ``dropped``: a cut handler's side effects may run again)."""


class ShutdownReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a shutdown did, in numbers: returned by ``shutdown()`` on both faces.

    ``handled + dead_lettered + returned + dropped`` accounts for every message
    the bus's actors held (in their mailboxes or in a handler) when it began or
    received during the drain, plus those left in their non-durable queues.
    """

    mode: str
    """The bus's mode."""
    timeout: float
    """The timeout asked for, in seconds."""
    seconds: float
    """How long the shutdown took."""
    handled: int = 0
    """Messages handled during the shutdown, all actors."""
    dead_lettered: int = 0
    """Messages dead-lettered during the shutdown."""
    returned: int = 0
    """Messages given back to durable queues unhandled."""
    dropped: int = 0
    """Messages lost with the non-durable queues deleted by the shutdown."""
    cut: int = 0
    """Handlers cancelled mid-way at the timeout."""
    actors: dict[str, ActorShutdown] = {}
    """The same, by actor name."""
    abandoned: tuple[str, ...] = ()
    """Actors whose task would not end even when cancelled (left running on the loop);
    ``("event loop",)`` when the loop itself was blocked (a plain ``def`` handler that
    never returns) and only the sync face could return."""

    @property
    def unhandled(self) -> int:
        """Messages the bus took and did not handle: ``returned + dropped``."""
        return self.returned + self.dropped

    def summary(self) -> str:
        """One line: the totals, and where the unhandled messages went."""
        line = (
            f"shut down in {self.seconds:.2f}s (timeout {self.timeout:g}s): "
            f"{self.handled} handled, {self.dead_lettered} dead-lettered, "
            f"{self.returned} returned to their queues, {self.dropped} dropped, "
            f"{self.cut} handler(s) cut at the timeout"
        )
        places = [
            f"{name} ({entry.queue}): {entry.returned} returned, {entry.dropped} dropped"
            + (f", {entry.cut} cut" if entry.cut else "")
            for name, entry in self.actors.items()
            if entry.returned or entry.dropped or entry.cut
        ]
        if places:
            line += "; " + "; ".join(places)
        if self.abandoned:
            line += "; still running, abandoned: " + ", ".join(self.abandoned)
        return line


class Accounting:
    """Counts, per cell, what happened between the start of a shutdown and its end."""

    def __init__(self, cells: Iterable[ActorCell]) -> None:
        self.cells = list(cells)
        """The cells attached when the shutdown began."""
        self._start = time.monotonic()
        self._before = {id(cell): _counters(cell) for cell in self.cells}
        self._dropped: dict[str, int] = {}

    def dropped(self, queue: str, count: int) -> None:
        """Note that a non-durable queue holding ``count`` messages was deleted."""
        self._dropped[queue] = self._dropped.get(queue, 0) + count

    def report(self, mode: str, timeout: float, abandoned: Iterable[str]) -> ShutdownReport:
        """The report, from the counters as they are now."""
        actors: dict[str, ActorShutdown] = {}
        for cell in self.cells:
            handled, dead, cut, returned = (
                now - before
                for now, before in zip(_counters(cell), self._before[id(cell)], strict=True)
            )
            durable = cell.queue not in self._dropped
            dropped = 0 if durable else self._dropped.pop(cell.queue)
            entry = ActorShutdown(
                queue=cell.queue,
                durable=durable,
                handled=handled,
                dead_lettered=dead,
                returned=returned if durable else 0,
                dropped=dropped,
                cut=cut,
            )
            earlier = actors.get(cell.name)
            if earlier is not None:  # two cells of one name: one entry for both
                entry = _merge(earlier, entry)
            actors[cell.name] = entry
        return ShutdownReport(
            mode=mode,
            timeout=timeout,
            seconds=time.monotonic() - self._start,
            handled=sum(e.handled for e in actors.values()),
            dead_lettered=sum(e.dead_lettered for e in actors.values()),
            returned=sum(e.returned for e in actors.values()),
            dropped=sum(e.dropped for e in actors.values()),
            cut=sum(e.cut for e in actors.values()),
            actors=actors,
            abandoned=tuple(abandoned),
        )


def _counters(cell: ActorCell) -> tuple[int, int, int, int]:
    stats = cell.stats
    return (stats.processed, stats.dead_lettered, stats.interrupted, stats.returned)


def _merge(a: ActorShutdown, b: ActorShutdown) -> ActorShutdown:
    return ActorShutdown(
        queue=a.queue,
        durable=a.durable and b.durable,
        handled=a.handled + b.handled,
        dead_lettered=a.dead_lettered + b.dead_lettered,
        returned=a.returned + b.returned,
        dropped=a.dropped + b.dropped,
        cut=a.cut + b.cut,
    )


def _settled(cell: ActorCell) -> bool:
    return cell.idle or not cell.running


def _ended(cell: ActorCell) -> bool:
    return not cell.running


async def drain(cells: list[ActorCell], background: set[asyncio.Task[Any]], until: float) -> bool:
    """Phase 1: wait until every cell is idle and no background publish is left.

    Waits on the cells' own signals (they tell when they go idle), not by polling.
    Returns whether it got there before ``until`` (``time.monotonic()``).
    """

    async def quiet() -> None:
        while True:
            for cell in cells:
                await cell.wait_for(partial(_settled, cell))
            if background:
                await asyncio.wait(set(background))
                continue
            await asyncio.sleep(QUIET)
            if not background and all(map(_settled, cells)):
                return

    with anyio.move_on_after(max(0.0, until - time.monotonic())):
        await quiet()
        return True
    return False


async def stop(supervisors: Iterable[Supervisor], cells: list[ActorCell], until: float) -> bool:
    """Phase 2: no new message is started; wait until ``until`` for every actor to end.

    Returns whether every actor ended by itself (no handler left to cut).
    """
    for supervisor in supervisors:
        supervisor.quiesce()

    async def ended() -> None:
        for cell in cells:
            await cell.wait_for(partial(_ended, cell))

    with anyio.move_on_after(max(0.0, until - time.monotonic())):
        await ended()
        return True
    return False


async def end_trees(
    router: Router, host: TreeHost, ended: list[anyio.Event], until: float
) -> list[str]:
    """Wait until every cancelled tree has ended; give back what the stuck ones hold.

    The trees end first (a spawn still starting gets its ``BusClosed``), then the host:
    cancelling the host's task group earlier would cancel such a spawn's caller too.
    Returns the names of the actors that would not stop (left running, detached).
    """
    with anyio.move_on_after(max(0.0, until - time.monotonic())):
        for event in ended:
            await event.wait()
    await host.close(until - time.monotonic())
    abandoned: list[str] = []
    for cell in list(router.cells):  # trees that did not end: their cells are still attached
        abandoned.append(cell.name)
        cell.abandon()
        await _quietly(router.detach(cell))
    if abandoned:
        logger.error("shutdown: %s would not stop; left running", ", ".join(abandoned))
    return abandoned


async def close(
    router: Router,
    accounting: Accounting,
    *,
    subscriptions: Subscriptions,
    announcements: set[asyncio.Task[None]],
    stops: StopControl,
    until: float,
) -> None:
    """Delete the non-durable queues (counting what they held), then close the broker."""
    with anyio.move_on_after(max(GRACE, until - time.monotonic())):
        for subscription_class_ in subscriptions.classes():
            if not subscription_class_.queue_options.durable:
                queue = subscription_class_.queue_options.name or ""
                try:
                    accounting.dropped(queue, await router.broker.queue_length(queue))
                except Exception:
                    logger.debug("could not count the messages of %s", queue, exc_info=True)
                await _quietly(router.broker.delete_queue(queue))
        if announcements:  # a moment for them to arrive, then they are given up
            await asyncio.wait(set(announcements), timeout=GRACE)
    for task in announcements:
        task.cancel()
    subscriptions.clear()
    # No reply can come any more: askers get a clear error now, not a timeout later.
    router.fail_pending(BusClosed("the message bus was shut down before the reply came"))
    with anyio.move_on_after(max(GRACE, until - time.monotonic())) as closing:
        await _quietly(stops.close())
        await _quietly(router.broker.close())
    if closing.cancelled_caught:
        logger.error("shutdown: the broker did not close in time; abandoned")


async def _quietly(operation: Awaitable[Any]) -> None:
    try:
        await operation
    except Exception:
        logger.debug("cleanup step failed", exc_info=True)
