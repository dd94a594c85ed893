"""A supervisor's child slot: one child, its current incarnation, and how it ends.

An actor child has no task of its own while it is idle: its cell starts one
when a delivery comes and lets it go when the actor has been idle for a while
(see ``cell``). Starting it runs ``on_start`` in the starter's own task, within
the child's start timeout; stopping it cuts the activation in hand, if any, and
runs ``on_stop``. A nested supervisor runs in a plain asyncio task held by its
slot; its start follows ``TaskGroup.start`` (it returns once the child reported
readiness, and raises what the child raised before that).

Either way the supervisor stops and awaits every slot before its own ``run``
returns, so no child outlives it (structured concurrency kept by hand: anyio's
task groups and cancel scopes cost about 4 KB per child, most of what an idle
actor would weigh).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .cell import STOP_TIMEOUT, ActorCell
from .children import ChildSpec, Restart

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["ChildSlot", "StartTimedOut"]

ChildRun = Callable[..., Coroutine[Any, Any, None]]
"""``run(task_status=...)``: one incarnation of a child, reporting readiness through it."""


class SlotOwner(Protocol):
    """Who hears how a child's incarnation ended: its supervisor."""

    def exited(self, slot: ChildSlot, error: BaseException | None) -> None:
        """``slot``'s child crashed (``error``) or ended normally (``None``) on its own."""

    def escaped(self, error: BaseException) -> None:
        """A child raised a ``BaseException`` (``KeyboardInterrupt``...): re-raise it."""


class StartTimedOut(Exception):
    """``on_start`` did not return within its start timeout (never retried)."""


class _Started:
    """The ``task_status`` of a child: readiness resolves the future its starter awaits.

    It lives as long as the child's task, so it lets go of the future once used.
    """

    __slots__ = ("_ready", "done")

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self._ready: asyncio.Future[None] | None = ready
        self.done = False
        """Whether readiness was reported."""

    def started(self, value: Any = None) -> None:
        """The child is ready: its starter returns."""
        ready, self._ready = self._ready, None
        if ready is None:
            raise RuntimeError("readiness was already reported")
        self.done = True
        if not ready.done():
            ready.set_result(None)

    def failed(self, error: BaseException) -> None:
        """The child could not start: its starter raises ``error``."""
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_exception(error)


