"""How an actor cell handles one message to the end: attempts, retries, dead letters.

The cell's loop (``cell.ActorCell.run``) makes the first attempt itself, inline,
and hands over to :class:`MessageHandling` only when there is more to do: a
failure to retry (by the actor's :class:`~actorbus.actor.RetryPolicy`, with its
backoff), a message to dead-letter after the last attempt (answering an ``ask``
with the error), a type without a handler (dead-lettered at once), a failure the
policy marks fatal (the message stays unsettled at the head of the mailbox for
the restarted instance, ``crash_retries`` times, then it is dead-lettered), or
telemetry hooks to call around the handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import msgspec

from .actor import Actor, ActorContext, Handler
from .brokers.base import DeadLetter, QueueSpec
from .errors import ActorCrashed
from .hooks import Hooks
from .messages import REPLAYS_HEADER, Delivery, Envelope, log_fields

__all__ = ["ActorCounters", "ActorRuntime", "MessageHandling"]

logger = logging.getLogger("actorbus.actor")


class ActorCounters:
    """Counters of one actor, kept across restarts."""

    __slots__ = (
        "dead_lettered",
        "failed",
        "interrupted",
        "processed",
        "restarts",
        "retried",
        "returned",
    )

    def __init__(self) -> None:
        self.processed = 0
        """Messages handled successfully."""
        self.failed = 0
        """Handler calls that raised."""
        self.retried = 0
        """Retries made after a failure."""
        self.dead_lettered = 0
        """Messages sent to the dead-letter queue."""
        self.restarts = 0
        """Times the actor was restarted by its supervisor."""
        self.interrupted = 0
        """Handler calls cut by a stop before they returned (their message was given back)."""
        self.returned = 0
        """Unhandled deliveries given back to the queue when the actor was detached."""


class ActorRuntime(Protocol):
    """What a cell needs from the layer above it."""

    hooks: Hooks | None
    """Telemetry called around each handled message, if any (see ``actorbus.hooks``)."""
    epoch: int
    """The number of the runtime's last sweep for idle actors (see ``cell``)."""

    def context_for(self, cell: Any) -> ActorContext:
        """The context an instance of ``cell`` (an ``ActorCell``) talks through."""

    async def reply(self, request: Envelope, result: Any, error: str | None = None) -> None:
        """Answer a request (an envelope with ``reply_to``)."""

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store a message an actor failed to handle; return once it is stored."""


class MessageHandling:
    """The part of an actor cell that takes one message through attempts to its end."""

    __slots__ = ("_current",)

    name: str
    stats: ActorCounters
    runtime: ActorRuntime
    crash_retries: int
    queue_spec: QueueSpec
    _current: Delivery | None

    async def _observed(
        self, actor: Actor, delivery: Delivery, handler: Handler, hooks: Hooks
    ) -> None:
        """Handle a delivery as the loop does, between the handle hook's two calls.

        A hook that raises is logged and the message handled unobserved.
        """
        envelope = delivery.envelope
        try:
            done = hooks.on_handle(self.name, envelope)
        except Exception:
            logger.exception("handle hook failed", extra=log_fields(envelope, self.name))
            done = None
        error: BaseException | None = None
        try:
            function, is_async = handler
            failure: Exception | None = None
            try:
                result = await function(actor, envelope) if is_async else function(actor, envelope)
            except Exception as exc:
                failure = exc
            if failure is not None:
                error = await self._handle(actor, delivery, failure)
            else:
                self.stats.processed += 1
                if envelope.reply_to is not None:
                    await self.runtime.reply(envelope, result)
                delivery.ack()
        except BaseException as exc:
            error = exc
            raise
        finally:
            if done is not None:
                try:
                    done(error)
                except Exception:
                    logger.exception("handle hook failed", extra=log_fields(envelope, self.name))

    async def _handle(
        self, actor: Actor, delivery: Delivery, failure: Exception | None = None
    ) -> Exception | None:
        """Handle a delivery to the end: attempts, retries, dead letter, reply, ack.

        ``failure`` is the error of a first attempt already made by the loop. Returns
        ``None`` when the message was handled, else the error it was dead-lettered for.
        """
        envelope = delivery.envelope
        handler = actor.handler_for(envelope.type)
        if handler is None:
            reason = f"{self.name} has no handler for {envelope.type!r}"
            await self._dead_letter(delivery, reason, 0, None)
            return LookupError(reason)
        function, is_async = handler
        policy = actor.retry
        attempt = 1
        first_failure: float | None = None
        while True:
            try:
                if failure is not None:
                    raise failure
                result = await function(actor, envelope) if is_async else function(actor, envelope)
            except Exception as exc:
                failure = None
                stats = self.stats
                stats.failed += 1
                if first_failure is None:
                    first_failure = time.time()
                if isinstance(exc, policy.fatal):
                    if not self._keep_for_retry(delivery):
                        await self._dead_letter(delivery, exc, attempt, first_failure)
                        self._current = None  # settled: not handed back to the next instance
                    raise ActorCrashed(f"{self.name}: {type(exc).__name__}: {exc}") from exc
                if attempt >= policy.max_attempts:
                    logger.warning(
                        "%s failed %s %s %d time(s), dead-lettering: %s: %s",
                        self.name,
                        envelope.type,
                        envelope.id,
                        attempt,
                        type(exc).__name__,
                        exc,
                        extra=log_fields(envelope, self.name),
                    )
                    await self._dead_letter(delivery, exc, attempt, first_failure)
                    return exc
                stats.retried += 1
                await asyncio.sleep(policy.delay(attempt))
                attempt += 1
                envelope = msgspec.structs.replace(envelope, attempt=attempt)
                continue
            self.stats.processed += 1
            if envelope.reply_to is not None:
                await self.runtime.reply(envelope, result)
            delivery.ack()
            return None

    def _keep_for_retry(self, delivery: Delivery) -> bool:
        """Count one more try for a message that crashed the actor, if it has one left.

        Kept as the current delivery, it goes back to the head of the mailbox when the
        loop ends (see :meth:`run`), unsettled: the next instance takes it first.
        """
        envelope = delivery.envelope
        tries = int(envelope.headers.get(REPLAYS_HEADER, "0"))
        if tries >= self.crash_retries or self._current is not delivery:
            return False
        headers = {**envelope.headers, REPLAYS_HEADER: str(tries + 1)}
        delivery.envelope = msgspec.structs.replace(envelope, attempt=1, headers=headers)
        return True

    async def _dead_letter(
        self,
        delivery: Delivery,
        error: BaseException | str,
        attempts: int,
        first_failure: float | None,
    ) -> None:
        envelope = delivery.envelope
        await self.runtime.dead_letter(
            DeadLetter.for_failure(
                envelope,
                queue=self.queue_spec.name,
                actor=self.name,
                error=error,
                attempts=attempts,
                first_failure=first_failure,
            )
        )
        self.stats.dead_lettered += 1
        if envelope.reply_to is not None:
            reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            await self.runtime.reply(envelope, None, error=reason)
        delivery.ack()
