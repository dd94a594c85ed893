"""The dead-letter store: a durable queue of entries, read without a consumer.

Each entry is one persistent message in ``<prefix>.dead_letters``: the whole
:class:`~actorbus.brokers.base.DeadLetter` msgpack-encoded in the body, with
``x-actor``, ``x-queue``, ``x-error-type``, ``x-reason`` and ``x-attempts``
headers for plain clients. Storing waits for the publisher confirm, so a
message is acknowledged only after its dead letter is safe.

Messages the broker itself dead-lettered (a quorum queue's delivery limit
reached: see ``_queue_defaults``) arrive as they were, with RabbitMQ's
``x-death`` headers; they are read as entries of the same shape, with
``error_type`` ``DeliveryLimitReached``, the number of deliveries as
``attempts`` and the reason in words, so they list, replay and purge alike.
Their ``actor`` is the owner this broker's own consumer of that queue was
started with (``consume(..., owner=)``); a queue this broker never consumed
(an inspecting tool, another process's actor) gives its name instead: the
broker does not guess an actor from a queue's name.

Listing, replaying and purging read the whole store with ``basic.get`` on a
private channel, settle what they take, and give the rest back in its order.
Two processes doing so at the same instant each see only what the other is
not holding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from ...codec import Codec, apply_schema
from ...errors import DecodeError
from ...messages import Envelope, log_fields
from ..base import DeadLetter, DeadLetterFilter
from ._wire import decode_message, raw_envelope

__all__ = ["DELIVERY_LIMIT_REACHED", "BrokerDeadLetters", "DeadLetterFace", "DeadLetterStore"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

Send = Callable[[bytes, Basic.Properties], Awaitable[None]]
SendToQueue = Callable[[str, Envelope], Awaitable[None]]
WaitLink = Callable[[], Awaitable[tuple[AbstractConnection, AbstractChannel]]]
Visit = Callable[[AbstractChannel, int, DeadLetter], Awaitable[bool]]

DELIVERY_LIMIT_REACHED = "DeliveryLimitReached"
"""``error_type`` of a message a quorum queue dead-lettered after its last allowed delivery."""


class BrokerDeadLetters:
    """How to read what the broker dead-lettered: decode, name the owner, know the limit."""

    def __init__(
        self,
        codec: Codec,
        owner_of: Callable[[str], str],
        limit_of: Callable[[str], int | None],
    ) -> None:
        self.codec = codec
        """Decodes the message's data."""
        self.owner_of = owner_of
        """Who consumes a queue, as the broker's consumer of it was told (see above)."""
        self.limit_of = limit_of
        """The delivery limit a queue was declared with, when known."""

    def entry(self, message: DeliveredMessage) -> DeadLetter | None:
        """The entry of a message dead-lettered by its queue, or ``None`` if it is not one."""
        headers = message.header.properties.headers or {}
        deaths = headers.get("x-death")
        if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
            return None
        death: dict[str, Any] = deaths[0]
        queue = _text(headers.get("x-first-death-queue") or death.get("queue") or "")
        why = _text(death.get("reason") or headers.get("x-first-death-reason") or "")
        try:
            envelope = decode_message(self.codec, message)
        except DecodeError:
            envelope = raw_envelope(message)
        when = death.get("time")
        at = when.timestamp() if isinstance(when, datetime) else envelope.timestamp
        limit = self.limit_of(queue)
        if why == "delivery_limit":
            deliveries = limit + 1 if limit is not None else 0
            error_type = DELIVERY_LIMIT_REACHED
            reason = (
                f"delivery limit reached: delivered {deliveries or 'too many'} times"
                + (f" (limit {limit})" if limit is not None else "")
                + ", and each time its consumer died or lost its connection before settling it"
            )
        else:
            deliveries, error_type = 0, f"BrokerDeadLettered:{why or 'unknown'}"
            reason = f"dead-lettered by RabbitMQ from {queue} ({why or 'no reason given'})"
        return DeadLetter(
            envelope=envelope,
            queue=queue,
            actor=self.owner_of(queue),
            error_type=error_type,
            reason=reason,
            attempts=deliveries,
            first_failure=at,
            last_failure=at,
        )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class DeadLetterStore:
    """Stores, lists, replays and purges the entries of one dead-letter queue."""

    def __init__(
        self,
        queue: str,
        *,
        send: Send,
        send_to_queue: SendToQueue,
        wait_link: WaitLink,
        timeout: float,
        broker_dead: BrokerDeadLetters | None = None,
    ) -> None:
        self.queue = queue
        """Name of the durable queue holding the entries."""
        self._send = send
        self._send_to_queue = send_to_queue
        self._wait_link = wait_link
        self._timeout = timeout
        self._broker_dead = broker_dead
        self._lock = asyncio.Lock()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(DeadLetter)

    async def add(self, entry: DeadLetter) -> None:
        """Store ``entry``; return once the broker confirmed it."""
        envelope = entry.envelope
        properties = Basic.Properties(
            content_type="application/msgpack",
            delivery_mode=2,
            message_id=envelope.id,
            message_type=envelope.type,
            headers={
                "x-actor": entry.actor,
                "x-queue": entry.queue,
                "x-error-type": entry.error_type,
                "x-reason": entry.reason[:1000],
                "x-attempts": entry.attempts,
            },
        )
        await self._send(self._encoder.encode(entry), properties)
        logger.warning(
            "dead letter: %s %s from %s after %d attempt(s): %s: %s",
            envelope.type,
            envelope.id,
            entry.actor,
            entry.attempts,
            entry.error_type,
            entry.reason,
            extra=log_fields(envelope, entry.actor),
        )

    def _read(self, message: DeliveredMessage) -> DeadLetter | None:
        try:
            entry = self._decoder.decode(message.body)
        except msgspec.DecodeError:
            if self._broker_dead is None:
                return None
            return self._broker_dead.entry(message)
        try:
            return msgspec.structs.replace(entry, envelope=apply_schema(entry.envelope))
        except DecodeError:  # stored as it came (an undecodable message): kept as it is
            return entry

    async def _walk(self, visit: Visit) -> None:
        """Take every entry on a private channel; give back what ``visit`` did not settle.

        ``visit(channel, tag, entry)`` returns True when it acknowledged the entry.
        """
        async with self._lock:
            connection, _ = await self._wait_link()
            channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
            last_kept = 0
            try:
                while True:
                    message = await channel.basic_get(
                        self.queue, no_ack=False, timeout=self._timeout
                    )
                    delivery = message.delivery
                    if not isinstance(delivery, Basic.GetOk):
                        break
                    tag = delivery.delivery_tag or 0
                    entry = self._read(message)
                    if entry is None or not await visit(channel, tag, entry):
                        last_kept = tag
                    if not delivery.message_count:
                        break
            finally:
                try:
                    if last_kept and not channel.is_closed:
                        await channel.basic_nack(last_kept, multiple=True, requeue=True)
                finally:
                    async with asyncio.timeout(2.0):
                        await channel.close()

    async def count(self) -> int:
        """Entries in the store now (a passive declare: nothing is read)."""
        connection, _ = await self._wait_link()
        channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
        try:
            ok = await channel.queue_declare(self.queue, passive=True, timeout=self._timeout)
            return int(ok.message_count or 0)
        finally:
            async with asyncio.timeout(2.0):
                await channel.close()

    async def list(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """The selected entries, oldest first, left stored."""
        found: list[DeadLetter] = []

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            if selection(entry):
                found.append(entry)
            return False

        await self._walk(visit)
        return found

    async def replay(self, selection: DeadLetterFilter, *, max_replays: int | None) -> int:
        """Send selected entries back to their own queues, counting replays in a header."""
        replayed = 0

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            nonlocal replayed
            if not selection(entry) or (max_replays is not None and entry.replays >= max_replays):
                return False
            await self._send_to_queue(entry.queue, entry.replay_envelope())
            await channel.basic_ack(tag)
            replayed += 1
            return True

        await self._walk(visit)
        return replayed

    async def purge(self, selection: DeadLetterFilter) -> int:
        """Delete the selected entries; return how many."""
        purged = 0

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            nonlocal purged
            if not selection(entry):
                return False
            await channel.basic_ack(tag)
            purged += 1
            return True

        await self._walk(visit)
        return purged


class DeadLetterFace:
    """The broker's dead-letter methods (``MessageBroker``), over its :class:`DeadLetterStore`."""

    _dead: DeadLetterStore

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store ``entry`` in the dead-letter queue; return once the broker confirmed it."""
        await self._dead.add(entry)

    async def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """List the selected dead letters, oldest first, leaving them stored."""
        return await self._dead.list(selection)

    async def dead_letter_count(self) -> int:
        """Entries in the dead-letter queue (those ready; none is held by a reader)."""
        return await self._dead.count()

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected entries back to their own queues, counting replays in a header."""
        return await self._dead.replay(selection, max_replays=max_replays)

    async def purge_dead_letters(self, selection: DeadLetterFilter) -> int:
        """Delete the selected entries; return how many."""
        return await self._dead.purge(selection)