class ChildSlot:
    """One child of a supervisor: its spec, its cell or supervisor, and its task.

    The event a stopper waits on is made only when someone waits (an
    ``asyncio.Event`` costs about 800 bytes, more than the rest of an idle actor's
    slot).
    """

    __slots__ = ("_finished", "_started", "cell", "owner", "running", "spec", "stopping", "task")

    def __init__(
        self, spec: ChildSpec | Supervisor, cell: ActorCell | None, owner: SlotOwner
    ) -> None:
        self.spec = spec
        """The child spec, or the nested supervisor."""
        self.cell = cell
        """The actor cell of an actor child (``None`` for a nested supervisor)."""
        self.stopping = False
        """Whether its supervisor is stopping the current incarnation (not a crash)."""
        self.task: asyncio.Task[None] | None = None
        """The task of the current (or last) incarnation."""
        self.running = False
        """Whether the child's task is alive."""
        self._finished: asyncio.Event | None = None
        self._started: _Started | None = None
        self.owner = owner
        """Who hears how each incarnation ends (its supervisor)."""

    @property
    def name(self) -> str:
        """The child's name."""
        return self.spec.actor_name if isinstance(self.spec, ChildSpec) else self.spec.name

    @property
    def restart(self) -> Restart:
        """When the child is restarted (a nested supervisor: always)."""
        return self.spec.restart if isinstance(self.spec, ChildSpec) else Restart.PERMANENT

    @property
    def cells(self) -> list[ActorCell]:
        """The actor cells this child runs (a nested supervisor's, in start order)."""
        if self.cell is not None:
            return [self.cell]
        assert not isinstance(self.spec, ChildSpec)
        return self.spec.cells

    async def start_actor(self) -> None:
        """Start the actor child's next incarnation; return once its ``on_start`` returned.

        Raises what ``on_start`` raised, or :class:`StartTimedOut` past the start timeout.
        """
        cell, spec = self.cell, self.spec
        assert cell is not None
        assert isinstance(spec, ChildSpec)
        self.stopping = False
        timeout = spec.effective_start_timeout
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                await cell.start(self)
        except TimeoutError:
            if deadline.expired():
                raise StartTimedOut(f"on_start did not return within {timeout:g}s") from None
            raise

    def actor_ended(self, error: BaseException | None) -> None:
        """The actor child's incarnation crashed (``error``) or stopped by itself."""
        if error is not None and not isinstance(error, Exception):
            self.owner.escaped(error)  # KeyboardInterrupt and the like
        elif not self.stopping:
            self.owner.exited(self, error)

    async def start(self, run: ChildRun) -> None:
        """Run ``run(task_status=...)`` in a task of its own; return once it reported readiness.

        After readiness, the end of the task is reported to the slot's owner (from the
        task's done callback: no coroutine wraps the child's own): ``exited(slot,
        error)`` for a crash (``error``) or a normal end (``None``) that its
        supervisor did not ask for, ``escaped(exc)`` for a ``BaseException`` that is
        not a cancellation (``KeyboardInterrupt``...). An actor child whose
        ``on_start`` outlasts its start timeout raises :class:`StartTimedOut`; an
        error before readiness is raised here.
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        started = self._started = _Started(ready)
        self.running, self.stopping, self._finished = True, False, None
        task = loop.create_task(run(task_status=started))
        task.add_done_callback(self._ended)
        self.task = task
        # An actor's on_start has its own timeout; a nested supervisor's children have theirs.
        timeout = self.spec.effective_start_timeout if isinstance(self.spec, ChildSpec) else None
        try:
            await asyncio.wait([ready], timeout=timeout)
            if not ready.done():
                raise StartTimedOut(f"on_start did not return within {timeout:g}s")
            await ready
        except BaseException:
            if not ready.done():
                ready.cancel()  # the child's report of its end goes nowhere: nobody waits
            if not task.done():
                task.cancel()
            raise

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The task of one incarnation ended; a failure before readiness goes to its starter."""
        started, self._started = self._started, None
        if task is not self.task or started is None:
            return  # (an earlier incarnation, already replaced)
        self.running = False
        finished, self._finished = self._finished, None
        if finished is not None:
            finished.set()
        if task.cancelled():  # stopped: by its supervisor, or with the whole tree
            if not started.done:
                started.failed(RuntimeError(f"{self.name} was stopped before it was ready"))
            return
        error = task.exception()
        if not started.done:
            started.failed(error or RuntimeError(f"{self.name} ended before it was ready"))
        elif error is not None and not isinstance(error, Exception):
            self.owner.escaped(error)  # KeyboardInterrupt and the like
        elif not self.stopping:
            self.owner.exited(self, error)

    async def stop(self) -> None:
        """Stop the child's incarnation and await its end (cancelling again if need be)."""
        self.stopping = True
        if self.cell is not None:
            await self.cell.stop()
            return
        task = self.task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=STOP_TIMEOUT + 1)
        await self.wait_finished()

    async def wait_finished(self) -> None:
        """Return once the child's task has ended (at once when it is not running)."""
        if not self.running:
            return
        if self._finished is None:
            self._finished = asyncio.Event()
        await self._finished.wait()


async def stop_all(slots: list[ChildSlot]) -> None:
    """Stop every child, last started first, and await them all.

    Nested supervisors' tasks are cancelled (again after a grace period, should
    one swallow its cancellation) while the actors stop; the caller bounds the
    whole wait.
    """
    tasks = [slot.task for slot in slots if slot.task is not None and not slot.task.done()]
    for slot in reversed(slots):
        slot.stopping = True
        if slot.task is not None and not slot.task.done():
            slot.task.cancel()
    actors = [slot.cell.stop() for slot in reversed(slots) if slot.cell is not None]
    if actors:
        await asyncio.gather(*actors)
    while tasks:
        await asyncio.wait(tasks, timeout=STOP_TIMEOUT + 1)
        tasks = [task for task in tasks if not task.done()]
        for task in tasks:  # it swallowed the cancellation: cancel again
            task.cancel()
