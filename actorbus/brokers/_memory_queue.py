"""One queue of the in-memory broker: consumers in round robin, and a bounded backlog.

A message goes straight to a consumer's sink when one can take it; otherwise it
waits in the queue's backlog, moved to a consumer as soon as one can. The
backlog is bounded the way RabbitMQ bounds a queue (``x-max-length`` and
``x-overflow``):

- a queue declared with ``max_length`` and ``overflow="reject-publish"`` (the
  default overflow) refuses the publish with ``QueueFull`` when full;
- with ``overflow="drop-head"`` it drops its oldest message to make room;
- a queue declared without ``max_length`` (unbounded on RabbitMQ) is held to
  ``DEFAULT_MAX_LENGTH`` here, the process's memory being the limit, and drops
  its oldest message past it: a queue nobody consumes (left by a bus that was
  shut down) must never block live publishers.

Dropped messages are counted (``dropped``, and by the server) and logged as a
rate-limited warning. A queue declared with ``expires`` is deleted once it has
had no consumer for that long (RabbitMQ ``x-expires``), checked when a message
would be kept for nobody.

Single active consumer (``QueueSpec.single_active``, RabbitMQ's
``x-single-active-consumer``): the first consumer of the queue gets every
message, the others stand by in the order they subscribed. When the active
one cancels, the queue holds new messages back until every delivery it had
not settled is back at the head of the queue (a stopping actor gives back its
mailbox, newest first), then hands the queue, in order, to the next consumer:
the same takeover RabbitMQ makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import count
from threading import get_ident

from .._ratelimit import RateLimitedWarning
from ..errors import QueueFull
from ..messages import Delivery, Envelope
from .base import DeliverySink, QueueSpec

__all__ = ["DEFAULT_MAX_LENGTH", "Consumer", "MemoryQueue"]

logger = logging.getLogger("actorbus.brokers.memory")
_drops = RateLimitedWarning(logger)

DEFAULT_MAX_LENGTH = 100_000


class _MemoryDelivery(Delivery):
    __slots__ = ("_queue",)

    def __init__(self, envelope: Envelope, queue: MemoryQueue) -> None:
        self.envelope = envelope
        self._queue = queue

    def requeue(self) -> None:
        self._queue.requeue(self.envelope)


class _ActiveDelivery(_MemoryDelivery):
    """A delivery to the active consumer of a single-active queue, counted until settled."""

    __slots__ = ("_consumer",)

    def __init__(self, envelope: Envelope, queue: MemoryQueue, consumer: Consumer) -> None:
        super().__init__(envelope, queue)
        self._consumer: Consumer | None = consumer
        consumer.unsettled += 1

    def ack(self) -> None:
        self._settled()

    def requeue(self) -> None:
        if self._consumer is None:
            return
        self._queue.requeue(self.envelope)
        self._settled()

    def _settled(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.unsettled -= 1
            if not consumer.unsettled:
                self._queue.handed_back(consumer)


async def _settle_on_failure(pending: Awaitable[None], delivery: _ActiveDelivery) -> None:
    """Await a delivery into a full sink; one that never got in is given back."""
    try:
        await pending
    except BaseException:
        delivery.requeue()
        raise


class Consumer:
    """A sink attached to a queue, on the event loop that attached it."""

    __slots__ = ("loop", "offer", "queue", "sink", "thread", "unsettled")

    def __init__(self, queue: MemoryQueue, sink: DeliverySink, loop: asyncio.AbstractEventLoop):
        self.queue = queue
        self.sink = sink
        self.loop = loop
        self.thread = get_ident()
        """The thread running ``loop`` (a consumer is made on its own loop)."""
        # The sink takes a delivery synchronously when it has room (a Mailbox does):
        # the fast path of a publish in the consumer's own loop, with no coroutine.
        self.offer: Callable[[Delivery], bool] = sink.offer
        self.unsettled = 0
        """Deliveries of a single-active queue handed to this consumer and not yet settled."""

    @property
    def active(self) -> bool:
        """Whether this consumer gets the queue's messages (the first of a single-active queue)."""
        queue = self.queue
        return not queue.single_active or (bool(queue.consumers) and queue.consumers[0] is self)

    async def pause(self) -> None:
        """Take no new deliveries (in memory, the same as :meth:`cancel`)."""
        self.queue.remove_consumer(self)

    async def cancel(self) -> None:
        """Detach from the queue."""
        self.queue.remove_consumer(self)


