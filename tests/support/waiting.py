"""Waiting in tests for something to happen, with a hang guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["wait_for", "wait_until"]


async def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.002
) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Block the calling thread until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.001)
