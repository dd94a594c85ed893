"""One in-memory queue: its consumers, their prefetch, and a bounded backlog.

The settlement rules are RabbitMQ's (see ``brokers.base``). Each consumer has
at most ``prefetch`` deliveries unsettled; a message goes straight to a
consumer with room (round robin among them), else it waits in the queue's
backlog, and the next one is handed on when a consumer settles a delivery or
a new consumer arrives. ``ack`` frees the slot; ``requeue`` puts the message
back at the head of the queue; cancelling a consumer puts every delivery it
had not settled back at the head, in order, and settling one of them later
does nothing.

Flow control, the one deliberate difference from RabbitMQ: the queue lives in
the publisher's process, so a publish that finds every consumer at its
prefetch waits until the backlog has been handed on (RabbitMQ's credit flow
holds a publisher that outruns a queue the same way). A queue without
consumers keeps its backlog and holds nobody back.

The backlog is bounded the way RabbitMQ bounds a queue (``x-max-length`` and
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

Single active consumer (``QueueSpec.single_active``): only the first consumer
gets messages, the others stand by in the order they subscribed. A paused
active consumer stays the active one (it takes nothing new); when it cancels,
its unsettled messages go back to the head of the queue and the next consumer
takes over with them first, in order: RabbitMQ's takeover.

Threads: a consumer belongs to the event loop that started it, and its
bookkeeping is only ever touched there. A publish from another thread is run
on the consumer's loop and awaited, so flow control still holds. The backlog
and the list of consumers are changed under a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from threading import get_ident
from typing import Protocol

from .._ratelimit import RateLimitedWarning
from ..errors import QueueFull
from ..messages import Envelope
from ._memory_consumer import NONE_UNSETTLED, Consumer, MemoryDelivery
from .base import QueueSpec, handling_for

__all__ = ["DEFAULT_MAX_LENGTH", "MemoryQueue", "QueueHost"]

logger = logging.getLogger("actorbus.brokers.memory")
_drops = RateLimitedWarning(logger)

DEFAULT_MAX_LENGTH = 100_000


class QueueHost(Protocol):
    """What a queue reports to the server holding it (a weak link: no bound methods kept)."""

    def count_drop(self) -> None:
        """A queue dropped a message at its length limit."""

    def expire_queue(self, name: str) -> None:
        """The queue ``name`` had no consumer for its ``expires``: delete it."""


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

    def extendleft(self, items: object) -> None:
        raise RuntimeError("the shared empty backlog cannot hold messages")


_NO_BACKLOG = _NoBacklog()


class MemoryQueue:
    """One queue: its consumers, and a backlog of what none of them has room for."""

    __slots__ = (
        "_host",
        "_lock",
        "_turn",
        "_waiting",
        "backlog",
        "consumers",
        "drop_head",
        "dropped",
        "idle_since",
        "max_length",
        "name",
        "single_active",
        "spec",
    )

    def __init__(self, spec: QueueSpec, host: QueueHost, lock: threading.Lock) -> None:
        self.spec = spec
        """How the queue was declared."""
        self.name = spec.name
        """Queue name."""
        self.max_length = spec.max_length or DEFAULT_MAX_LENGTH
        """Most messages kept in the backlog."""
        self.drop_head = spec.max_length is None or spec.overflow == "drop-head"
        """Whether a full backlog drops its oldest message (else the publish is refused)."""
        self.single_active = spec.single_active
        """Only the first consumer gets messages; the next takes over when it goes."""
        self.dropped = 0
        """Messages dropped at the bound."""
        self.idle_since: float | None = time.monotonic()
        """Monotonic time the queue last lost its last consumer (``None`` while consumed)."""
        self.consumers: tuple[Consumer, ...] = ()
        """Attached consumers, in the order they subscribed (replaced, never changed)."""
        self.backlog: deque[Envelope] = _NO_BACKLOG
        """Messages no consumer had room for yet (the shared empty deque until the first)."""
        self._host = host
        self._turn = 0
        self._lock = lock  # (one per server: a lock per queue would weigh on every idle actor)
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None = None

    # -- publishing ------------------------------------------------------------------------

    def enqueue(self, envelope: Envelope) -> None:
        """Add ``envelope`` behind what waits in the queue, without flow control.

        The consumers with room take it (each on its own loop) as usual; nobody waits.
        """
        self._append_backlog(envelope)
        if self.consumers:
            self._offer_backlog()

    def hand_over(self, envelope: Envelope) -> Awaitable[None] | None:
        """Deliver ``envelope``; return what is left to await (``None``: nothing, it is done).

        The hot path of a local publish: to a consumer with room on this loop, the
        sink takes it at once and nothing is awaited.
        """
        consumers = self.consumers
        if len(consumers) == 1 and not self.backlog:  # the common case, inlined
            consumer = consumers[0]
            unsettled = consumer.unsettled
            if (
                len(unsettled) < consumer.prefetch
                and not consumer.paused
                and consumer.thread == get_ident()
                and consumer.loop.is_running()
            ):
                delivery = MemoryDelivery(envelope, consumer)
                if unsettled is NONE_UNSETTLED:
                    unsettled = consumer.unsettled = {}
                unsettled[delivery] = None
                if consumer.sink.offer(delivery):
                    return None
                return consumer.sink.put(delivery)
        if not self.backlog and consumers:
            chosen = self._next(consumers)
            if chosen is not None:
                if chosen.here():
                    return chosen.hand(envelope)
                return _across_loops(chosen.loop, self.hand_over, envelope)
        self._append_backlog(envelope)
        if not consumers or _consumes_here(consumers):
            return None  # (waiting for the backlog to drain would wait for itself)
        return self._handed_on()

    def _next(self, consumers: tuple[Consumer, ...]) -> Consumer | None:
        """The consumer to take the next message: the active one, or the next with room."""
        if self.single_active or len(consumers) == 1:
            first = consumers[0]
            return first if first.has_room else None
        for _ in consumers:
            self._turn = turn = self._turn + 1
            consumer = consumers[turn % len(consumers)]
            if consumer.has_room:
                return consumer
        return None

    def pull(self, consumer: Consumer) -> None:
        """Hand waiting messages to ``consumer`` (on its loop) while it has room."""
        if consumer.pulling or (
            self.single_active and (not self.consumers or self.consumers[0] is not consumer)
        ):
            return  # (a delivery settled while handing on: the running pull goes on)
        consumer.pulling = True
        try:
            while consumer.has_room:
                with self._lock:
                    if not self.backlog:
                        break
                    envelope = self.backlog.popleft()
                pending = consumer.hand(envelope)
                if pending is not None:  # the sink is over its own bound: it finishes later
                    _finish_later(consumer.loop, pending)
        finally:
            consumer.pulling = False
        if not self.backlog:
            self._wake_waiting()

    def push_front(self, envelopes: list[Envelope]) -> None:
        """Put unsettled messages back at the head of the queue, in their order."""
        if not envelopes:
            return
        with self._lock:
            self._writable_backlog().extendleft(reversed(envelopes))

    def _append_backlog(self, envelope: Envelope) -> None:
        if self._expired():
            self._host.expire_queue(self.name)
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
            self._host.count_drop()
            _drops.note(
                self.name,
                f"queue {self.name!r} is full ({self.max_length} messages): "
                "its oldest message was dropped",
            )

    def _writable_backlog(self) -> deque[Envelope]:
        if self.backlog is _NO_BACKLOG:
            self.backlog = deque()
        return self.backlog

    def _expired(self) -> bool:
        expires, idle_since = self.spec.expires, self.idle_since
        return (
            expires is not None
            and idle_since is not None
            and not self.consumers
            and time.monotonic() - idle_since >= expires
        )

    async def _handed_on(self) -> None:
        """Wait until the backlog has been handed on (or the queue lost its consumers)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._lock:
            if not self.backlog or not self.consumers:
                return
            if self._waiting is None:
                self._waiting = []
            self._waiting.append((loop, waiter))
        self._offer_backlog()
        await waiter

    def _wake_waiting(self) -> None:
        if not self._waiting:
            return
        with self._lock:
            waiting, self._waiting = self._waiting, None
        for loop, waiter in waiting or ():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there now
                loop.call_soon_threadsafe(_settle, waiter)

    def _offer_backlog(self) -> None:
        """Have each consumer with room take from the backlog, on its own loop."""
        for consumer in self.consumers:
            if consumer.has_room:
                if consumer.here():
                    self.pull(consumer)
                else:
                    with contextlib.suppress(RuntimeError):  # its loop is closed
                        consumer.loop.call_soon_threadsafe(self.pull, consumer)

    # -- consumers -------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        """Start handing messages to ``consumer`` too (called on its loop)."""
        with self._lock:
            self.consumers = (*self.consumers, consumer)
            self.idle_since = None
        self.pull(consumer)

    def remove_consumer(self, consumer: Consumer, unsettled: list[Envelope]) -> None:
        """Stop handing messages to ``consumer``; its ``unsettled`` go back to the head."""
        with self._lock:
            self.consumers = tuple(c for c in self.consumers if c is not consumer)
            if not self.consumers:
                self.idle_since = time.monotonic()
        self.push_front(unsettled)
        if self.consumers:
            self._offer_backlog()
        else:
            self._wake_waiting()  # nobody to wait for: the backlog stays in the queue


def _consumes_here(consumers: tuple[Consumer, ...]) -> bool:
    """Whether the running task handles the deliveries of one of ``consumers``."""
    sink = handling_for.get()
    return sink is not None and any(consumer.sink is sink for consumer in consumers)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_finishing: set[asyncio.Task[None]] = set()
"""Deliveries a sink finishes taking in a task of its own (kept until done)."""


def _finish_later(loop: asyncio.AbstractEventLoop, pending: Awaitable[None]) -> None:
    async def finish() -> None:
        try:
            await pending
        except Exception:
            logger.exception("a consumer's sink refused a delivery")

    task = loop.create_task(finish())
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


async def _across_loops(
    loop: asyncio.AbstractEventLoop,
    hand_over: Callable[[Envelope], Awaitable[None] | None],
    envelope: Envelope,
) -> None:
    """Run ``hand_over(envelope)`` on the consumer's ``loop`` and wait for it to finish."""

    async def there() -> None:
        pending = hand_over(envelope)
        if pending is not None:
            await pending

    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(there(), loop))
