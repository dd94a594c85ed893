"""The life of one actor across restarts: its mailbox, its loop, its counters.

An :class:`ActorCell` outlives the actor instances it runs. Its supervisor
calls :meth:`ActorCell.run` for each incarnation; every run builds a fresh
instance from the factory, runs ``on_start``, reports readiness, then takes one
delivery at a time from the mailbox. The mailbox and counters stay with the
cell, so a restart loses no queued message.

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
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .actor import Actor, ActorState, Handler
from .brokers.base import QueueSpec
from .errors import ActorCrashed
from .handling import ActorCounters, ActorRuntime, MessageHandling
from .mailbox import ConflatingMailbox, Mailbox
from .messages import Delivery

__all__ = ["ActorCell", "ActorCounters", "ActorRuntime"]

logger = logging.getLogger("actorbus.actor")

STOP_TIMEOUT = 5.0
"""Seconds ``on_stop`` may take before it is abandoned."""


class ActorCell(MessageHandling):
    """One named actor: factory, mailbox, state and counters, across incarnations."""

    __slots__ = (
        "_stop_requested",
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
        """Ask the loop to end after the current message (a normal exit)."""
        self._stop_requested = True
        self.mailbox.interrupt()

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run one incarnation: start, report readiness, loop; return on a normal stop.

        Raises what ``on_start`` raised (before readiness) or ``ActorCrashed`` (after).
        """
        actor = self.factory()
        actor.bind(self.runtime.context_for(self))
        self._stop_requested = False
        self.state = ActorState.STARTING
        try:
            await actor.on_start()
        except BaseException:
            self.state = ActorState.FAILED
            self._notify()
            raise
        self.instance = actor
        self.state = ActorState.RUNNING
        task_status.started(self)
        outcome = ActorState.STOPPED
        try:
            # The message loop, inline in run (one coroutine frame less per actor and
            # per wake-up): take a delivery, waiting for one if need be, handle it.
            mailbox = self.mailbox
            handler_for = actor.handler_for
            handlers: dict[str, Handler | None] = {}  # this incarnation's lookups, kept at hand
            runtime = self.runtime
            while not self._stop_requested:
                delivery = mailbox.get_nowait()
                if delivery is None:
                    if self._watch is not None:  # someone waits for this cell to go idle
                        self._notify()
                    waiter = mailbox.waiter()  # awaited here: one coroutine less per wake-up
                    if waiter is not None:
                        await waiter
                    delivery = mailbox.get_nowait()
                    if delivery is None:  # interrupted by request_stop
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
            if self._current is not None:
                self.mailbox.push_front(self._current)
                self._current = None
                if outcome is ActorState.STOPPED:  # cut by a stop (a crash keeps it to retry)
                    self.stats.interrupted += 1
            self.state = ActorState.STOPPING
            limit = STOP_TIMEOUT
            if self.stop_deadline is not None:
                limit = max(0.0, min(limit, self.stop_deadline - time.monotonic()))
            with anyio.move_on_after(limit, shield=True) as stopping:
                try:
                    await actor.on_stop()
                except Exception:
                    logger.exception("on_stop of %s failed", self.name, extra={"actor": self.name})
            if stopping.cancelled_caught:
                logger.warning("on_stop of %s outlasted %.1fs: abandoned", self.name, limit)
            self.instance = None
            self.state = outcome
            self._notify()
