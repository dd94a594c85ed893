"""The life of one actor across restarts: its mailbox, its activations, its counters.

An :class:`ActorCell` outlives the actor instances it runs. Its supervisor
calls :meth:`ActorCell.start` for each incarnation: it builds a fresh instance
from the factory and runs ``on_start``. The mailbox and counters stay with the
cell, so a restart loses no queued message.

An idle actor holds no task. A delivery reaching an idle mailbox starts an
*activation*, a task that takes one delivery at a time until the mailbox is
empty; it then waits for the next delivery (a busy actor keeps its task, so a
request/reply exchange pays no task per message), and ends once the runtime's
sweep (every ``runtime.IDLE_SWEEP`` seconds) finds it idle across a whole
period. The incarnation goes on without it: state, instance and mailbox stay,
and the next delivery starts a new activation. So thousands of actors that
wait cost no task, no coroutine frame and no future each, only their state.
The incarnation ends when an activation crashes (``ActorCrashed``, reported to
the supervisor), when the actor stops itself (``request_stop``), or when its
supervisor stops it (:meth:`ActorCell.stop`); ``on_stop`` runs once either way.

The message loop, per delivery: find the handler, call it, retry with backoff
on failure, then either acknowledge (success), or dead-letter and acknowledge
(failure after the last attempt). A delivery interrupted by a stop goes back to
the head of the mailbox unsettled (counted in ``interrupted``).

Order after a crash: a handler error the retry policy marks fatal crashes the
actor, and the message that caused it stays unsettled at the head of the
mailbox, so the restarted instance handles it first, before every message
queued behind it (a cancel sent after its submit is still handled after it),
the same over RabbitMQ and in memory. Each such retry is counted in the
message's ``x-actorbus-replays`` header; once it has had ``crash_retries`` of
them (the supervisor's ``max_replays``) a message that crashes the actor again
is dead-lettered instead, and the supervisor's replay after the restart leaves
it there, so a poison message cannot loop.

A cell tells whoever waits (the bus's shutdown) when it goes idle (mailbox
empty, no handler running) and when its loop ends, through one event made only
while someone waits: no polling, and nothing on the hot path but a check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio

from ._loops import running_loop
from .actor import Actor, ActorState, Handler
from .brokers.base import QueueSpec, handling_for
from .errors import ActorCrashed
from .handling import ActorCounters, ActorRuntime, MessageHandling
from .mailbox import ConflatingMailbox, Mailbox
from .messages import Delivery

__all__ = ["ActorCell", "ActorCounters", "ActorRuntime"]

logger = logging.getLogger("actorbus.actor")

STOP_TIMEOUT = 5.0
"""Seconds ``on_stop`` may take before it is abandoned."""


class IncarnationEnds(Protocol):
    """Who hears how an incarnation ended when nobody stopped it: the cell's supervisor slot."""

    def actor_ended(self, error: BaseException | None) -> None:
        """The incarnation crashed (``error``) or stopped by itself (``None``)."""


