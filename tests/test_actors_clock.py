"""The feed's clock: time is the latest tick's, sleepers wake in deadline order."""

from __future__ import annotations

import asyncio

import pytest

from actorbus import REAL_CLOCK, Actor, Clock
from actorbus_trading.clock import FeedClock

pytestmark = pytest.mark.anyio


async def test_sleepers_wake_in_deadline_order_when_the_feed_moves_on() -> None:
    clock = FeedClock(100.0)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.time():g}")

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2.0), ("a", 1.0), ("c", 2.0))]
    await asyncio.sleep(0)
    clock.advance(100.5)
    await asyncio.sleep(0)
    assert woke == []  # nothing is due yet
    clock.advance(102.0)
    await asyncio.gather(*tasks)
    assert woke == ["a@102", "b@102", "c@102"]  # deadline order, ties in sleeping order
    clock.advance(50.0)
    assert clock.time() == 102.0  # never back


async def test_the_end_of_the_feed_releases_every_sleeper() -> None:
    clock = FeedClock()
    task = asyncio.create_task(clock.sleep(3600.0))
    await asyncio.sleep(0)
    clock.release()
    await asyncio.wait_for(task, timeout=5)
    await asyncio.wait_for(clock.sleep(3600.0), timeout=5)  # later sleeps return at once


def test_actors_read_the_real_clock_unless_given_another() -> None:
    assert isinstance(FeedClock(), Clock)
    assert Actor().clock is REAL_CLOCK
