"""Supervisors: Erlang/OTP restart strategies over a tree of actors.

A :class:`Supervisor` owns its children's tasks: it starts each one, and stops
and awaits every one before its own ``run`` returns, so no child outlives it
(structured concurrency). The children are plain asyncio tasks held by their
slots rather than tasks of an anyio task group each with its own cancel scope:
that bookkeeping doubled the memory of an idle actor.

Children are Actor classes, :class:`ChildSpec` objects or nested supervisors,
started in order; ``run`` reports readiness only once every child has started
(the readiness handshake), so a start-up error reaches the caller.

When a child crashes (``on_start`` raised, or a handler error the retry policy
marks fatal) the supervisor restarts, with fresh instances:

- ``one_for_one``: the crashed child only;
- ``one_for_all``: every child (the others are stopped first, in reverse order);
- ``rest_for_one``: the crashed child and the children started after it.

``restart`` on a child spec says when it is restarted: ``permanent`` always,
``transient`` only after a crash (not after a normal stop), ``temporary`` never.

Restart intensity: more than ``max_restarts`` restarts within ``within`` seconds
make the supervisor give up: it stops its children and fails with
``SupervisorGaveUp``, which its parent sees as a crash of that child. An
``on_start`` that does not return within its ``start_timeout`` (the child spec's,
else the actor class's, 10 s by default) is cancelled and fails the start at
once with ``ActorStartError``; it is not retried. After each
restart the supervisor replays the restarted actors' dead letters, each at most
``max_replays`` times, so a poison message cannot loop forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeAlias

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .actor import Actor, ActorState
from .cell import STOP_TIMEOUT, ActorCell
from .errors import ActorbusError, ActorStartError, SupervisorGaveUp

__all__ = ["ChildSpec", "Restart", "Strategy", "Supervisor", "SupervisorRuntime"]

logger = logging.getLogger("actorbus.supervisor")


class Strategy(StrEnum):
    """Which children a supervisor restarts when one crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """All children."""
    REST_FOR_ONE = "rest_for_one"
    """The crashed child and every child started after it."""


class Restart(StrEnum):
    """When a child is restarted."""

    PERMANENT = "permanent"
    """Always, whether it crashed or stopped."""
    TRANSIENT = "transient"
    """Only after a crash."""
    TEMPORARY = "temporary"
    """Never."""


@dataclass(frozen=True)
class ChildSpec:
    """How to build and restart one actor child."""

    actor: type[Actor]
    """The actor class."""
    factory: Callable[[], Actor] | None = None
    """Builds each instance; default: ``actor()``."""
    name: str | None = None
    """Actor name; default: the class's ``default_name()``."""
    restart: Restart = Restart.PERMANENT
    """When this child is restarted (a ``Restart`` or its value, ``"transient"``)."""
    start_timeout: float | None = None
    """Seconds ``on_start`` may take; default: the actor class's ``start_timeout``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "restart", Restart(self.restart))

    @property
    def actor_name(self) -> str:
        """The effective name."""
        return self.name or self.actor.default_name()

    @property
    def effective_start_timeout(self) -> float:
        """The start timeout in effect: this spec's, else the actor class's."""
        return self.actor.start_timeout if self.start_timeout is None else self.start_timeout


class _StartTimedOut(Exception):
    """``on_start`` did not return within its start timeout (never retried)."""


class SupervisorRuntime(Protocol):
    """What a supervisor needs from the layer above it."""

    def make_cell(self, spec: ChildSpec) -> ActorCell:
        """Create the cell for a child spec."""

    async def attach(self, cell: ActorCell) -> None:
        """Bind the cell's queue and start feeding its mailbox."""

    async def detach(self, cell: ActorCell) -> None:
        """Stop feeding the mailbox and give back what it holds."""

    async def replay_dead_letters(self, actor: str, max_replays: int) -> int:
        """Replay an actor's dead letters; return how many."""


Child: TypeAlias = "type[Actor] | ChildSpec | Supervisor"
"""What a supervisor accepts as a child."""


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


