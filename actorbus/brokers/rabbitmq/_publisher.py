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
confirm futures, message-id map for returns) under the channel's lock, the way
the client's own ``basic_publish`` does; a channel without that bookkeeping is
published to one message at a time through ``basic_publish``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiormq.abc import AbstractChannel, ChannelFrame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

__all__ = ["Pipeline"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

_Item = tuple[str, str, bytes, Basic.Properties, bool, "asyncio.Future[Any]"]


class Pipeline:
    """Coalesces the publishes of one event-loop turn into one write on ``channel``."""

    __slots__ = ("_batch", "_loop", "_tasks", "batched", "channel", "writes")

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        """The publishing channel (publisher confirms on)."""
        self.writes = 0
        """Socket writes made (for tests and benchmarks)."""
        self.batched = 0
        """Messages written."""
        self._batch: list[_Item] = []
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def supported(channel: AbstractChannel) -> bool:
        """Whether ``channel`` has the bookkeeping the pipeline relies on."""
        return all(
            hasattr(channel, name)
            for name in ("confirmations", "delivery_tag", "message_id_delivery_tag", "lock")
        ) and hasattr(channel, "_split_body")

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
            self._loop.call_soon(self._flush_soon)
        self._batch.append((exchange, routing_key, body, properties, mandatory, future))
        return future

    def _flush_soon(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        task = self._loop.create_task(self._write(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[_Item]) -> None:
        channel: Any = self.channel
        try:
            async with channel.lock:
                frames: list[Any] = []
                confirmations = channel.confirmations
                by_message_id = channel.message_id_delivery_tag
                for exchange, routing_key, body, properties, mandatory, future in batch:
                    if future.done():  # abandoned by its publisher (timeout, cancel)
                        continue
                    channel.delivery_tag += 1
                    tag = channel.delivery_tag
                    confirmations[tag] = future
                    if mandatory and properties.message_id:
                        message_id = properties.message_id
                        by_message_id[message_id] = tag
                        future.add_done_callback(_forget(by_message_id, message_id, tag))
                    frames.append(
                        Basic.Publish(
                            exchange=exchange, routing_key=routing_key, mandatory=mandatory
                        )
                    )
                    frames.append(ContentHeader(properties=properties, body_size=len(body)))
                    frames.extend(channel._split_body(body))
                if not frames:
                    return
                payload = ChannelFrame.marshall(channel_number=channel.number, frames=frames)
                await channel.write_queue.put(payload)
                self.writes += 1
                self.batched += len(batch)
        except BaseException as exc:
            for item in batch:
                future = item[5]
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else ConnectionError("channel closed")
                    )
            if not isinstance(exc, Exception):
                raise


def _forget(by_message_id: dict[str, int], message_id: str, tag: int) -> Any:
    def forget(_: asyncio.Future[Any]) -> None:
        if by_message_id.get(message_id) == tag:
            del by_message_id[message_id]

    return forget
