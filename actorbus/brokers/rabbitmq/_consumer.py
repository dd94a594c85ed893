"""Consumers: one channel each, prefetch-bounded, with batched acknowledgements.

Each consumer owns a channel (so its prefetch is its own and cancelling it
gives its unsettled messages back by closing that channel). Deliveries are
settled through an :class:`~._acker.Acker` bound to the channel they came on
(batched acks, never held back for long: see ``_acker``). A delivery settled
after its channel died is ignored: the broker has already put it back, and
will deliver it again.

A consumer of a queue with a delivery limit (``bounded``) also keeps a
redelivery window (see ``_window``): prefetch 1 while a message may be the
one that kills the process, the full prefetch once a fresh one succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage

from ...errors import DecodeError
from ...messages import Delivery, Envelope, log_fields, new_message_id
from ..base import REPLAYS_HEADER, DeadLetter, DeliverySink
from ._acker import Acker
from ._aiormq import consumer_tags, writer_of
from ._batch import BATCH_CONTENT_TYPE, SettleGroup, decode_batch, decode_whole
from ._closing import close_quietly
from ._window import RedeliveryWindow, first_delivery
from ._wire import decode_message, raw_envelope

if TYPE_CHECKING:
    from ...codec import Codec

__all__ = ["Dedup", "RabbitConsumer", "RabbitDelivery"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


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

    __slots__ = ("_copies", "_dedup", "_key", "_settle", "_settled", "acker")

    def __init__(self, envelope: Envelope, settle: Settle, dedup: Dedup | None, key: str) -> None:
        self.envelope = envelope
        self._settle = settle
        self._settled = False
        self._dedup = dedup
        self._key = key
        self._copies: list[Settle] | None = None
        self.acker: Acker | None = None
        """The acker of the channel it came on, when known (to tell a dead channel's)."""

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


def _of_closed_channel(delivery: Delivery) -> bool:
    """Whether ``delivery`` came on a channel that is closed now (RabbitMQ took it back)."""
    acker = delivery.acker if isinstance(delivery, RabbitDelivery) else None
    return acker is not None and acker.channel.is_closed


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
        bounded: bool = False,
        single_active: bool = False,
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
        self.paused = False
        """Set once :meth:`pause` was called: no new deliveries, never restarted again."""
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
        self.bounded = bounded
        """The queue has a delivery limit: keep a redelivery window (see ``_window``)."""
        self.window: RedeliveryWindow | None = None
        """The redelivery window of the current incarnation (``None``: not bounded)."""
        self.single_active = single_active
        """The queue has ``x-single-active-consumer``: this consumer may be standing by."""
        self._active = not single_active

    @property
    def active(self) -> bool:
        """Whether RabbitMQ gives this consumer the queue's messages (see below).

        AMQP 0-9-1 does not tell a consumer that it became a queue's single active
        consumer, so this is what the client can know for sure: a consumer is
        active once it was the only consumer right after registering (a passive
        declare then counts 1), or once a message reached it on its current
        channel; RabbitMQ keeps an active consumer active until it goes. A
        standby that was promoted reads ``False`` until its first message.
        """
        return self._active

    @property
    def healthy(self) -> bool:
        """Whether the consumer is registered on an open channel."""
        channel = self.channel
        window = self.window
        return (
            self.cancelled
            or self.paused
            or (
                channel is not None
                and not channel.is_closed
                and (self.tag in consumer_tags(channel) or (window is not None and window.resizing))
            )
        )

    async def start(self, connection: AbstractConnection) -> None:
        """Open a channel on ``connection`` and consume (again) from the queue."""
        old = self.channel
        if old is not None and not old.is_closed:
            await close_quietly(old, "a channel")
        if self.single_active and old is not None:
            self._drop_stale()
        channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
        window: RedeliveryWindow | None = None
        try:
            acker = Acker(
                channel,
                writer=writer_of(connection),
                flush_count=self._ack_count,
                flush_interval=self._ack_interval,
            )
            if self.bounded:
                window = RedeliveryWindow(
                    self.prefetch, lambda size: self._resize(channel, on_message, size)
                )

            async def on_message(message: DeliveredMessage) -> None:
                await self._on_message(acker, message, window)

            prefetch = 1 if window is not None else self.prefetch
            await channel.basic_qos(prefetch_count=prefetch, timeout=self._timeout)
            self._active = not self.single_active
            ok = await channel.basic_consume(self.queue, on_message, timeout=self._timeout)
            if self.single_active and not self._active:
                declared = await channel.queue_declare(
                    self.queue, passive=True, timeout=self._timeout
                )
                self._active = self._active or declared.consumer_count == 1
        except BaseException:
            await close_quietly(channel, "a channel")
            raise
        self.channel, self.tag, self._acker, self.window = channel, ok.consumer_tag, acker, window
        if self.single_active:  # its unacked messages go to the next consumer at once
            channel.closing.add_done_callback(lambda _: self._drop_stale())

    async def _resize(
        self,
        channel: AbstractChannel,
        on_message: Callable[[DeliveredMessage], Coroutine[Any, Any, None]],
        prefetch: int,
    ) -> None:
        """Consume again on the same channel with another prefetch (see ``_window``)."""
        if self.cancelled or self.paused or channel is not self.channel or self.tag is None:
            return
        await channel.basic_cancel(self.tag, timeout=self._timeout)
        if self.cancelled or self.paused:
            return
        await channel.basic_qos(prefetch_count=prefetch, timeout=self._timeout)
        ok = await channel.basic_consume(self.queue, on_message, timeout=self._timeout)
        self.tag = ok.consumer_tag
        if self.cancelled or self.paused:  # stopped meanwhile: no new deliveries
            await channel.basic_cancel(ok.consumer_tag, timeout=self._timeout)

    async def _on_message(
        self, acker: Acker, message: DeliveredMessage, window: RedeliveryWindow | None = None
    ) -> None:
        self._active = True
        if self.paused:
            return  # left unacknowledged: the channel's close gives it back (see pause)
        tag: int = message.delivery.delivery_tag or 0  # type: ignore[union-attr]
        acker.delivered(tag)
        settle: Settle = partial(acker.settle, tag)
        if window is not None:
            first = first_delivery(message)
            if not window.passes(first):
                async with window.alone(first):
                    await self._take(message, window.track(settle, first), acker)
                return
            settle = window.track(settle, first)
        await self._take(message, settle, acker)

    async def _take(self, message: DeliveredMessage, settle: Settle, acker: Acker) -> None:
        if message.header.properties.content_type == BATCH_CONTENT_TYPE:
            await self._on_batch(message, settle)
            return
        try:
            envelope = decode_message(self._codec, message)
        except DecodeError as exc:
            await self._reject(raw_envelope(message), exc.reason, settle)
            return
        await self._hand_on(envelope, settle, acker)
        if self.single_active and acker.channel.is_closed:
            self._drop_stale()  # it waited for room while its channel died: not ours any more

    def _drop_stale(self) -> None:
        """Take the deliveries of a dead channel out of the mailbox (single active only).

        Once the channel is gone RabbitMQ gives its unacknowledged messages to the
        consumer that is active now; handling them here too would have two
        instances handle them at once, and out of order. Only the message being
        handled at that moment cannot be called back.
        """
        for delivery in self._sink.take_back(_of_closed_channel):
            delivery.requeue()  # a settle on a dead channel sends nothing: bookkeeping only

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
        logger.warning(
            "undecodable message on %s: %s", self.queue, reason, extra=log_fields(envelope)
        )
        entry = DeadLetter.for_failure(
            envelope, queue=self.queue, actor=self._actor, error=reason, attempts=0
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

    async def _hand_on(
        self, envelope: Envelope, settle: Settle, acker: Acker | None = None
    ) -> None:
        """Give ``envelope`` to the sink, unless it is a copy of one this consumer has."""
        dedup = self.dedup
        if dedup is None:
            plain = RabbitDelivery(envelope, settle, None, "")
            plain.acker = acker
            await self._sink.put(plain)
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
        delivery.acker = acker
        dedup.inflight[key] = delivery
        try:
            await self._sink.put(delivery)
        except BaseException:
            if dedup.inflight.get(key) is delivery:
                del dedup.inflight[key]
            raise

    async def pause(self) -> None:
        """Stop new deliveries, keeping the channel open so those handed on can be acked.

        On a single-active queue the consumer stays registered: a ``basic.cancel``
        would make the next consumer active while this one still finishes its
        handlers (two at once, and the messages given back later than newer ones).
        What arrives meanwhile is not handed on; closing the channel (``cancel``)
        gives it back and hands the queue over in one step, in order.
        """
        if self.cancelled or self.paused:
            return
        self.paused = True
        if self.single_active:
            return
        channel, tag = self.channel, self.tag
        if channel is None or channel.is_closed or tag is None:
            return
        try:
            await channel.basic_cancel(tag, timeout=self._timeout)
        except Exception as exc:
            logger.debug("pausing consumer of %s: %r", self.queue, exc)

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
            if self.tag is not None and not self.paused and not self.single_active:
                # (single active: the close below cancels and hands over in one step)
                await channel.basic_cancel(self.tag, timeout=self._timeout)
            if acker is not None:
                await acker.flush()
        except Exception as exc:
            logger.debug("cancelling consumer of %s: %r", self.queue, exc)
        await close_quietly(channel, "a channel")
