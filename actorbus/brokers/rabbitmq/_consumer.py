"""Consumers: one channel each, prefetch-bounded, with batched acknowledgements.

Each consumer owns a channel (so its prefetch is its own and cancelling it
gives its unsettled messages back by closing that channel). Deliveries are
settled through an :class:`Acker` bound to the channel they came on: settling
is bookkeeping, and the frames go out once per event-loop turn. Acks of a run
of consecutive delivery tags become one ``basic.ack(multiple=True)``; an ack
that is not part of such a run (an earlier message still unsettled) and every
requeue go out on their own, requeues first, so a multiple ack never covers a
message that was not handled. A delivery settled after its channel died is
ignored: the broker has already put it back, and will deliver it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from aiormq.abc import AbstractChannel, AbstractConnection, ChannelFrame, DeliveredMessage
from pamqp.commands import Basic

from ...errors import DecodeError
from ...messages import Delivery, Envelope, new_message_id
from ..base import REPLAYS_HEADER, DeadLetter, DeliverySink
from ._batch import BATCH_CONTENT_TYPE, SettleGroup, decode_batch, decode_whole
from ._transport import writer_of
from ._wire import decode_message, raw_envelope

if TYPE_CHECKING:
    from ...codec import Codec

__all__ = ["Acker", "Dedup", "RabbitConsumer", "RabbitDelivery"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

_ACK, _NACK, _SENT = 1, 2, 3


class Acker:
    """Settles the deliveries of one channel, batching acks with ``multiple=True``.

    Frames normally go out once per event-loop turn, from a task. So that a
    handler that never awaits (the loop never turns) cannot hold acks back
    until a crash loses them, settling also writes the frames itself, straight
    to the connection's socket, once ``flush_count`` settlements are waiting or
    the oldest has waited ``flush_interval`` seconds: at a crash, at most that
    many handled messages are delivered again. It does so only when nothing
    else is queued for the socket, so frames never overtake one another.
    """

    __slots__ = (
        "_due",
        "_flushing",
        "_interval",
        "_limit",
        "_loop",
        "_pending",
        "_scheduled",
        "_state",
        "_unsent",
        "_writer",
        "channel",
        "direct_writes",
    )

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        writer: asyncio.StreamWriter | None = None,
        flush_count: int = 64,
        flush_interval: float = 0.05,
    ) -> None:
        self.channel = channel
        """The channel the deliveries came on."""
        self.direct_writes = 0
        """Times settling wrote its frames itself (a handler kept the loop from turning)."""
        self._pending: deque[int] = deque()
        self._state: dict[int, int] = {}
        self._scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._writer = writer
        self._limit = flush_count
        self._interval = flush_interval
        self._unsent = 0
        self._due = 0.0

    def delivered(self, tag: int) -> None:
        """Record a delivery tag as it arrives (tags arrive in increasing order)."""
        self._pending.append(tag)

    def settle(self, tag: int, ok: bool) -> None:
        """Mark ``tag`` handled (``ok``) or to be requeued; the frame goes out shortly."""
        if tag in self._state or self.channel.is_closed:
            return
        self._state[tag] = _ACK if ok else _NACK
        self._unsent += 1
        if not self._scheduled:
            self._scheduled = True
            self._due = time.monotonic() + self._interval
            self._loop.call_soon(self._kick)
        elif self._writer is not None and (
            self._unsent >= self._limit or time.monotonic() >= self._due
        ):
            self._write_now()

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = self._loop.create_task(self._flush())
        # else the running flush loops until nothing is left

    def _take(self) -> tuple[list[int], int, list[int]]:
        """What to send now: requeues, the top of the acked run, and lone acks."""
        self._scheduled = False
        self._unsent = 0
        state, pending = self._state, self._pending
        nacks = [tag for tag, how in state.items() if how == _NACK]
        for tag in nacks:
            state[tag] = _SENT
        top = 0
        while pending and pending[0] in state:
            tag = pending.popleft()
            if state.pop(tag) == _ACK:
                top = tag
        singles = [tag for tag, how in state.items() if how == _ACK]
        for tag in singles:
            state[tag] = _SENT
        return nacks, top, singles

    def _write_now(self) -> None:
        """Write the waiting settlements to the socket at once, if that keeps frame order."""
        writer, channel = self._writer, self.channel
        assert writer is not None
        connection = channel.connection
        if (
            (self._flushing is not None and not self._flushing.done())
            or connection is None
            or not connection.write_queue.empty()
            or writer.is_closing()
        ):
            self._due = time.monotonic() + self._interval  # try again later
            return
        nacks, top, singles = self._take()
        frames: list[Basic.Nack | Basic.Ack] = [
            Basic.Nack(delivery_tag=tag, requeue=True) for tag in nacks
        ]
        if top:
            frames.append(Basic.Ack(delivery_tag=top, multiple=True))
        frames.extend(Basic.Ack(delivery_tag=tag) for tag in singles)
        if frames:
            writer.write(ChannelFrame.marshall(channel.number, frames).payload)
            self.direct_writes += 1
        self._scheduled = True  # the kick already queued finds nothing, or what came since
        self._due = time.monotonic() + self._interval

    async def flush(self) -> None:
        """Send every settlement made so far, and wait until they are written."""
        if self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        if self._state and not self.channel.is_closed:
            await self._flush()

    async def _flush(self) -> None:
        channel = self.channel
        try:
            while self._scheduled:
                nacks, top, singles = self._take()
                if channel.is_closed:
                    return
                for tag in nacks:
                    await channel.basic_nack(tag, requeue=True, wait=False)
                if top:
                    await channel.basic_ack(top, multiple=True, wait=False)
                for tag in singles:
                    await channel.basic_ack(tag, wait=False)
        except Exception as exc:  # the channel died: the broker requeues what is unsettled
            logger.debug("acknowledgements lost with their channel: %r", exc)


class Dedup:
    """Recognises copies of a message one consumer already has, by envelope id.

    A copy comes from a redelivery (the ack of a handled message was lost with
    its connection, or the message sat in a mailbox when the connection
    dropped) or from a publish sent again after its confirm was lost. A copy of
    a message handled recently (the last ``window`` ids) is acknowledged and
    dropped; a copy of a message still waiting or being handled is settled
    together with it. A replayed dead letter is not a copy: its replay count
    is part of the key. Only copies reaching the same consumer are recognised.
    """

    __slots__ = ("_order", "dropped", "inflight", "recent", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        """How many handled ids are remembered."""
        self.recent: set[str] = set()
        """Keys of messages handled recently."""
        self._order: deque[str] = deque()
        self.inflight: dict[str, RabbitDelivery] = {}
        """Deliveries handed on and not yet settled, by key."""

    def done(self, key: str, delivery: RabbitDelivery, handled: bool) -> None:
        """Note that ``delivery`` was settled (``handled``, or given back)."""
        if self.inflight.get(key) is delivery:
            del self.inflight[key]
        if handled and key not in self.recent:
            self.recent.add(key)
            order = self._order
            order.append(key)
            if len(order) > self.window:
                self.recent.discard(order.popleft())


Settle = Callable[[bool], None]
"""Settles one delivery on the broker: ``True`` acknowledges, ``False`` requeues."""


class RabbitDelivery(Delivery):
    """A delivery from RabbitMQ: ``ack``/``requeue`` settle it on its own channel."""

    __slots__ = ("_copies", "_dedup", "_key", "_settle", "_settled")

    def __init__(self, envelope: Envelope, settle: Settle, dedup: Dedup | None, key: str) -> None:
        self.envelope = envelope
        self._settle = settle
        self._settled = False
        self._dedup = dedup
        self._key = key
        self._copies: list[Settle] | None = None

    def add_copy(self, settle: Settle) -> None:
        """Settle a redelivered copy together with this delivery."""
        if self._copies is None:
            self._copies = []
        self._copies.append(settle)

    def ack(self) -> None:
        """Acknowledge (batched with its neighbours); settling twice does nothing."""
        self._done(True)

    def requeue(self) -> None:
        """Give the message back to its queue; settling twice does nothing."""
        self._done(False)

    def _done(self, handled: bool) -> None:
        if self._settled:
            return
        self._settled = True
        self._settle(handled)
        if self._copies is not None:
            for settle in self._copies:
                settle(handled)
        if self._dedup is not None:
            self._dedup.done(self._key, self, handled)


DeadLetterStore = Callable[[DeadLetter], Awaitable[None]]


class RabbitConsumer:
    """Feeds one queue's messages to a sink; restartable on a new connection."""

    def __init__(
        self,
        queue: str,
        sink: DeliverySink,
        prefetch: int,
        *,
        codec: Codec,
        actor: str,
        dead_letter: DeadLetterStore,
        timeout: float,
        on_remove: Callable[[RabbitConsumer], None],
        dedup_window: int = 10_000,
        ack_flush_count: int = 64,
        ack_flush_interval: float = 0.05,
    ) -> None:
        self.queue = queue
        """The queue consumed."""
        self.prefetch = prefetch
        """Most unsettled deliveries at once."""
        self.channel: AbstractChannel | None = None
        """The channel of the current incarnation."""
        self.tag: str | None = None
        """Consumer tag of the current incarnation."""
        self.cancelled = False
        """Set once :meth:`cancel` was called: never restarted again."""
        self._sink = sink
        self._codec = codec
        self._actor = actor
        self._dead_letter = dead_letter
        self._timeout = timeout
        self._acker: Acker | None = None
        self._ack_count = ack_flush_count
        self._ack_interval = ack_flush_interval
        self._on_remove = on_remove
        self._in_order = asyncio.Lock()
        self.dedup = Dedup(dedup_window) if dedup_window > 0 else None
        """Recognises copies of messages this consumer already has (``None``: off)."""

    @property
    def healthy(self) -> bool:
        """Whether the consumer is registered on an open channel."""
        channel = self.channel
        return self.cancelled or (
            channel is not None and not channel.is_closed and self.tag in _consumers_of(channel)
        )

    async def start(self, connection: AbstractConnection) -> None:
        """Open a channel on ``connection`` and consume (again) from the queue."""
        old = self.channel
        if old is not None and not old.is_closed:
            await _close_quietly(old)
        channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
        try:
            await channel.basic_qos(prefetch_count=self.prefetch, timeout=self._timeout)
            acker = Acker(
                channel,
                writer=writer_of(connection),
                flush_count=self._ack_count,
                flush_interval=self._ack_interval,
            )

            async def on_message(message: DeliveredMessage) -> None:
                await self._on_message(acker, message)

            ok = await channel.basic_consume(self.queue, on_message, timeout=self._timeout)
        except BaseException:
            await _close_quietly(channel)
            raise
        self.channel, self.tag, self._acker = channel, ok.consumer_tag, acker

    async def _on_message(self, acker: Acker, message: DeliveredMessage) -> None:
        tag: int = message.delivery.delivery_tag or 0  # type: ignore[union-attr]
        acker.delivered(tag)
        settle = partial(acker.settle, tag)
        if message.header.properties.content_type == BATCH_CONTENT_TYPE:
            await self._on_batch(message, settle)
            return
        try:
            envelope = decode_message(self._codec, message)
        except DecodeError as exc:
            await self._reject(raw_envelope(message), exc.reason, settle)
            return
        await self._hand_on(envelope, settle)

    async def _on_batch(self, message: DeliveredMessage, settle: Settle) -> None:
        envelopes = decode_whole(message.body)
        if envelopes is not None:
            group = SettleGroup(len(envelopes), settle)
            hand_on, part_done = self._hand_on, group.part_done
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
                await self._hand_on(envelope, group.part_done)

    async def _reject(self, envelope: Envelope, reason: str, settle: Settle) -> None:
        """Dead-letter a message that cannot be decoded, then settle it."""
        logger.warning("undecodable message on %s: %s", self.queue, reason)
        entry = DeadLetter.for_failure(
            envelope, queue=self.queue, actor=self._actor, error=reason, attempts=0
        )
        try:
            await self._dead_letter(entry)
        except Exception:
            logger.exception("could not dead-letter a bad message; it stays in %s", self.queue)
            settle(False)
            return
        settle(True)

    async def _hand_on(self, envelope: Envelope, settle: Settle) -> None:
        """Give ``envelope`` to the sink, unless it is a copy of one this consumer has."""
        dedup = self.dedup
        if dedup is None:
            await self._sink(RabbitDelivery(envelope, settle, None, ""))
            return
        replays = envelope.headers.get(REPLAYS_HEADER)
        key = envelope.id if replays is None else f"{envelope.id}/{replays}"
        if key in dedup.recent:
            settle(True)
            return
        original = dedup.inflight.get(key)
        if original is not None:
            original.add_copy(settle)
            return
        delivery = RabbitDelivery(envelope, settle, dedup, key)
        dedup.inflight[key] = delivery
        try:
            await self._sink(delivery)
        except BaseException:
            if dedup.inflight.get(key) is delivery:
                del dedup.inflight[key]
            raise

    async def cancel(self) -> None:
        """Stop consuming; unsettled deliveries go back to the queue."""
        if self.cancelled:
            return
        self.cancelled = True
        self._on_remove(self)
        channel, acker = self.channel, self._acker
        if channel is None or channel.is_closed:
            return
        try:
            if self.tag is not None:
                await channel.basic_cancel(self.tag, timeout=self._timeout)
            if acker is not None:
                await acker.flush()
        except Exception as exc:
            logger.debug("cancelling consumer of %s: %r", self.queue, exc)
        await _close_quietly(channel)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        async with asyncio.timeout(2.0):
            await channel.close()
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
            raise
        logger.debug("closing a channel: %r", exc)


def _consumers_of(channel: AbstractChannel) -> dict[str, object]:
    """The consumer tags registered on an aiormq channel."""
    consumers: dict[str, object] = getattr(channel, "consumers", {})
    return consumers


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