class _Running:
    """A child slot: the spec, its cell or supervisor, and its task.

    The event a stopper waits on is made only when someone waits (an
    ``anyio.Event`` costs about 800 bytes, more than the rest of an idle actor's
    slot).
    """

    __slots__ = ("_finished", "cell", "running", "spec", "stopping", "task")

    def __init__(self, spec: ChildSpec | Supervisor, cell: ActorCell | None) -> None:
        self.spec = spec
        self.cell = cell
        self.stopping = False
        """Whether its supervisor is stopping the current incarnation (not a crash)."""
        self.task: asyncio.Task[None] | None = None
        """The task of the current (or last) incarnation."""
        self.running = False
        """Whether the child's task is alive."""
        self._finished: anyio.Event | None = None

    def begin(self) -> None:
        """The child's task started."""
        self.running = True
        self.stopping = False
        self._finished = None

    def end(self) -> None:
        """The child's task is ending: wake whoever waits for it."""
        self.running = False
        finished, self._finished = self._finished, None
        if finished is not None:
            finished.set()

    async def wait_finished(self) -> None:
        """Return once the child's task has ended (at once when it is not running)."""
        if not self.running:
            return
        if self._finished is None:
            self._finished = anyio.Event()
        await self._finished.wait()

    @property
    def name(self) -> str:
        return self.spec.name if isinstance(self.spec, Supervisor) else self.spec.actor_name

    @property
    def restart(self) -> Restart:
        return Restart.PERMANENT if isinstance(self.spec, Supervisor) else self.spec.restart


