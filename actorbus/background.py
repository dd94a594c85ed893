"""Work a bus runs in the background, owned until it ends.

``publish_sync`` from a handler, ``publish_soon``, a subscribe made from a
handler and the bus's own announcements (startup, shutdown) do not wait for
their outcome. Each runs as a task kept in a :class:`Background` set: never
dropped while it runs (asyncio keeps only weak references to tasks), its
failure logged, and the bus's shutdown waits for it (or gives it up) within
its bounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]

logger = logging.getLogger("actorbus.bus")


class Background:
    """A set of background tasks of one kind, each logged as ``what`` if it fails."""

    __slots__ = ("_tasks", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        """What these tasks do, for the log line of one that fails."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in a task of its own, on the running loop."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", self.what, exc_info=task.exception())

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until every task (also those started meanwhile) ended, or ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            await asyncio.wait(set(self._tasks), timeout=left)

    def cancel(self) -> None:
        """Cancel every task still running."""
        for task in self._tasks:
            task.cancel()
