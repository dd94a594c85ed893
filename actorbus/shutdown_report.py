"""What a shutdown did with every message: the report, and the counting behind it.

``AsyncMessageBus.shutdown()`` (see :mod:`actorbus.shutdown` for its phases)
returns a :class:`ShutdownReport`: per actor, what was handled, dead-lettered,
given back to its queue, dropped with a non-durable queue, or cut mid-way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from .cell import ActorCell

__all__ = ["Accounting", "ActorShutdown", "ShutdownReport"]


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