class Supervisor:
    """Runs and restarts a list of children by a strategy; see the module documentation."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        max_replays: int = 1,
        name: str | None = None,
    ) -> None:
        self.strategy = Strategy(strategy)
        """The restart strategy."""
        self.max_restarts = max_restarts
        """Restarts allowed within ``within`` seconds before giving up."""
        self.within = within
        """Window of the restart intensity, in seconds."""
        self.max_replays = max_replays
        """More tries allowed for one message after it crashed a child (taken first by the
        fresh instance, before the messages queued behind it) or was dead-lettered (replayed
        after a restart). The default, 1, gives the message that crashed a child one more
        try; a poison message then costs two restarts, within the default ``max_restarts``,
        so it cannot bring the tree down by itself."""
        self.name = name or "supervisor"
        """Name, for logs and placement."""
        self.children: list[ChildSpec | Supervisor] = [_as_spec(child) for child in children]
        """The child specs, in start order."""
        self.state = ActorState.NEW
        """Lifecycle state of the supervisor itself."""
        self.placement: frozenset[str] | None = None
        """Names of the actors that run in this process; ``None``: all of them."""
        self._slots: list[_Running] = []
        self._restarts: deque[float] = deque()
        self._crashes: deque[tuple[_Running, BaseException | None]] = deque()
        self._crash_event = anyio.Event()
        self._runtime: SupervisorRuntime | None = None
        self._task_group: TaskGroup | None = None
        self._escaped: BaseException | None = None
        self._cells: dict[int, ActorCell] = {}
        self._quiescing = False

    def _cell_for(self, index: int, spec: ChildSpec) -> ActorCell:
        """The cell of child ``index``, made once and kept across restarts of this supervisor."""
        assert self._runtime is not None
        cell = self._cells.get(index)
        if cell is None:
            cell = self._cells[index] = self._runtime.make_cell(spec)
            cell.crash_retries = self.max_replays
        return cell

    @property
    def cells(self) -> list[ActorCell]:
        """Every actor cell of this tree (nested supervisors included), in start order."""
        cells: list[ActorCell] = []
        for slot in self._slots:
            if isinstance(slot.spec, Supervisor):
                cells.extend(slot.spec.cells)
            elif slot.cell is not None:
                cells.append(slot.cell)
        return cells

    def place(self, actors: frozenset[str] | None) -> None:
        """Run only the actors named in ``actors`` here (all when ``None``), in the whole tree."""
        for supervisor in self.walk():
            supervisor.placement = actors

    def quiesce(self) -> None:
        """Stop every actor of the tree after its current message, restarting none.

        The bus's shutdown calls it: each actor finishes the handler it is in (its
        loop then ends normally) and no new message is started. The tree's tasks
        stay until the tree is stopped (cancelled), which gives unread messages back.
        """
        for supervisor in self.walk():
            supervisor._quiescing = True
            for slot in supervisor._slots:
                slot.stopping = True
                if slot.cell is not None:
                    slot.cell.request_stop()

    def walk(self) -> list[Supervisor]:
        """This supervisor and every nested one, depth first."""
        result = [self]
        for spec in self.children:
            if isinstance(spec, Supervisor):
                result.extend(spec.walk())
        return result

    async def run(
        self,
        runtime: SupervisorRuntime,
        *,
        task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start every child, report readiness, then supervise until cancelled or giving up."""
        if self.state not in (ActorState.NEW, ActorState.STOPPED, ActorState.FAILED):
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._runtime = runtime
        self._quiescing = False
        self.state = ActorState.STARTING
        # A restarted supervisor is a fresh one: its old restarts and crashes are forgotten.
        self._restarts.clear()
        self._crashes.clear()
        self._crash_event = anyio.Event()
        self._slots = [
            _Running(spec, None if isinstance(spec, Supervisor) else self._cell_for(index, spec))
            for index, spec in enumerate(self.children)
            if isinstance(spec, Supervisor)
            or self.placement is None
            or spec.actor_name in self.placement
        ]
        failure: ActorbusError | None = None
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                # Errors leave the task group as values, so callers get them unwrapped.
                try:
                    for slot in self._slots:
                        await self._start_with_retries(slot)
                except ActorStartError as exc:
                    failure = exc
                else:
                    self.state = ActorState.RUNNING
                    task_status.started(self)
                    failure = await self._supervise()
                task_group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            self.state = ActorState.STOPPED  # stopped from outside: a normal end
            raise
        except BaseException:
            self.state = ActorState.FAILED
            raise
        finally:
            with anyio.move_on_after(5, shield=True):
                await self._stop_children()
                for slot in self._slots:
                    if slot.cell is not None:
                        await runtime.detach(slot.cell)
        if failure is not None:
            self.state = ActorState.FAILED
            raise failure
        self.state = ActorState.STOPPED

    async def _start_with_retries(self, slot: _Running) -> None:
        while True:
            if self._quiescing:  # a restart that began before the tree was told to stop
                return
            try:
                await self._start(slot)
                return
            except _StartTimedOut as exc:
                raise ActorStartError(f"{slot.name} could not start: {exc}") from None
            except Exception as exc:
                if not self._note_restart():
                    raise ActorStartError(
                        f"{slot.name} could not start: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning(
                    "%s failed to start (%s: %s); retrying",
                    slot.name,
                    type(exc).__name__,
                    exc,
                    extra={"actor": slot.name},
                )
                if slot.cell is not None:
                    slot.cell.stats.restarts += 1
                await anyio.sleep(0.01)

    async def _start(self, slot: _Running) -> None:
        assert self._runtime is not None
        if slot.cell is not None and slot.cell.consumer is None:
            await self._runtime.attach(slot.cell)
        await self._spawn(slot)

    async def _spawn(self, slot: _Running) -> None:
        """Run a child in a task of its own; return once it reported readiness.

        The child's task is a plain asyncio task held by its slot, not a task of
        anyio's task group nor in a cancel scope of its own: those cost about 4 KB
        more (a handle, an event, cancel scopes and their bookkeeping), most of
        what an idle actor would weigh. Structure is kept by hand: a child is
        stopped by cancelling its task (again, should it swallow the
        cancellation), and :meth:`run` stops and awaits every child before it
        returns. An error before readiness is raised here, as
        ``TaskGroup.start`` would.
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        task = loop.create_task(self._run_child(slot, _Started(ready)))
        slot.task = task
        # An actor's on_start has its own timeout; a nested supervisor's children have theirs.
        timeout = None if isinstance(slot.spec, Supervisor) else slot.spec.effective_start_timeout
        try:
            await asyncio.wait([ready], timeout=timeout)
            if not ready.done():
                raise _StartTimedOut(f"on_start did not return within {timeout:g}s")
            await ready
        except BaseException:
            if not ready.done():
                ready.cancel()  # the child's report of its end goes nowhere: nobody waits
            if not task.done():
                task.cancel()
            raise

    async def _stop_children(self) -> None:
        """Cancel every child's task and await them all (the caller bounds the wait)."""
        tasks = [s.task for s in self._slots if s.task is not None and not s.task.done()]
        for slot in reversed(self._slots):
            slot.stopping = True
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
        while tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT + 1)
            tasks = [task for task in tasks if not task.done()]
            for task in tasks:  # it swallowed the cancellation: cancel again
                task.cancel()

    async def _run_child(self, slot: _Running, started: _Started) -> None:
        """The task of one child incarnation; a failure before readiness goes to its starter."""
        assert self._runtime is not None
        slot.begin()
        outcome: BaseException | None = None
        try:
            try:
                if isinstance(slot.spec, Supervisor):
                    await slot.spec.run(self._runtime, task_status=started)
                else:
                    assert slot.cell is not None
                    await slot.cell.run(task_status=started)
            except Exception as exc:
                if not started.done:
                    started.failed(exc)
                    return
                outcome = exc
            if not started.done:
                started.failed(RuntimeError(f"{slot.name} ended before it was ready"))
                return
            if slot.stopping:
                return
            self._crashes.append((slot, outcome))
            self._crash_event.set()
        except asyncio.CancelledError:
            if not started.done:
                started.failed(RuntimeError(f"{slot.name} was stopped before it was ready"))
            if slot.stopping:
                return  # stopped by its supervisor: the normal end of this task
            raise
        except BaseException as exc:  # KeyboardInterrupt and the like
            if not started.done:
                started.failed(exc)
            else:
                self._escaped = exc  # re-raised by the supervising loop
                self._crash_event.set()
            raise
        finally:
            slot.end()

    def _note_restart(self) -> bool:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.within:
            self._restarts.popleft()
        return len(self._restarts) <= self.max_restarts

    async def _supervise(self) -> SupervisorGaveUp | None:
        while True:
            await self._crash_event.wait()
            self._crash_event = anyio.Event()
            if self._escaped is not None:  # KeyboardInterrupt, SystemExit, ... in a child
                escaped, self._escaped = self._escaped, None
                raise escaped
            while self._crashes:
                slot, error = self._crashes.popleft()
                gave_up = await self._handle_exit(slot, error)
                if gave_up is not None:
                    return gave_up

    async def _handle_exit(
        self, slot: _Running, error: BaseException | None
    ) -> SupervisorGaveUp | None:
        assert self._runtime is not None
        if slot not in self._slots or self._quiescing:
            return None
        if slot.restart is Restart.TEMPORARY or (
            slot.restart is Restart.TRANSIENT and error is None
        ):
            logger.info(
                "%s exited (%s); not restarted (%s)",
                slot.name,
                error or "normal",
                slot.restart,
                extra={"actor": slot.name},
            )
            self._slots.remove(slot)
            if slot.cell is not None:
                await self._runtime.detach(slot.cell)
            return None
        if error is not None:
            logger.warning(
                "%s crashed: %s: %s",
                slot.name,
                type(error).__name__,
                error,
                extra={"actor": slot.name},
            )
        if not self._note_restart():
            message = (
                f"supervisor {self.name!r} gave up: more than {self.max_restarts} restarts "
                f"within {self.within}s (last: {slot.name}: {error})"
            )
            logger.error(message)
            return SupervisorGaveUp(message)
        index = self._slots.index(slot)
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [slot]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            group = list(self._slots)
        else:
            group = self._slots[index:]
        for other in reversed(group):
            if other is not slot:
                await self._stop_slot(other)
        # Every member is down now: crashes they reported meanwhile are covered by this restart.
        self._crashes = deque(crash for crash in self._crashes if crash[0] not in group)
        for member in group:
            if member.cell is not None:
                member.cell.stats.restarts += 1
            try:
                await self._start_with_retries(member)
            except ActorStartError as exc:
                message = f"supervisor {self.name!r} gave up: {exc}"
                logger.error(message)
                return SupervisorGaveUp(message)
        for member in group:
            cells = [member.cell] if member.cell is not None else member.spec.cells  # type: ignore[union-attr]
            for cell in cells:
                try:
                    replayed = await self._runtime.replay_dead_letters(cell.name, self.max_replays)
                except Exception:
                    logger.exception(
                        "replaying the dead letters of %s failed",
                        cell.name,
                        extra={"actor": cell.name},
                    )
                    continue
                if replayed:
                    logger.info(
                        "replayed %d dead letter(s) of %s after restart",
                        replayed,
                        cell.name,
                        extra={"actor": cell.name},
                    )
        return None

    async def _stop_slot(self, slot: _Running) -> None:
        slot.stopping = True
        task = slot.task
        while task is not None and not task.done():
            task.cancel()  # again after a grace period, should it swallow the cancellation
            await asyncio.wait([task], timeout=STOP_TIMEOUT + 1)
        await slot.wait_finished()


def _as_spec(child: Child) -> ChildSpec | Supervisor:
    if isinstance(child, (ChildSpec, Supervisor)):
        return child
    if isinstance(child, type) and issubclass(child, Actor):
        return ChildSpec(actor=child)
    raise TypeError(f"a child must be an Actor class, a ChildSpec or a Supervisor, not {child!r}")
