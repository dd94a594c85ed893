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
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .background import Background
from .cell import ActorCell
from .errors import BusClosed
from .shutdown_report import Accounting, ShutdownReport
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .control import StopControl
    from .hosting import TreeHost
    from .runtime import Runtime
    from .subscribing import Subscriptions

__all__ = ["GRACE", "QUIET", "BusParts", "shut_down"]

logger = logging.getLogger("actorbus.bus")

GRACE = 0.5
"""Seconds past the timeout given to cancelled handlers and ``on_stop``, then to closing."""

QUIET = 0.005
"""Seconds every actor must stay idle for the drain to end: a message published a moment
ago (over RabbitMQ: confirmed, not yet delivered) gets the time to arrive."""


@dataclass(frozen=True)
class BusParts:
    """What a started bus is made of, as its shutdown sees it."""

    runtime: Runtime
    """The actors' link to the broker."""
    host: TreeHost
    """The actor trees."""
    subscriptions: Subscriptions
    """The subscriptions (their non-durable queues are deleted)."""
    background: Background
    """Background publishes (waited for while draining)."""
    announcements: Background
    """Startup/shutdown announcements (given a moment, then given up)."""
    stops: StopControl
    """The control listener (closed)."""


async def shut_down(
    parts: BusParts, mode: str, timeout: float, drain_for: float, begun: float
) -> ShutdownReport:
    """Run the phases (see the module documentation); return the report.

    ``begun`` is the ``time.monotonic()`` the shutdown began at; everything is
    bounded by ``timeout`` from then, plus the :data:`GRACE` margins.
    """
    deadline = begun + max(0.0, timeout)
    runtime, host = parts.runtime, parts.host
    accounting = Accounting(runtime.cells)
    cells = accounting.cells
    # 1. Drain: finish the work in flight, follow-ups through this bus's actors included
    # (publishing stays open while handlers run).
    await drain(cells, parts.background, min(deadline, begun + drain_for))
    # 2. Stop: no new deliveries (the broker keeps what it holds), then no new message
    # started; handlers in progress have until the deadline.
    for cell in cells:
        cell.stop_deadline = deadline + GRACE
        await _quietly(runtime.pause(cell))
    trees = list(host.trees.items())
    await stop([tree for tree, _ in trees], cells, deadline)
    # 3. Cut what still runs (and spawns still starting), then wait a moment for it.
    for _, (scope, _ended) in trees:
        scope.cancel()
    ends = [ended for _, (_, ended) in trees]
    abandoned = await end_trees(runtime, host, ends, deadline + GRACE)
    await close(parts, accounting, until=deadline + 2 * GRACE)
    report = accounting.report(mode, timeout, abandoned)
    if report.unhandled or report.cut or report.abandoned:
        logger.warning("message bus %s", report.summary())
    else:
        logger.info("message bus %s", report.summary())
    return report


def _settled(cell: ActorCell) -> bool:
    return cell.idle or not cell.running


def _ended(cell: ActorCell) -> bool:
    return not cell.running


async def drain(cells: list[ActorCell], background: Background, until: float) -> bool:
    """Phase 1: wait until every cell is idle and no background publish is left.

    Waits on the cells' own signals (they tell when they go idle), not by polling.
    Returns whether it got there before ``until`` (``time.monotonic()``).
    """

    async def quiet() -> None:
        while True:
            for cell in cells:
                await cell.wait_for(partial(_settled, cell))
            if background:
                await background.wait()
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
    runtime: Runtime, host: TreeHost, ended: list[asyncio.Event], until: float
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
    for cell in list(runtime.cells):  # trees that did not end: their cells are still attached
        abandoned.append(cell.name)
        cell.abandon()
        await _quietly(runtime.detach(cell))
    if abandoned:
        logger.error("shutdown: %s would not stop; left running", ", ".join(abandoned))
    return abandoned


async def close(parts: BusParts, accounting: Accounting, *, until: float) -> None:
    """Delete the non-durable queues (counting what they held), then close the broker."""
    broker = parts.runtime.broker
    with anyio.move_on_after(max(GRACE, until - time.monotonic())):
        for queue in parts.subscriptions.private_queues():
            try:
                accounting.dropped(queue, await broker.queue_length(queue))
            except Exception:
                logger.debug("could not count the messages of %s", queue, exc_info=True)
            await _quietly(broker.delete_queue(queue))
        await parts.announcements.wait(GRACE)  # a moment for them to arrive, then given up
    parts.announcements.cancel()
    parts.subscriptions.clear()
    # No reply can come any more: askers get a clear error now, not a timeout later.
    parts.runtime.requests.fail_pending(
        BusClosed("the message bus was shut down before the reply came")
    )
    with anyio.move_on_after(max(GRACE, until - time.monotonic())) as closing:
        await _quietly(parts.runtime.close())
        await _quietly(parts.stops.close())
        await _quietly(broker.close())
    if closing.cancelled_caught:
        logger.error("shutdown: the broker did not close in time; abandoned")


async def _quietly(operation: Awaitable[Any]) -> None:
    try:
        await operation
    except Exception:
        logger.debug("cleanup step failed", exc_info=True)
