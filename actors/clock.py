"""The demo's simulated clock: time is what the feed says it is.

:class:`FeedClock` implements :class:`actorbus.Clock`. Market data moves it to
each tick's timestamp before publishing the tick (:meth:`FeedClock.advance`),
so every time-based rule of the trading actors (the strategy's signal spacing,
risk's order-rate bucket, the exchange's latency) runs on the feed's time: a CSV
file replays on its own timestamps, the simulated feed on timestamps it makes
(``1 / rate`` apart, or :data:`~actorbus_trading.feeds.UNPACED_STEP` apart with
``rate`` 0). How fast that time passes on the wall is the feed's pacing, not the
clock's business.

``sleep`` waits until the feed's time has moved on by that much. Sleepers wake
in order of their deadlines (ties in the order they went to sleep), from inside
:meth:`~FeedClock.advance`, so their order never depends on the wall clock.
When the feed ends, :meth:`~FeedClock.release` wakes every sleeper and lets
later sleeps return at once: nothing waits for a time that will never come.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FeedClock"]


class FeedClock:
    """A clock driven by the feed's timestamps; see the module documentation."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.released = False
        """Whether the feed has ended (sleeps return at once)."""

    def time(self) -> float:
        """The feed's time: the timestamp of the latest tick (epoch seconds)."""
        return self._now

    def monotonic(self) -> float:
        """The feed's time as well (it never goes back: see :meth:`advance`)."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the feed's time is ``seconds`` later than now."""
        if seconds <= 0 or self.released:
            await asyncio.sleep(0)
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), waiter))
        await waiter

    def advance(self, to: float) -> None:
        """Move the time to ``to`` (never back) and wake the sleepers now due."""
        if to > self._now:
            self._now = to
        self._wake(self._now)

    def release(self) -> None:
        """The feed has ended: wake every sleeper, and let later sleeps return at once."""
        self.released = True
        self._wake(float("inf"))

    def resume(self) -> None:
        """A feed starts (again): sleeps wait for the feed's time once more."""
        self.released = False

    def _wake(self, until: float) -> None:
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= until:
            _, _, waiter = heapq.heappop(sleepers)
            if not waiter.done():
                waiter.set_result(None)
