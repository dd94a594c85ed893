"""Supervisors: Erlang/OTP restart strategies over a tree of actors.

A :class:`Supervisor` owns its children's tasks (see :mod:`actorbus.slots`): it
starts each one, and stops and awaits every one before its own ``run``
returns, so no child outlives it (structured concurrency). Children are Actor
classes, :class:`~actorbus.children.ChildSpec` objects or nested supervisors,
started in order; ``run`` reports readiness only once every child has started
(the readiness handshake), so a start-up error reaches the caller. Which actor
children run in this process is the tree's
:class:`~actorbus.placement.Placement`.

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
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from typing import Any, Protocol, TypeAlias

import anyio
from anyio.abc import TaskStatus

from ._retry import Backoff
from .actor import Actor, ActorState
from .cell import ActorCell
from .children import ChildSpec, Restart
from .errors import ActorbusError, ActorStartError, SupervisorGaveUp
from .placement import EVERYWHERE, Placement
from .slots import ChildSlot, StartTimedOut, stop_all

__all__ = ["Child", "Strategy", "Supervisor", "SupervisorRuntime"]

logger = logging.getLogger("actorbus.supervisor")

START_RETRY = Backoff(0.01, 0.5)
"""Waits between tries of a child whose ``on_start`` raised (within the restart intensity)."""


class Strategy(StrEnum):
    """Which children a supervisor restarts when one crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """All children."""
    REST_FOR_ONE = "rest_for_one"
    """The crashed child and every child started after it."""


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
        """Name, for logs."""
        self.children: list[ChildSpec | Supervisor] = [_as_spec(child) for child in children]
        """The child specs, in start order."""
        self.state = ActorState.NEW
        """Lifecycle state of the supervisor itself."""
        self._slots: list[ChildSlot] = []
        self._restarts: deque[float] = deque()
        self._crashes: deque[tuple[ChildSlot, BaseException | None]] = deque()
        self._crashed = asyncio.Event()
        self._escaped: BaseException | None = None
        self._cells: dict[int, ActorCell] = {}
        self._quiescing = False
        self._runtime: SupervisorRuntime | None = None
        self._placement = EVERYWHERE

    @property
    def cells(self) -> list[ActorCell]:
        """Every actor cell of this tree (nested supervisors included), in start order."""
        return [cell for slot in self._slots for cell in slot.cells]

    def walk(self) -> list[Supervisor]:
        """This supervisor and every nested one, depth first."""
        result = [self]
        for spec in self.children:
            if isinstance(spec, Supervisor):
                result.extend(spec.walk())
        return result

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

    async def run(
        self,
        runtime: SupervisorRuntime,
        *,
        placement: Placement = EVERYWHERE,
        task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start every child placed here, report readiness, then supervise until stopped.

        Returns when cancelled (stopped from outside); raises ``ActorStartError`` when
        a child cannot start, ``SupervisorGaveUp`` past the restart intensity.
        """
        if self.state not in (ActorState.NEW, ActorState.STOPPED, ActorState.FAILED):
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._runtime, self._placement = runtime, placement
        self._quiescing = False
        self.state = ActorState.STARTING
        # A restarted supervisor is a fresh one: its old restarts and crashes are forgotten.
        self._restarts.clear()
        self._crashes.clear()
        self._crashed = asyncio.Event()
        self._slots = [
            ChildSlot(
                spec, None if isinstance(spec, Supervisor) else self._cell_for(index, spec), self
            )
            for index, spec in enumerate(self.children)
            if isinstance(spec, Supervisor) or placement.runs_here(spec.actor_name)
        ]
        failure: ActorbusError | None = None
        try:
            try:
                for slot in self._slots:
                    await self._start_with_retries(slot)
            except ActorStartError as exc:
                failure = exc
            else:
                self.state = ActorState.RUNNING
                task_status.started(self)
                failure = await self._supervise()
        except asyncio.CancelledError:
            self.state = ActorState.STOPPED  # stopped from outside: a normal end
            raise
        except BaseException:
            self.state = ActorState.FAILED
            raise
        finally:
            with anyio.move_on_after(5, shield=True):
                await stop_all(self._slots)
                for slot in self._slots:
                    if slot.cell is not None:
                        await runtime.detach(slot.cell)
        self.state = ActorState.FAILED if failure is not None else ActorState.STOPPED
        if failure is not None:
            raise failure

    def _cell_for(self, index: int, spec: ChildSpec) -> ActorCell:
        """The cell of child ``index``, made once and kept across restarts of this supervisor."""
        assert self._runtime is not None
        cell = self._cells.get(index)
        if cell is None:
            cell = self._cells[index] = self._runtime.make_cell(spec)
            cell.crash_retries = self.max_replays
        return cell

    async def _start_with_retries(self, slot: ChildSlot) -> None:
        delays = START_RETRY.delays()
        while not self._quiescing:  # (a restart that began before the tree was told to stop)
            try:
                await self._start(slot)
                return
            except StartTimedOut as exc:
                raise ActorStartError(f"{slot.name} could not start: {exc}") from None
            except Exception as exc:
                if not self._note_restart():
                    raise ActorStartError(
                        f"{slot.name} could not start: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = next(delays)
                logger.warning(
                    "%s failed to start (%s: %s); retrying in %.2fs",
                    slot.name,
                    type(exc).__name__,
                    exc,
                    delay,
                    extra={"actor": slot.name},
                )
                if slot.cell is not None:
                    slot.cell.stats.restarts += 1
                await asyncio.sleep(delay)

    async def _start(self, slot: ChildSlot) -> None:
        runtime, placement = self._runtime, self._placement
        assert runtime is not None
        spec, cell = slot.spec, slot.cell
        if cell is not None:
            if cell.consumer is None:
                await runtime.attach(cell)
            await slot.start_actor()
        else:
            assert isinstance(spec, Supervisor)
            await slot.start(partial(spec.run, runtime, placement=placement))

    def exited(self, slot: ChildSlot, error: BaseException | None) -> None:
        """A child crashed (``error``) or ended normally (``None``): handle it (restart...)."""
        self._crashes.append((slot, error))
        self._crashed.set()

    def escaped(self, exc: BaseException) -> None:
        """A child raised ``exc`` (``KeyboardInterrupt``...): the supervising loop re-raises it."""
        self._escaped = exc  # re-raised by the supervising loop
        self._crashed.set()

    def _note_restart(self) -> bool:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.within:
            self._restarts.popleft()
        return len(self._restarts) <= self.max_restarts

    async def _supervise(self) -> SupervisorGaveUp | None:
        while True:
            await self._crashed.wait()
            self._crashed.clear()
            if self._escaped is not None:  # KeyboardInterrupt, SystemExit, ... in a child
                escaped, self._escaped = self._escaped, None
                raise escaped
            while self._crashes:
                slot, error = self._crashes.popleft()
                gave_up = await self._handle_exit(slot, error)
                if gave_up is not None:
                    return gave_up

    async def _handle_exit(
        self, slot: ChildSlot, error: BaseException | None
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
        group = self._restart_group(slot)
        for other in reversed(group):
            if other is not slot:
                await other.stop()
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
            for cell in member.cells:
                await self._replay(cell)
        return None

    def _restart_group(self, slot: ChildSlot) -> list[ChildSlot]:
        """The children the strategy restarts when ``slot`` crashed."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [slot]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._slots)
        return self._slots[self._slots.index(slot) :]

    async def _replay(self, cell: ActorCell) -> None:
        """Replay a restarted actor's dead letters (each at most ``max_replays`` times)."""
        assert self._runtime is not None
        try:
            replayed = await self._runtime.replay_dead_letters(cell.name, self.max_replays)
        except Exception:
            logger.exception(
                "replaying the dead letters of %s failed", cell.name, extra={"actor": cell.name}
            )
            return
        if replayed:
            logger.info(
                "replayed %d dead letter(s) of %s after restart",
                replayed,
                cell.name,
                extra={"actor": cell.name},
            )


def _as_spec(child: Child) -> ChildSpec | Supervisor:
    if isinstance(child, (ChildSpec, Supervisor)):
        return child
    if isinstance(child, type) and issubclass(child, Actor):
        return ChildSpec(actor=child)
    raise TypeError(f"a child must be an Actor class, a ChildSpec or a Supervisor, not {child!r}")
