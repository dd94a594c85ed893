"""Publishing with confirms, many publishes per socket write.

The AMQP client writes each publish as its own socket write (one system call,
and one wake-up of the broker, per message). :class:`Pipeline` gathers the
publishes made during one event-loop turn and writes their frames together,
still one AMQP message each, each with its own delivery tag and confirm future:
the broker's confirms (often one ``multiple`` ack for many) resolve them as
the client would. Returned mandatory messages and nacks fail their own future
only. When the channel closes, every pending future fails with it, and the
caller sends again on the next channel.

The pipeline works with the client's channel bookkeeping (delivery tags,
confirm futures, message-id map for returns) the way the client's own
``basic_publish`` does, and is the only publisher on its channel, so tags
follow the order frames are queued for the socket. Those internals are reached
through ``_aiormq`` only, which refuses any aiormq but the tested minor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiormq.abc import AbstractChannel, ChannelFrame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from ._aiormq import confirmations, message_id_tags, next_delivery_tag, split_body, write_queue

__all__ = ["Pipeline"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

_Item = tuple[str, str, bytes, Basic.Properties, bool, "asyncio.Future[Any]"]


class Pipeline:
    """Coalesces the publishes of one event-loop turn into one write on ``channel``."""

    __slots__ = ("_batch", "_loop", "_writer", "batched", "channel", "writes")

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        """The publishing channel (publisher confirms on)."""
        self._batch: list[_Item] = []
        self._loop = asyncio.get_running_loop()
        self._writer: asyncio.Task[None] | None = None

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        mandatory: bool,
    ) -> asyncio.Future[Any]:
        """Queue one publish; the future resolves with the broker's confirm."""
        future: asyncio.Future[Any] = self.channel.create_future()
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append((exchange, routing_key, body, properties, mandatory, future))
        return future

    def _flush(self) -> None:
        """Write what gathered this turn, at once if the write queue has room.

        Tags are given in the order the frames reach the write queue: either here,
        when no write is pending, or by the one pending writer task, in order.
        """
        if self._writer is not None or not self._batch:
            return  # the pending writer takes the batch when its write is through
        batch, self._batch = self._batch, []
        payload = self._frames(batch)
        if payload is None:
            return
        try:
            write_queue(self.channel).put_nowait(payload)
        except asyncio.QueueFull:
            self._writer = self._loop.create_task(self._write(payload, batch))
            return

    async def _write(self, payload: ChannelFrame, batch: list[_Item]) -> None:
        queue = write_queue(self.channel)
        try:
            while True:
                await queue.put(payload)
                if not self._batch:
                    return
                batch, self._batch = self._batch, []
                next_payload = self._frames(batch)
                if next_payload is None:
                    return
                payload = next_payload
        except BaseException as exc:
            _fail(batch, exc)
            _fail(self._batch, exc)
            self._batch = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

    def _frames(self, batch: list[_Item]) -> ChannelFrame | None:
        """Give each live publish its delivery tag and confirm future; marshal them all."""
        channel = self.channel
        if channel.is_closed:
            _fail(batch, ConnectionError("the publishing channel is closed"))
            return None
        frames: list[Any] = []
        futures = confirmations(channel)
        by_message_id = message_id_tags(channel)
        for exchange, routing_key, body, properties, mandatory, future in batch:
            if future.done():  # abandoned by its publisher (timeout, cancel)
                continue
            tag = next_delivery_tag(channel)
            futures[tag] = future
            if mandatory and properties.message_id:
                message_id = properties.message_id
                by_message_id[message_id] = tag
                future.add_done_callback(_forget(by_message_id, message_id, tag))
            frames.append(
                Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory)
            )
            frames.append(ContentHeader(properties=properties, body_size=len(body)))
            frames.extend(split_body(channel, body))
        if not frames:
            return None
        return ChannelFrame.marshall(channel_number=channel.number, frames=frames)


def _fail(batch: list[_Item], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else ConnectionError("publish cut")
    for item in batch:
        future = item[5]
        if not future.done():
            future.set_exception(error)


def _forget(by_message_id: dict[str, int], message_id: str, tag: int) -> Any:
    def forget(_: asyncio.Future[Any]) -> None:
        if by_message_id.get(message_id) == tag:
            del by_message_id[message_id]

    return forget