class _NoBacklog(deque[Envelope]):
    """The shared empty backlog of every queue that never needed one.

    An empty deque costs about 760 bytes, and every actor has a queue that is
    almost always consumed straight away; a queue gets its own deque on its
    first backlogged message. Adding to this one is a bug and fails loudly.
    """

    def append(self, item: Envelope) -> None:
        raise RuntimeError("the shared empty backlog cannot hold messages")

    def appendleft(self, item: Envelope) -> None:
        raise RuntimeError("the shared empty backlog cannot hold messages")


_NO_BACKLOG = _NoBacklog()


class MemoryQueue:
    """One queue: its consumers in round robin, and a backlog while none can take."""

    def __init__(
        self, spec: QueueSpec, on_drop: Callable[[], None], on_expire: Callable[[str], None]
    ) -> None:
        self.spec = spec
        """How the queue was declared."""
        self.name = spec.name
        """Queue name."""
        self.max_length = spec.max_length or DEFAULT_MAX_LENGTH
        """Most messages kept in the backlog."""
        self.drop_head = spec.max_length is None or spec.overflow == "drop-head"
        """Whether a full backlog drops its oldest message (else the publish is refused)."""
        self.dropped = 0
        """Messages dropped at the bound."""
        self.idle_since: float | None = time.monotonic()
        """Monotonic time the queue last lost its last consumer (``None`` while consumed)."""
        self._on_drop = on_drop
        self._on_expire = on_expire
        self.single_active = spec.single_active
        """Only the first consumer gets messages; the next takes over when it goes."""
        self._handing_over: Consumer | None = None
        """A single-active queue's former active consumer, while it gives messages back."""
        self.consumers: list[Consumer] = []
        self.backlog: deque[Envelope] = _NO_BACKLOG
        """Messages no consumer could take yet (the shared empty deque until the first)."""
        self._turn = count()
        self._lock = threading.Lock()
        self._draining = False
        self._drain_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None
        self._drain_waiters = None  # publishers waiting behind the backlog (made when needed)

    async def deliver(self, envelope: Envelope) -> None:
        """Deliver ``envelope``, waiting while the consumer has no room."""
        pending = self.hand_over(envelope)
        if pending is not None:
            await pending

    def hand_over(self, envelope: Envelope) -> Awaitable[None] | None:
        """Deliver ``envelope``; return what is left to await (``None``: nothing, it is done).

        In the consumer's loop, a sink with room takes the delivery at once (its
        ``offer``); otherwise the caller must await the sink, which waits for room.
        """
        consumers = self.consumers
        if not consumers or self.backlog or self._handing_over is not None:
            self._append_backlog(envelope)
            # Behind a backlog the consumer cannot push back directly: wait for the drain.
            return self._backlog_drained() if consumers else None
        if self.single_active:
            return self._hand_to_active(envelope, consumers[0])
        consumer = (
            consumers[next(self._turn) % len(consumers)] if len(consumers) > 1 else consumers[0]
        )
        delivery = _MemoryDelivery(envelope, self)
        # On the consumer's loop? A thread runs one loop at a time, so "its thread, and
        # its loop running" says so without asking asyncio (see actorbus._loops).
        if consumer.thread == get_ident() and consumer.loop.is_running():
            if consumer.offer(delivery):
                return None
            return consumer.sink.put(delivery)
        return _deliver_across_loops(consumer, delivery)

    def _hand_to_active(self, envelope: Envelope, consumer: Consumer) -> Awaitable[None] | None:
        delivery = _ActiveDelivery(envelope, self, consumer)
        if consumer.thread == get_ident() and consumer.loop.is_running():
            if consumer.offer(delivery):
                return None
            return _settle_on_failure(consumer.sink.put(delivery), delivery)
        return _settle_on_failure(_deliver_across_loops(consumer, delivery), delivery)

    def handed_back(self, consumer: Consumer) -> None:
        """``consumer`` has no unsettled delivery left: end its hand-over, if it was leaving."""
        if self._handing_over is consumer:
            self._handing_over = None
            self._kick_drain()

    @property
    def draining(self) -> bool:
        """Whether the backlog is being moved to a consumer right now."""
        return self._draining

    def requeue(self, envelope: Envelope) -> None:
        """Put an unsettled message back at the head of the queue."""
        with self._lock:
            self._writable_backlog().appendleft(envelope)
        self._kick_drain()

    def _append_backlog(self, envelope: Envelope) -> None:
        if self._expired():
            self._on_expire(self.name)
            return
        with self._lock:
            dropped = len(self.backlog) >= self.max_length
            if dropped:
                if not self.drop_head:
                    raise QueueFull(
                        f"queue {self.name!r} holds {self.max_length} messages, its limit"
                    )
                self.backlog.popleft()
                self.dropped += 1
            self._writable_backlog().append(envelope)
        if dropped:
            self._on_drop()
            _drops.note(
                self.name,
                f"queue {self.name!r} is full ({self.max_length} messages): "
                "its oldest message was dropped",
            )
        self._kick_drain()

    def _expired(self) -> bool:
        expires, idle_since = self.spec.expires, self.idle_since
        return (
            expires is not None
            and idle_since is not None
            and not self.consumers
            and time.monotonic() - idle_since >= expires
        )

    async def _backlog_drained(self) -> None:
        """Wait until the drain has emptied the backlog (or lost its consumers)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._lock:
            if not self.backlog or not self.consumers:
                return
            if self._drain_waiters is None:
                self._drain_waiters = []
            self._drain_waiters.append((loop, waiter))
        await waiter

    def _wake_drain_waiters(self) -> None:
        if not self._drain_waiters:
            return
        with self._lock:
            waiters, self._drain_waiters = self._drain_waiters, None
        for loop, waiter in waiters or ():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there now
                loop.call_soon_threadsafe(_settle, waiter)

    def _writable_backlog(self) -> deque[Envelope]:
        if self.backlog is _NO_BACKLOG:
            self.backlog = deque()
        return self.backlog

    def add_consumer(self, consumer: Consumer) -> None:
        """Start handing messages to ``consumer`` too."""
        self.consumers = [*self.consumers, consumer]
        self.idle_since = None
        self._kick_drain()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Stop handing messages to ``consumer``."""
        was_active = bool(self.consumers) and self.consumers[0] is consumer
        self.consumers = [c for c in self.consumers if c is not consumer]
        if not self.consumers:
            self.idle_since = time.monotonic()
        if self.single_active and was_active and consumer.unsettled:
            # Hold the queue until the leaving consumer has given its messages back, so
            # the next one starts with them, in order.
            self._handing_over = consumer

    def _kick_drain(self) -> None:
        with self._lock:
            if (
                self._draining
                or not self.backlog
                or not self.consumers
                or self._handing_over is not None
            ):
                return
            self._draining = True
            loop = self.consumers[0].loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self.backlog or not self.consumers or self._handing_over is not None:
                        return
                    envelope = self.backlog.popleft()
                delivery: _MemoryDelivery
                if self.single_active:
                    consumer = self.consumers[0]
                    delivery = _ActiveDelivery(envelope, self, consumer)
                else:
                    consumer = self.consumers[next(self._turn) % len(self.consumers)]
                    delivery = _MemoryDelivery(envelope, self)
                try:
                    if consumer.loop is asyncio.get_running_loop():
                        await consumer.sink.put(delivery)
                    else:
                        await _deliver_across_loops(consumer, delivery)
                except BaseException:
                    delivery.requeue()
                    raise
        finally:
            with self._lock:
                self._draining = False
            self._wake_drain_waiters()
            if self.backlog and self.consumers:
                self._kick_drain()


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _deliver_across_loops(consumer: Consumer, delivery: Delivery) -> None:
    future = asyncio.run_coroutine_threadsafe(consumer.sink.put(delivery), consumer.loop)
    await asyncio.wrap_future(future)