class ActorCell(MessageHandling):
    """One named actor: factory, mailbox, state and counters, across incarnations."""

    __slots__ = (
        "_dormant",
        "_ends",
        "_idle_epoch",
        "_stop_requested",
        "_task",
        "_watch",
        "actor_class",
        "consumer",
        "crash_retries",
        "factory",
        "instance",
        "mailbox",
        "name",
        "queue_spec",
        "runtime",
        "state",
        "stats",
        "stop_deadline",
    )

    def __init__(
        self,
        factory: Callable[[], Actor],
        actor_class: type[Actor],
        name: str,
        queue_spec: QueueSpec,
        runtime: ActorRuntime,
    ) -> None:
        self.factory = factory
        """Builds a fresh instance for each incarnation."""
        self.actor_class = actor_class
        """The class the factory builds (for its declarations)."""
        self.name = name
        """Actor name."""
        self.queue_spec = queue_spec
        """The broker queue this actor consumes from, and the patterns bound to it."""
        self.runtime = runtime
        policy = actor_class.mailbox_policy
        self.mailbox: Mailbox = (
            ConflatingMailbox(actor_class.mailbox_size, policy)
            if policy is not None
            else Mailbox(actor_class.mailbox_size)
        )
        """Deliveries waiting for this actor; kept across restarts."""
        self.state = ActorState.NEW
        """Current lifecycle state."""
        self.stats = ActorCounters()
        """Counters, kept across restarts."""
        self.instance: Actor | None = None
        """The running instance, if any."""
        self.consumer: Any = None
        """The broker consumer feeding the mailbox, while attached."""
        self.crash_retries = 1
        """More tries a message that crashed the actor gets, first, on the fresh instance."""
        self.stop_deadline: float | None = None
        """``time.monotonic()`` by which ``on_stop`` must be done (set by a bus shutting
        down); ``None``: ``STOP_TIMEOUT`` alone bounds it."""
        self._current: Delivery | None = None
        self._stop_requested = False
        self._watch: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        """The activation running now, if any (none while the actor is idle)."""
        self._dormant = False
        self._idle_epoch = 0
        self._ends: IncarnationEnds | None = None

    @property
    def queue(self) -> str:
        """The name of the queue this actor consumes from."""
        return self.queue_spec.name

    @property
    def patterns(self) -> tuple[str, ...]:
        """Message types and patterns this actor's queue is bound to."""
        return self.queue_spec.patterns

    @property
    def busy(self) -> bool:
        """Whether a message is being handled right now."""
        return self._current is not None

    @property
    def running(self) -> bool:
        """Whether an incarnation is alive (starting, running or stopping)."""
        return self.state in (ActorState.STARTING, ActorState.RUNNING, ActorState.STOPPING)

    @property
    def idle(self) -> bool:
        """Whether nothing is left to do now: no handler running and an empty mailbox."""
        return self._current is None and not len(self.mailbox)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; checked each time the cell goes idle or ends."""
        while not condition():
            watch = self._watch
            if watch is None:
                watch = self._watch = asyncio.Event()
            await watch.wait()

    def _notify(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.set()

    def abandon(self) -> None:
        """Give back the message of a handler that would not stop (it may still finish)."""
        delivery, self._current = self._current, None
        if delivery is not None:
            delivery.requeue()
            self.stats.interrupted += 1
            self.stats.returned += 1

    def request_stop(self) -> None:
        """Ask the incarnation to end after the current message (a normal exit).

        A dormant incarnation (no task: nothing to handle) ends at once, in a task of
        its own, so that ``on_stop`` runs and its end is reported as any other.
        """
        self._stop_requested = True
        if self._task is not None:
            self.mailbox.interrupt()
        elif self.state is ActorState.RUNNING:
            self._task = self._loop().create_task(self._finish(ActorState.STOPPED))
            self._task.add_done_callback(self._ran)

    async def start(self, ends: IncarnationEnds) -> None:
        """Start an incarnation: build the actor and run its ``on_start``.

        Raises what ``on_start`` raised. From then on messages are handled in
        activations (a task while there is work, none while idle: see the module
        documentation); ``ends.actor_ended(error)`` tells the end of an incarnation that
        was not asked for by :meth:`stop`: a crash (its error) or a normal stop (``None``).
        """
        actor = self.factory()
        actor.bind(self.runtime.context_for(self))
        self._stop_requested = self._dormant = False
        self.state = ActorState.STARTING
        try:
            await actor.on_start()
        except BaseException:
            self.state = ActorState.FAILED
            self._notify()
            raise
        self.instance = actor
        self._ends = ends
        self.state = ActorState.RUNNING
        self.mailbox.wake_on_arrival(self)

    def _loop(self) -> asyncio.AbstractEventLoop:
        return running_loop()

    def activate(self) -> None:
        """A delivery reached a dormant incarnation: handle it (and what follows) in a task."""
        if self._task is None and self.state is ActorState.RUNNING and not self._stop_requested:
            self._task = self._loop().create_task(self._drain())
            self._task.add_done_callback(self._ran)

    def go_dormant(self, epoch: int) -> None:
        """Let go of the task if it has waited, idle, across a whole sweep period.

        ``epoch`` is the sweep's number; the task began waiting in an earlier one.
        """
        if self._task is not None and self._idle_epoch < epoch - 1 and self.mailbox.awaited:
            self._dormant = True
            self.mailbox.interrupt()

    def _ran(self, task: asyncio.Task[None]) -> None:
        """An activation ended: dormant again, or the incarnation ended (reported)."""
        if task is not self._task:
            return
        self._task = None
        if task.cancelled():
            return  # stopped by stop(): its end is not reported
        error = task.exception()
        if error is None and self.state is ActorState.RUNNING:  # went dormant
            self._dormant = False
            if self._stop_requested:
                self.request_stop()
            else:
                self.mailbox.wake_on_arrival(self)
            return
        ends, self._ends = self._ends, None
        if ends is not None:
            ends.actor_ended(error)

    async def stop(self) -> None:
        """End the incarnation now: cut the message in hand (it goes back to the mailbox)."""
        task = self._task
        while task is not None and not task.done():
            task.cancel()  # again after a grace period, should it swallow the cancellation
            await asyncio.wait([task], timeout=STOP_TIMEOUT + 1)
        if self.running and self._task is None:
            await self._finish(ActorState.STOPPED)  # (it was dormant: nothing to cut)
        self._ends = None

    async def _drain(self) -> None:
        """One activation: handle deliveries until the mailbox is empty for long enough.

        Once the mailbox is empty the task lingers, waiting for the next delivery
        (a busy actor keeps its task), until the runtime's sweep finds it idle (see
        :meth:`go_dormant`); then it returns and the incarnation goes on without one.
        Raises ``ActorCrashed`` (or what a handler raised past its retries' reach);
        the incarnation has ended (``on_stop`` ran) when this returns for a stop or
        raises.
        """
        actor = self.instance
        assert actor is not None
        outcome: ActorState | None = ActorState.STOPPED
        handling_for.set(self.mailbox)  # (this task's own context: flow control spares it)
        try:
            # The message loop: take a delivery, waiting for one if need be, handle it.
            mailbox = self.mailbox
            handler_for = actor.handler_for
            handlers: dict[str, Handler | None] = {}  # this activation's lookups, kept at hand
            runtime = self.runtime
            while not self._stop_requested:
                delivery = mailbox.get_nowait()
                if delivery is None:
                    if self._watch is not None:  # someone waits for this cell to go idle
                        self._notify()
                    if self._dormant:
                        outcome = None  # the incarnation goes on, without a task
                        return
                    waiter = mailbox.waiter()  # awaited here: one coroutine less per wake-up
                    if waiter is not None:
                        self._idle_epoch = runtime.epoch
                        await waiter
                    continue
                self._current = delivery
                # The first attempt runs here, inline: one coroutine less per message.
                # A missing handler or a failure goes on in _handle (retries, dead letters).
                envelope = delivery.envelope
                try:
                    handler = handlers[envelope.type]
                except KeyError:
                    handler = handlers[envelope.type] = handler_for(envelope.type)
                if handler is None:
                    await self._handle(actor, delivery)
                elif runtime.hooks is not None:
                    await self._observed(actor, delivery, handler, runtime.hooks)
                else:
                    function, is_async = handler
                    failure: Exception | None = None
                    try:
                        result = (
                            await function(actor, envelope)
                            if is_async
                            else function(actor, envelope)
                        )
                    except Exception as exc:
                        failure = exc
                    if failure is not None:
                        await self._handle(actor, delivery, failure)  # outside the except block
                    else:
                        self.stats.processed += 1
                        if envelope.reply_to is not None:
                            await runtime.reply(envelope, result)
                        delivery.ack()
                self._current = None
        except ActorCrashed:
            outcome = ActorState.FAILED
            raise
        except Exception:
            outcome = ActorState.FAILED
            logger.exception("actor %s crashed", self.name, extra={"actor": self.name})
            raise
        finally:
            if outcome is not None:
                await self._finish(outcome)

    async def _finish(self, outcome: ActorState) -> None:
        """End the incarnation: the message in hand back to the mailbox, ``on_stop``, state."""
        if self._current is not None:
            self.mailbox.push_front(self._current)
            self._current = None
            if outcome is ActorState.STOPPED:  # cut by a stop (a crash keeps it to retry)
                self.stats.interrupted += 1
        actor, self.instance = self.instance, None
        self.state = ActorState.STOPPING
        limit = STOP_TIMEOUT
        if self.stop_deadline is not None:
            limit = max(0.0, min(limit, self.stop_deadline - time.monotonic()))
        if actor is not None:
            with anyio.move_on_after(limit, shield=True) as stopping:
                try:
                    await actor.on_stop()
                except Exception:
                    logger.exception("on_stop of %s failed", self.name, extra={"actor": self.name})
            if stopping.cancelled_caught:
                logger.warning("on_stop of %s outlasted %.1fs: abandoned", self.name, limit)
        self.state = outcome
        self._notify()
