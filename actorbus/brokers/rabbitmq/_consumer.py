"""Consumers: one channel each, prefetch-bounded, restarted on every new connection.

Each consumer owns a channel (so its prefetch is its own and cancelling it
gives its unsettled messages back by closing that channel). Deliveries are
settled through an :class:`~._acker.Acker` bound to the channel they came on
(batched acks, never held back for long: see ``_acker``). A delivery settled
after its channel died is ignored: the broker has already put it back, and
will deliver it again. What becomes of each message (decoding, copies, dead
letters) is the consumer's :class:`~._intake.Intake`.

A consumer of a queue with a delivery limit (``bounded``) also keeps a
redelivery window (see ``_window``): prefetch 1 while a message may be the
one that kills the process, the full prefetch once a fresh one succeeded.
A consumer of a ``single_active`` queue may be standing by (see
:attr:`RabbitConsumer.active`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage

from ...messages import Delivery
from ..base import DeliverySink
from ._acker import Acker
from ._aiormq import consumer_tags, writer_of
from ._closing import close_quietly
from ._delivery import RabbitDelivery, Settle
from ._intake import DeadLetterSink, Intake
from ._window import RedeliveryWindow, first_delivery

if TYPE_CHECKING:
    from ...codec import Codec

__all__ = ["RabbitConsumer"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


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
        owner: str,
        dead_letter: DeadLetterSink,
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
        self.intake = Intake(
            queue,
            sink,
            codec=codec,
            owner=owner,
            dead_letter=dead_letter,
            dedup_window=dedup_window,
        )
        """Decodes each message and hands it on (see ``_intake``)."""
        self._timeout = timeout
        self._acker: Acker | None = None
        self._ack_count = ack_flush_count
        self._ack_interval = ack_flush_interval
        self._on_remove = on_remove
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
    def owner(self) -> str:
        """Who consumes (an actor or subscription), as ``consume(..., owner=)`` said."""
        return self.intake.owner

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
        await self.intake.take(message, settle, acker)
        if self.single_active and acker.channel.is_closed:
            self._drop_stale()  # it waited for room while its channel died: not ours any more

    def _drop_stale(self) -> None:
        """Take the deliveries of a dead channel out of the mailbox (single active only).

        Once the channel is gone RabbitMQ gives its unacknowledged messages to the
        consumer that is active now; handling them here too would have two
        instances handle them at once, and out of order. Only the message being
        handled at that moment cannot be called back.
        """
        for delivery in self.intake.sink.take_back(_of_closed_channel):
            delivery.requeue()  # a settle on a dead channel sends nothing: bookkeeping only

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
