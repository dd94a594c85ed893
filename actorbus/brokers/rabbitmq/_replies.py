"""Replies to ``ask`` through RabbitMQ's direct reply-to (no queue to declare).

The requester consumes the pseudo-queue ``amq.rabbitmq.reply-to`` on its publishing
channel (again on every fresh channel); a reply goes to the address RabbitMQ gave
the request, transient and confirmed. An undecodable reply is logged and dropped.
"""

from __future__ import annotations

import logging

from aiormq.abc import AbstractChannel, DeliveredMessage

from ...codec import Codec
from ...errors import DecodeError
from ..base import ReplyHandler
from ._aiormq import consumer_tags
from ._wire import decode_message

__all__ = ["DIRECT_REPLY_TO", "Replies"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class Replies:
    """The direct reply-to consumer and the handler it hands replies to."""

    def __init__(self, codec: Codec, *, timeout: float) -> None:
        self._codec = codec
        self._timeout = timeout
        self.handler: ReplyHandler | None = None
        """Where replies go; ``None`` until a reply address was opened."""

    async def consume(self, channel: AbstractChannel) -> None:
        """Consume direct reply-to on ``channel`` (once per channel)."""
        if DIRECT_REPLY_TO in consumer_tags(channel):
            return

        async def on_reply(message: DeliveredMessage) -> None:
            try:
                envelope = decode_message(self._codec, message, schema_type="")
            except DecodeError as exc:
                logger.warning("undecodable reply dropped: %s", exc.reason)
                return
            handler = self.handler
            if handler is not None:
                handler(envelope)

        await channel.basic_consume(
            DIRECT_REPLY_TO,
            on_reply,
            no_ack=True,
            consumer_tag=DIRECT_REPLY_TO,
            timeout=self._timeout,
        )
