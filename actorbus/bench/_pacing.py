"""Publishing at a fixed rate against absolute deadlines, so delays never accumulate."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

__all__ = ["TICK", "paced"]

TICK = 0.001
"""Shortest sleep of the pacer: the event loop's timer resolution (uvloop's is 1 ms)."""


async def paced(
    publish: Callable[[], Awaitable[object]],
    *,
    count: int | None,
    duration: float | None,
    rate: float,
    window: int,
) -> tuple[int, float]:
    """Call ``publish`` ``count`` times (or for ``duration`` seconds) at ``rate`` per second.

    Message ``i`` is due at ``start + i / rate`` and never leaves before it; a late
    message is sent at once and the ones after it keep their own deadlines, so the
    average rate is exact whatever one publish costs. The loop's timers tick in
    milliseconds, so above 1000 msgs/s the messages due within one tick leave
    together, up to :data:`TICK` late. ``rate`` 0 publishes as fast as it goes. Up to
    ``window`` publishes are in flight at once (workers taking the next number).
    Returns how many were published and the ``time.perf_counter()`` it started at.
    """
    if count is None and duration is None:
        raise ValueError("paced() needs a count or a duration")
    numbers = itertools.count()
    published = 0
    clock = time.perf_counter
    start = clock()
    end = start + duration if duration is not None else float("inf")
    interval = 1.0 / rate if rate > 0 else 0.0
    sleep = asyncio.sleep

    async def worker() -> None:
        nonlocal published
        while True:
            number = next(numbers)
            if count is not None and number >= count:
                return
            if interval:
                due = start + number * interval
                if due >= end:
                    return
                # The loop's timers tick in milliseconds and may fire a little early:
                # sleep again until the deadline has passed, a tick at least each
                # time (a shorter sleep would spin the loop until the deadline).
                while (delay := due - clock()) > 0:
                    await sleep(max(delay, TICK))
            elif clock() >= end:
                return
            await publish()
            published += 1

    workers = window if count is None else max(1, min(window, count))
    await asyncio.gather(*(worker() for _ in range(workers)))
    return published, start
