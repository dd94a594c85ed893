"""Opt-in batching: many envelopes of one type in one AMQP message.

For the types a broker is told to batch (market data, typically), publishes
are gathered per type and sent as one persistent AMQP message when
``batch_size`` envelopes are waiting or ``batch_linger`` seconds after the
first one, whichever comes first. Every publisher of the batch returns when
the broker confirmed the batch.

The AMQP message has ``content_type`` :data:`BATCH_CONTENT_TYPE`, the type
as ``type`` and routing key, an ``x-batch`` header with the count, and as body
a msgpack array of whole envelopes (each as :meth:`Codec.encode_envelope`
would write it in msgpack). A consumer hands each envelope on as its own
delivery, in order, and acknowledges the AMQP message once every envelope in
it was handled or dead-lettered (it requeues the whole message if any was
given back; copies already handled are then recognised by id). Prefetch
counts AMQP messages, so a consumer may hold up to ``prefetch x batch_size``
envelopes. A single message of a batched type from any other client is read
as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from pamqp.commands import Basic

from ...codec import apply_schema
from ...errors import DecodeError
from ...messages import Envelope, new_message_id

__all__ = ["BATCH_CONTENT_TYPE", "Batcher", "SettleGroup", "decode_batch", "decode_whole"]

BATCH_CONTENT_TYPE = "application/vnd.actorbus.batch+msgpack"
"""Content type of an AMQP message carrying a batch of envelopes."""

Send = Callable[[str, str, bytes, Basic.Properties], Awaitable[None]]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[msgspec.Raw])
_whole = msgspec.msgpack.Decoder(list[Envelope])


class _Batch:
    __slots__ = ("envelopes", "timer", "waiters")

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.timer: asyncio.TimerHandle | None = None

    def finish(self, error: BaseException | None) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)


class Batcher:
    """Gathers envelopes per (exchange, type) and sends them as batches."""

    def __init__(self, send: Send, *, size: int, linger: float) -> None:
        if size < 1:
            raise ValueError("batch_size must be at least 1")
        self.size = size
        """Most envelopes in one batch."""
        self.linger = linger
        """Seconds a batch may wait for more envelopes after its first."""
        self.sent = 0
        """Batches sent."""
        self._send = send
        self._open: dict[tuple[str, str], _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, exchange: str, envelope: Envelope) -> None:
        """Add ``envelope`` to its batch; return once the broker confirmed that batch."""
        key = (exchange, envelope.type)
        batch = self._open.get(key)
        loop = self._loop
        if loop is None:  # the broker, and so this batcher, belongs to one event loop
            loop = self._loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._open[key] = _Batch()
            batch.timer = loop.call_later(self.linger, self._flush, key, batch)
        waiter: asyncio.Future[None] = loop.create_future()
        batch.envelopes.append(envelope)
        batch.waiters.append(waiter)
        if len(batch.envelopes) >= self.size:
            self._flush(key, batch)
        await waiter

    def _flush(self, key: tuple[str, str], batch: _Batch) -> None:
        if self._open.get(key) is not batch:
            return
        del self._open[key]
        if batch.timer is not None:
            batch.timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._send_batch(key, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, key: tuple[str, str], batch: _Batch) -> None:
        exchange, message_type = key
        try:
            body = _encoder.encode(batch.envelopes)
            properties = Basic.Properties(
                content_type=BATCH_CONTENT_TYPE,
                delivery_mode=2,
                message_id=new_message_id(),
                message_type=message_type,
                timestamp=datetime.now(UTC),
                headers={"x-batch": len(batch.envelopes)},
            )
            await self._send(exchange, message_type, body, properties)
        except BaseException as exc:
            batch.finish(exc if isinstance(exc, Exception) else ConnectionError("batch cut"))
            if not isinstance(exc, Exception):
                raise
        else:
            self.sent += 1
            batch.finish(None)

    async def flush_all(self) -> None:
        """Send every open batch now and wait for their confirms."""
        for key, batch in list(self._open.items()):
            self._flush(key, batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def decode_whole(body: bytes) -> list[Envelope] | None:
    """Decode a batch in one go, schemas applied; ``None`` when any part is bad."""
    try:
        return [apply_schema(envelope) for envelope in _whole.decode(body)]
    except (msgspec.MsgspecError, DecodeError):
        return None


def decode_batch(body: bytes) -> list[bytes]:
    """Split a batch body into the encoded envelopes it holds."""
    try:
        parts = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not a batch of envelopes: {exc}") from None
    return [bytes(part) for part in parts]


class SettleGroup:
    """Settles one AMQP message once each of its ``count`` parts was settled."""

    __slots__ = ("_handled", "_left", "_settle")

    def __init__(self, count: int, settle: Callable[[bool], Any]) -> None:
        self._left = count
        self._handled = True
        self._settle = settle
        if count == 0:
            settle(True)

    def part_done(self, handled: bool) -> None:
        """One part is settled: ``handled``, or given back (the whole message goes back)."""
        if not handled:
            self._handled = False
        self._left -= 1
        if self._left == 0:
            self._settle(self._handled)
