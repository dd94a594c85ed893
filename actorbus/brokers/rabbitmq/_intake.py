"""What a consumer does with each AMQP message: decode it and hand it on, once.

:class:`Intake` turns one queue's messages into deliveries for its sink: a
message is decoded into an envelope (a batch into each of its envelopes, handed
on whole and in order), a copy of a message the consumer already has is
recognised (see ``_delivery``) and not handed on twice, and a message that
cannot be decoded is stored as a dead letter (confirmed) before it is
acknowledged, or given back when it cannot be stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiormq.abc import DeliveredMessage

from ...errors import DecodeError
from ...messages import Envelope, log_fields, new_message_id
from ..base import DeadLetter, DeliverySink
from ._batch import BATCH_CONTENT_TYPE, SettleGroup, decode_batch, decode_whole
from ._delivery import Dedup, RabbitDelivery, Settle
from ._wire import decode_message, raw_envelope

if TYPE_CHECKING:
    from ...codec import Codec
    from ._acker import Acker

__all__ = ["DeadLetterSink", "Intake"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]
"""Stores a dead letter; returns once it is stored."""


class Intake:
    """Hands the messages of one queue to a sink, decoded, each once."""

    def __init__(
        self,
        queue: str,
        sink: DeliverySink,
        *,
        codec: Codec,
        owner: str,
        dead_letter: DeadLetterSink,
        dedup_window: int = 10_000,
    ) -> None:
        self.queue = queue
        """The queue the messages come from."""
        self.sink = sink
        """Where deliveries go."""
        self.owner = owner
        """Who consumes: the dead letters of undecodable messages are filed under it."""
        self.dedup = Dedup(dedup_window) if dedup_window > 0 else None
        """Recognises copies of messages this consumer already has (``None``: off)."""
        self._codec = codec
        self._dead_letter = dead_letter
        self._in_order = asyncio.Lock()

    async def take(self, message: DeliveredMessage, settle: Settle, acker: Acker) -> None:
        """Hand ``message`` on (settled through ``settle``), or dead-letter it."""
        if message.header.properties.content_type == BATCH_CONTENT_TYPE:
            await self._take_batch(message, settle)
            return
        try:
            envelope = decode_message(self._codec, message)
        except DecodeError as exc:
            await self._reject(raw_envelope(message), exc.reason, settle)
            return
        await self.hand_on(envelope, settle, acker)

    async def _take_batch(self, message: DeliveredMessage, settle: Settle) -> None:
        envelopes = decode_whole(message.body)
        if envelopes is not None:
            group = SettleGroup(len(envelopes), settle)
            hand_on, part_done = self.hand_on, group.part_done
            async with self._in_order:  # batches are handed on whole, one after the other
                for envelope in envelopes:
                    await hand_on(envelope, part_done)
            return
        try:
            parts = decode_batch(message.body)
        except DecodeError as exc:
            await self._reject(raw_envelope(message), exc.reason, settle)
            return
        group = SettleGroup(len(parts), settle)
        async with self._in_order:  # batches are handed on whole, one after the other
            for part in parts:
                try:
                    envelope = self._codec.decode_envelope(part, "application/msgpack")
                except DecodeError as exc:
                    bad = raw_envelope(message)
                    bad = Envelope(
                        id=new_message_id(), type=bad.type, data=part, timestamp=bad.timestamp
                    )
                    await self._reject(bad, exc.reason, group.part_done)
                    continue
                await self.hand_on(envelope, group.part_done)

    async def _reject(self, envelope: Envelope, reason: str, settle: Settle) -> None:
        """Dead-letter a message that cannot be decoded, then settle it."""
        logger.warning(
            "undecodable message on %s: %s", self.queue, reason, extra=log_fields(envelope)
        )
        entry = DeadLetter.for_failure(
            envelope, queue=self.queue, actor=self.owner, error=reason, attempts=0
        )
        try:
            await self._dead_letter(entry)
        except Exception:
            logger.exception(
                "could not dead-letter a bad message; it stays in %s",
                self.queue,
                extra=log_fields(envelope),
            )
            settle(False)
            return
        settle(True)

    async def hand_on(self, envelope: Envelope, settle: Settle, acker: Acker | None = None) -> None:
        """Give ``envelope`` to the sink, unless it is a copy of one this consumer has."""
        dedup = self.dedup
        if dedup is None:
            await self.sink.put(RabbitDelivery(envelope, settle, acker=acker))
            return
        delivery = dedup.admit(envelope, settle, acker)
        if delivery is None:
            return
        try:
            await self.sink.put(delivery)
        except BaseException:
            dedup.abandon(delivery)
            raise
