"""The clock actors read: real by default, replaceable for simulation and replay.

Every time-based rule of an actor (a rate limit, a latency, a pause) should read
``self.clock`` rather than the :mod:`time` module, so that a program can run the
same actors on a simulated clock (driven, for example, by the timestamps of
recorded market data) and get the same result every time::

    class Throttle(Actor):
        @handles("strategy.signal")
        async def on_signal(self, msg: Envelope) -> None:
            now = self.clock.monotonic()
            ...
            await self.clock.sleep(0.001)

A clock is anything with the three methods of :class:`Clock`; :data:`REAL_CLOCK`
is the wall clock and asyncio's sleep.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["REAL_CLOCK", "Clock", "RealClock"]


@runtime_checkable
class Clock(Protocol):
    """What an actor reads the time from."""

    def time(self) -> float:
        """Seconds since the epoch (like :func:`time.time`)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back (like :func:`time.monotonic`)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class RealClock:
    """The wall clock: :func:`time.time`, :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(seconds)


REAL_CLOCK: Clock = RealClock()
"""The clock every actor reads unless given another."""
