"""A consumer of an in-memory queue, and the deliveries it has not settled.

A :class:`Consumer` is a sink attached to one :class:`~._memory_queue.MemoryQueue`
with its prefetch, on the event loop that attached it; each message handed to it
is a :class:`MemoryDelivery` until acked or requeued. The settlement rules are
RabbitMQ's (see ``brokers.base``) and the queue's docstring says how they are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from threading import get_ident
from typing import TYPE_CHECKING, Any

from ..messages import Delivery, Envelope
from .base import DeliverySink

if TYPE_CHECKING:
    from ._memory_queue import MemoryQueue

__all__ = ["NONE_UNSETTLED", "Consumer", "MemoryDelivery"]


NONE_UNSETTLED: dict[Any, None] = {}
"""The empty ``unsettled`` of every consumer that has none yet (never written to)."""

_thread_ids: dict[int, int] = {}


def _thread_id() -> int:
    """This thread's id, one int object per thread (every consumer of it shares it)."""
    ident = get_ident()
    return _thread_ids.setdefault(ident, ident)


class MemoryDelivery(Delivery):
    """A message handed to one consumer, unsettled until acked or requeued."""

    __slots__ = ("_consumer",)

    def __init__(self, envelope: Envelope, consumer: Consumer) -> None:
        self.envelope = envelope
        self._consumer: Consumer | None = consumer

    def ack(self) -> None:
        """The message was handled: the queue forgets it, the consumer has room again."""
        consumer = self._consumer
        if consumer is not None:  # (Consumer.settled, inlined: the hot path of every message)
            self._consumer = None
            del consumer.unsettled[self]
            if consumer.queue.backlog:
                consumer.queue.pull(consumer)

    def requeue(self) -> None:
        """Back to the head of the queue, to be delivered again."""
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            consumer.queue.push_front([self.envelope])
            consumer.settled(self)


class Consumer:
    """A sink attached to a queue, with its prefetch, on the event loop that attached it."""

    __slots__ = (
        "cancelled",
        "loop",
        "paused",
        "prefetch",
        "pulling",
        "queue",
        "sink",
        "thread",
        "unsettled",
    )

    def __init__(
        self,
        queue: MemoryQueue,
        sink: DeliverySink,
        prefetch: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.queue = queue
        self.sink = sink
        self.prefetch = prefetch
        """Most deliveries unsettled at once."""
        self.loop = loop
        self.thread = _thread_id()
        """The thread running ``loop`` (a consumer is made on its own loop)."""
        self.unsettled: dict[MemoryDelivery, None] = NONE_UNSETTLED
        """Deliveries handed on and not yet settled, in the order they were handed on (the
        shared empty dict until the first: an idle consumer carries none of its own)."""
        self.paused = False
        self.cancelled = False
        self.pulling = False
        """Whether :meth:`MemoryQueue.pull` runs for it (a settle inside it does not recurse)."""

    @property
    def active(self) -> bool:
        """Whether this consumer gets the queue's messages (the first of a single-active queue)."""
        queue = self.queue
        return not queue.single_active or (bool(queue.consumers) and queue.consumers[0] is self)

    @property
    def has_room(self) -> bool:
        """Whether it takes a delivery now: not paused, fewer than ``prefetch`` unsettled."""
        return not self.paused and len(self.unsettled) < self.prefetch

    def here(self) -> bool:
        """Whether the caller runs on this consumer's loop (a thread runs one loop at a time)."""
        return self.thread == get_ident() and self.loop.is_running()

    def hand(self, envelope: Envelope) -> Awaitable[None] | None:
        """Deliver ``envelope`` to the sink (on its loop, with room); return what to await."""
        delivery = MemoryDelivery(envelope, self)
        if self.unsettled is NONE_UNSETTLED:
            self.unsettled = {}
        self.unsettled[delivery] = None
        if self.sink.offer(delivery):
            return None
        return self.sink.put(delivery)

    def settled(self, delivery: MemoryDelivery) -> None:
        """``delivery`` was acked or requeued: make room, and take the next waiting message."""
        del self.unsettled[delivery]
        if self.queue.backlog:
            self.queue.pull(self)

    async def pause(self) -> None:
        """Take no new deliveries; those handed on can still be settled."""
        self.paused = True

    async def cancel(self) -> None:
        """Detach from the queue; every unsettled delivery goes back to its head, in order."""
        if self.cancelled:
            return
        self.cancelled = self.paused = True
        deliveries, self.unsettled = list(self.unsettled), NONE_UNSETTLED
        for delivery in deliveries:
            delivery._consumer = None
        self.queue.remove_consumer(self, [delivery.envelope for delivery in deliveries])
