"""Overhear one message type for a while, leaving nothing behind on the broker.

For read-only tools (``actorbus stats``): the type's exchange is checked
passively (a missing one means nobody publishes there: nothing to hear), then a
server-named, exclusive, auto-delete queue is bound to it and consumed without
acks. That queue is the broker's to delete, and it does as soon as the channel
closes; no exchange and no lasting queue is ever declared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiormq.abc import DeliveredMessage
from aiormq.exceptions import ChannelAccessRefused, ChannelNotFoundEntity

from ...codec import Codec
from ...errors import DecodeError
from ...messages import Envelope, subsystem_of
from ._link import Link
from ._wire import decode_message

__all__ = ["overhear"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


async def overhear(
    link: Link,
    prefix: str,
    message_type: str,
    on_envelope: Callable[[Envelope], None],
    seconds: float,
    *,
    timeout: float = 10.0,
) -> bool:
    """Call ``on_envelope`` for each ``message_type`` message published in the next ``seconds``.

    Returns ``False`` when nothing could be heard: the exchange does not exist, or
    the user may not have even a temporary queue.
    """
    connection, _ = await link.wait_ready()
    exchange = f"{prefix}.{subsystem_of(message_type)}"
    codec = Codec()
    channel = await connection.channel(publisher_confirms=False, timeout=timeout)
    try:
        await channel.exchange_declare(exchange=exchange, passive=True, timeout=timeout)
        declared = await channel.queue_declare(
            "", exclusive=True, auto_delete=True, timeout=timeout
        )
        queue = declared.queue or ""
        await channel.queue_bind(queue, exchange, routing_key=message_type, timeout=timeout)

        async def on_message(message: DeliveredMessage) -> None:
            try:
                on_envelope(decode_message(codec, message))
            except DecodeError as exc:
                logger.debug("undecodable %s message ignored: %s", message_type, exc.reason)

        await channel.basic_consume(queue, on_message, no_ack=True, timeout=timeout)
        await asyncio.sleep(seconds)
    except ChannelNotFoundEntity:
        return False
    except ChannelAccessRefused as exc:
        logger.warning("may not declare a temporary queue to hear %s: %s", message_type, exc)
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True
