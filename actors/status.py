"""What a running process tells about itself: live numbers, heartbeats, state changes.

While the trading system runs, :class:`LiveStatus` hands the live numbers (see
:func:`live_numbers`) to a progress callback every ``interval`` seconds,
publishes them as a COMPONENT_STATUS heartbeat every :data:`HEARTBEAT_INTERVAL`
seconds (what ``actorbus top`` shows), and announces the actors that crashed,
were restarted or are down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from actorbus import AsyncMessageBus, MessageTypes, Supervisor
from actorbus.telemetry.status import HEARTBEAT_COMPONENT, broker_status, describe_tree

from .system import TradingSystem

__all__ = [
    "HEARTBEAT_INTERVAL",
    "LiveStatus",
    "Progress",
    "announce_changes",
    "live_numbers",
    "publish_heartbeat",
]

HEARTBEAT_INTERVAL = 1.0
"""Seconds between two heartbeats of a running process."""

Progress = Callable[[dict[str, Any]], None]
"""Called about every ``interval`` seconds with the live numbers (see :func:`live_numbers`)."""


class LiveStatus:
    """The progress callback, the heartbeats and the state changes of one run."""

    def __init__(
        self,
        bus: AsyncMessageBus,
        system: TradingSystem,
        tree: Supervisor,
        *,
        started: float,
        progress: Progress | None = None,
        interval: float = 0.5,
    ) -> None:
        self.bus = bus
        """The bus the run is on."""
        self.system = system
        """The system that runs."""
        self.tree = tree
        """Its supervisor tree (or the part of it placed in this process)."""
        self.started = started
        """Monotonic time the run started."""
        self.progress = progress
        """The progress callback (``None``: none)."""
        self.interval = interval
        """Seconds between two calls of :attr:`progress`."""
        self._next_progress = started + interval
        self._next_heartbeat = started
        self._seen_states: dict[str, tuple[str, int]] = {}

    def numbers(self, now: float) -> dict[str, Any]:
        """The live numbers at monotonic time ``now``."""
        return live_numbers(self.system, self.bus, now - self.started, self.tree)

    async def update(self, now: float) -> None:
        """Call the progress callback and heartbeat when due; announce state changes."""
        if self.progress is not None and now >= self._next_progress:
            self._next_progress = now + self.interval
            self.progress(self.numbers(now))
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_INTERVAL
            await publish_heartbeat(self.bus, self.system, self.numbers(now))
        await announce_changes(self.bus, self._seen_states)

    def final(self, now: float, feed_seconds: float) -> None:
        """Give the progress callback the numbers at the end of the run, marked ``final``."""
        if self.progress is None:
            return
        final = self.numbers(now)
        final["final"] = True
        final["feed_seconds"] = feed_seconds
        self.progress(final)


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


async def publish_heartbeat(
    bus: AsyncMessageBus, system: TradingSystem, numbers: dict[str, Any]
) -> None:
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


async def announce_changes(bus: AsyncMessageBus, seen: dict[str, tuple[str, int]]) -> None:
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
