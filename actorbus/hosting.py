"""Hosting actor trees: the bus's task group, where every spawned supervisor tree runs.

:class:`TreeHost` runs each tree in its own cancel scope inside one task group on
the bus's loop, so that :meth:`TreeHost.stop` (and shutdown) can end one tree, or
all of them, while the others go on. A tree whose supervisor gives up is logged
and reported as a ``system.error`` message; a tree stopped before it had started
makes its spawn raise (``BusClosed`` during shutdown, else ``ActorStartError``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .actor import Actor
from .children import ChildSpec
from .errors import ActorStartError, BusClosed, SupervisorGaveUp
from .messages import MessageTypes, make_envelope
from .placement import Placement
from .runtime import Runtime
from .supervisor import Supervisor

__all__ = ["TreeHost", "name_of"]

logger = logging.getLogger("actorbus.bus")


class TreeHost:
    """The task group of one bus and the trees running in it."""

    def __init__(self, runtime: Runtime, *, source: str, closing: Callable[[], bool]) -> None:
        self._runtime = runtime
        self._source = source
        self._closing = closing
        self._task_group: TaskGroup | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.trees: dict[Supervisor, tuple[anyio.CancelScope, asyncio.Event]] = {}
        """Each running tree's cancel scope and the event set once it has ended."""

    async def open(self) -> None:
        """Start the task group (on the running loop); return once it takes trees."""
        ready = asyncio.get_running_loop().create_future()
        self._host = asyncio.get_running_loop().create_task(self._main(ready))
        await ready

    async def _main(self, ready: asyncio.Future[None]) -> None:
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            ready.set_result(None)
            await self._stop.wait()
            task_group.cancel_scope.cancel()

    async def spawn(self, supervisor: Supervisor, placement: Placement) -> None:
        """Run ``supervisor``'s tree (its actors ``placement`` puts here); return once started."""
        assert self._task_group is not None
        await self._task_group.start(self._run_tree, supervisor, placement)

    async def _run_tree(
        self, supervisor: Supervisor, placement: Placement, *, task_status: TaskStatus[Any]
    ) -> None:
        """Run a tree in its own cancel scope, kept in ``trees`` for stop and shutdown.

        A tree still starting is not yet in the host task group's scope (anyio moves
        it there once started), so stop and shutdown cancel this scope, not the group.
        """
        ended = asyncio.Event()
        readiness = _Readiness(task_status)
        with anyio.CancelScope() as scope:
            self.trees[supervisor] = (scope, ended)
            try:
                await supervisor.run(self._runtime, placement=placement, task_status=readiness)
            except SupervisorGaveUp as exc:
                await self._report_failure(supervisor, exc)
            finally:
                self.trees.pop(supervisor, None)
                ended.set()
        if not readiness.done:  # stopped while starting: the spawn says so
            if self._closing():
                raise BusClosed(f"the message bus was shut down while {supervisor.name} started")
            raise ActorStartError(f"{supervisor.name} was stopped before it had started")

    async def _report_failure(self, supervisor: Supervisor, error: BaseException) -> None:
        logger.error("actor tree %s stopped: %s", supervisor.name, error)
        data = {
            "source": self._source,
            "supervisor": supervisor.name,
            "error": f"{type(error).__name__}: {error}",
        }
        try:
            await self._runtime.publisher.publish(
                make_envelope(MessageTypes.SYSTEM_ERROR, data, source=self._source)
            )
        except Exception:
            logger.exception("could not publish SYSTEM_ERROR")

    async def stop(self, supervisor: Supervisor) -> None:
        """Stop one tree and wait until it has ended (nothing if it is not running)."""
        running = self.trees.get(supervisor)
        if running is not None:
            scope, ended = running
            scope.cancel()
            await ended.wait()

    async def close(self, timeout: float) -> None:
        """End the task group (after the trees, see shutdown), waiting up to ``timeout``."""
        self._stop.set()
        if self._host is not None:
            await asyncio.wait([self._host], timeout=max(0.0, timeout))


class _Readiness:
    """A tree's ``task_status``, remembering whether the tree reported readiness."""

    __slots__ = ("_status", "done")

    def __init__(self, status: TaskStatus[Any]) -> None:
        self._status = status
        self.done = False
        """Whether readiness was reported."""

    def started(self, value: Any = None) -> None:
        """The tree has started: its spawn returns."""
        self.done = True
        self._status.started(value)


def name_of(target: type[Actor] | ChildSpec) -> str:
    """The name of the one-child supervisor made for a spawned actor class or spec."""
    return target.actor_name if isinstance(target, ChildSpec) else target.default_name()
