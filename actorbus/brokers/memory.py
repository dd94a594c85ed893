"""The in-memory broker: RabbitMQ's semantics inside one process.

:class:`InMemoryServer` plays the broker server: queues, topic bindings,
dead letters and reply addresses. :class:`InMemoryBroker` is one bus's
connection to it. Every bus of a process shares :meth:`InMemoryServer.default`
unless given its own, so buses in one process see each other the way buses
sharing a RabbitMQ server do (this is how the sync and the async default buses
reach each other's subscribers).

Semantics kept from RabbitMQ: topic routing with the shared matcher, durable
named queues with competing consumers (round robin), backlog kept while a queue
has no consumer (bounded by ``max_length``; past it publishes raise
``QueueFull``, like ``x-overflow=reject-publish``), prefetch-bounded delivery
(the consumer's sink blocks when full, which pushes back on the publisher),
requeue of unsettled deliveries, and a dead-letter store with replay.
What is not kept: nothing survives the process.

Thread safety: each consumer belongs to the event loop that started it; a
publish from another loop (another thread) is handed to that loop with
``run_coroutine_threadsafe`` and awaited, so backpressure still holds. Routing
tables are changed under a lock and read without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from itertools import count
from threading import get_ident
from typing import ClassVar

import msgspec

from ..errors import QueueFull, Unroutable
from ..messages import Delivery, Envelope
from ..topic import topic_matches
from .base import (
    REPLAYS_HEADER,
    DeadLetter,
    DeadLetterFilter,
    DeliverySink,
    QueueSpec,
    ReplyHandler,
)

__all__ = ["InMemoryBroker", "InMemoryServer"]

logger = logging.getLogger("actorbus.brokers.memory")

DEFAULT_MAX_LENGTH = 100_000


class _MemoryDelivery(Delivery):
    __slots__ = ("_queue",)

    def __init__(self, envelope: Envelope, queue: _MemoryQueue) -> None:
        self.envelope = envelope
        self._queue = queue

    def requeue(self) -> None:
        self._queue.requeue(self.envelope)


class _Consumer:
    __slots__ = ("loop", "offer", "queue", "sink", "thread")

    def __init__(self, queue: _MemoryQueue, sink: DeliverySink, loop: asyncio.AbstractEventLoop):
        self.queue = queue
        self.sink = sink
        self.loop = loop
        self.thread = get_ident()
        """The thread running ``loop`` (a consumer is made on its own loop)."""
        # A sink may take a delivery synchronously when it has room (a Mailbox does):
        # the fast path of a publish in the consumer's own loop, with no coroutine.
        self.offer: Callable[[Delivery], bool] | None = getattr(sink, "offer", None)

    async def cancel(self) -> None:
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


class _MemoryQueue:
    """One queue: its consumers in round robin, and a backlog while none can take."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.max_length = spec.max_length or DEFAULT_MAX_LENGTH
        self.consumers: list[_Consumer] = []
        self.backlog: deque[Envelope] = _NO_BACKLOG
        """Messages no consumer could take yet (the shared empty deque until the first)."""
        self._turn = count()
        self._lock = threading.Lock()
        self._draining = False
        self._drain_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] | None
        self._drain_waiters = None  # publishers waiting behind the backlog (made when needed)

    async def deliver(self, envelope: Envelope) -> None:
        pending = self.hand_over(envelope)
        if pending is not None:
            await pending

    def hand_over(self, envelope: Envelope) -> Awaitable[None] | None:
        """Deliver ``envelope``; return what is left to await (``None``: nothing, it is done).

        In the consumer's loop, a sink with room takes the delivery at once (its
        ``offer``); otherwise the caller must await the sink, which waits for room.
        """
        consumers = self.consumers
        if not consumers or self.backlog:
            self._append_backlog(envelope)
            # Behind a backlog the consumer cannot push back directly: wait for the drain.
            return self._backlog_drained() if consumers else None
        consumer = (
            consumers[next(self._turn) % len(consumers)] if len(consumers) > 1 else consumers[0]
        )
        delivery = _MemoryDelivery(envelope, self)
        # On the consumer's loop? A thread runs one loop at a time, so "its thread, and
        # its loop running" says so without asking asyncio (see actorbus._loops).
        if consumer.thread == get_ident() and consumer.loop.is_running():
            offer = consumer.offer
            if offer is not None and offer(delivery):
                return None
            return consumer.sink(delivery)
        return _deliver_across_loops(consumer, delivery)

    @property
    def draining(self) -> bool:
        """Whether the backlog is being moved to a consumer right now."""
        return self._draining

    def requeue(self, envelope: Envelope) -> None:
        with self._lock:
            self._writable_backlog().appendleft(envelope)
        self._kick_drain()

    def _append_backlog(self, envelope: Envelope) -> None:
        with self._lock:
            if len(self.backlog) >= self.max_length:
                raise QueueFull(f"queue {self.name!r} holds {self.max_length} messages, its limit")
            self._writable_backlog().append(envelope)
        self._kick_drain()

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

    def add_consumer(self, consumer: _Consumer) -> None:
        self.consumers = [*self.consumers, consumer]
        self._kick_drain()

    def remove_consumer(self, consumer: _Consumer) -> None:
        self.consumers = [c for c in self.consumers if c is not consumer]

    def _kick_drain(self) -> None:
        with self._lock:
            if self._draining or not self.backlog or not self.consumers:
                return
            self._draining = True
            loop = self.consumers[0].loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self._drain()))

    async def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self.backlog or not self.consumers:
                        return
                    envelope = self.backlog.popleft()
                consumer = self.consumers[next(self._turn) % len(self.consumers)]
                delivery = _MemoryDelivery(envelope, self)
                try:
                    if consumer.loop is asyncio.get_running_loop():
                        await consumer.sink(delivery)
                    else:
                        await _deliver_across_loops(consumer, delivery)
                except BaseException:
                    self.requeue(envelope)
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


async def _deliver_across_loops(consumer: _Consumer, delivery: Delivery) -> None:
    future = asyncio.run_coroutine_threadsafe(_await(consumer.sink(delivery)), consumer.loop)
    await asyncio.wrap_future(future)


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _finish_delivery(
    pending: Awaitable[None], queues: tuple[_MemoryQueue, ...], envelope: Envelope
) -> None:
    await pending
    for queue in queues:
        more = queue.hand_over(envelope)
        if more is not None:
            await more


class InMemoryServer:
    """The state an in-memory broker serves: queues, bindings, dead letters, replies."""

    _default: ClassVar[InMemoryServer | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.queues: dict[str, _MemoryQueue] = {}
        """Queues by name."""
        self._bindings: list[tuple[str, str]] = []
        self._routes: dict[str, tuple[_MemoryQueue, ...]] = {}
        self._dead: list[DeadLetter] = []
        self._replies: dict[str, tuple[asyncio.AbstractEventLoop, int, ReplyHandler]] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> InMemoryServer:
        """The process-wide server every in-memory bus uses unless given another."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def declare_queue(self, spec: QueueSpec) -> None:
        """Create ``spec.name`` if missing and add its bindings."""
        with self._lock:
            if spec.name not in self.queues:
                self.queues[spec.name] = _MemoryQueue(spec)
            for pattern in spec.patterns:
                if (pattern, spec.name) not in self._bindings:
                    self._bindings.append((pattern, spec.name))
            self._routes = {}

    def delete_queue(self, name: str) -> None:
        """Drop a queue, its backlog and its bindings."""
        with self._lock:
            self.queues.pop(name, None)
            self._bindings = [b for b in self._bindings if b[1] != name]
            self._routes = {}

    def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove the binding of ``pattern`` to queue ``name``."""
        with self._lock:
            self._bindings = [b for b in self._bindings if b != (pattern, name)]
            self._routes = {}

    def bindings(self) -> list[tuple[str, str]]:
        """Every (pattern, queue) binding, in declaration order."""
        with self._lock:
            return list(self._bindings)

    def route(self, routing_key: str) -> tuple[_MemoryQueue, ...]:
        """The queues a message with ``routing_key`` goes to (cached until bindings change)."""
        routes = self._routes
        queues = routes.get(routing_key)
        if queues is None:
            with self._lock:
                seen: dict[str, _MemoryQueue] = {}
                for pattern, name in self._bindings:
                    if name not in seen and topic_matches(pattern, routing_key):
                        seen[name] = self.queues[name]
                queues = tuple(seen.values())
                self._routes[routing_key] = queues
        return queues

    def add_dead_letter(self, entry: DeadLetter) -> None:
        """Store a dead letter."""
        with self._lock:
            self._dead.append(entry)
        logger.warning(
            "dead letter: %s %s from %s after %d attempt(s): %s: %s",
            entry.envelope.type,
            entry.envelope.id,
            entry.actor,
            entry.attempts,
            entry.error_type,
            entry.reason,
        )

    def take_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> list[DeadLetter]:
        """Remove and return the selected dead letters (those under the replay cap)."""
        with self._lock:
            taken: list[DeadLetter] = []
            kept: list[DeadLetter] = []
            for entry in self._dead:
                eligible = selection(entry) and (max_replays is None or entry.replays < max_replays)
                (taken if eligible else kept).append(entry)
            self._dead = kept
            return taken

    def list_dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """The selected dead letters, oldest first."""
        with self._lock:
            return [entry for entry in self._dead if selection(entry)]

    def restore_dead_letters(self, entries: list[DeadLetter]) -> None:
        """Put entries back at the front of the dead-letter store."""
        with self._lock:
            self._dead[:0] = entries


class InMemoryBroker:
    """A bus's connection to an :class:`InMemoryServer`; implements ``MessageBroker``."""

    name = "in_memory"

    def __init__(self, server: InMemoryServer | None = None) -> None:
        self.server = server or InMemoryServer.default()
        """The server this connection talks to."""
        self._consumers: list[_Consumer] = []
        self._reply_addresses: list[str] = []

    async def connect(self) -> None:
        """Nothing to open: the server is in this process."""

    async def close(self) -> None:
        """Cancel this connection's consumers and reply addresses."""
        for consumer in self._consumers:
            await consumer.cancel()
        self._consumers.clear()
        for address in self._reply_addresses:
            self.server._replies.pop(address, None)
        self._reply_addresses.clear()

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue and its bindings."""
        self.server.declare_queue(spec)

    async def delete_queue(self, name: str) -> None:
        """Delete the queue."""
        self.server.delete_queue(name)

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding."""
        self.server.unbind_queue(name, pattern)

    async def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Deliver to every bound queue, waiting while a consumer's mailbox is full."""
        pending = self.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending

    def publish_nowait(
        self, envelope: Envelope, *, mandatory: bool = False
    ) -> Awaitable[None] | None:
        """:meth:`publish` without a coroutine while no receiver makes it wait.

        Hands the envelope to every bound queue that takes it at once and returns
        ``None``; at the first that would wait, returns an awaitable finishing the
        delivery (that queue and the ones after it), which the caller must await.
        """
        server = self.server
        queues = server._routes.get(envelope.type)
        if queues is None:
            queues = server.route(envelope.type)
        if not queues:
            if mandatory:
                raise Unroutable(f"no queue is bound to {envelope.type!r}")
            logger.debug(
                "no queue bound to %s; message %s not delivered", envelope.type, envelope.id
            )
            return None
        if len(queues) == 1:
            return queues[0].hand_over(envelope)
        for index, queue in enumerate(queues):
            pending = queue.hand_over(envelope)
            if pending is not None:
                return _finish_delivery(pending, queues[index + 1 :], envelope)
        return None

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Deliver to one queue by name."""
        target = self.server.queues.get(queue)
        if target is None:
            raise Unroutable(f"no queue named {queue!r}")
        await target.deliver(envelope)

    async def queue_length(self, name: str) -> int:
        """Messages in the queue's backlog (none is held while a consumer can take them)."""
        target = self.server.queues.get(name)
        if target is None:
            return 0
        # A draining queue holds one more message on its way into a full mailbox.
        return len(target.backlog) + (1 if target.draining else 0)

    async def consume(self, queue: str, sink: DeliverySink, *, prefetch: int) -> _Consumer:
        """Attach ``sink`` as a consumer of ``queue`` (prefetch is the sink's own bound)."""
        target = self.server.queues.get(queue)
        if target is None:
            raise Unroutable(f"no queue named {queue!r}")
        consumer = _Consumer(target, sink, asyncio.get_running_loop())
        target.add_consumer(consumer)
        self._consumers.append(consumer)
        return consumer

    async def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Register ``on_reply`` under a fresh address."""
        address = f"memory-reply.{uuid.uuid4().hex}"
        self.server._replies[address] = (asyncio.get_running_loop(), get_ident(), on_reply)
        self._reply_addresses.append(address)
        return address

    async def send_reply(self, address: str, envelope: Envelope) -> None:
        """Call the reply handler of ``address`` in its own loop; unknown addresses are dropped."""
        self.send_reply_nowait(address, envelope)

    def send_reply_nowait(self, address: str, envelope: Envelope) -> None:
        """:meth:`send_reply` without a coroutine (it never waits)."""
        target = self.server._replies.get(address)
        if target is None:
            logger.warning("reply to %s dropped: the asking bus is gone", address)
            return
        loop, thread, handler = target
        if thread == get_ident() and loop.is_running():  # on the asker's loop (see hand_over)
            handler(envelope)
        else:
            loop.call_soon_threadsafe(handler, envelope)

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store the dead letter."""
        self.server.add_dead_letter(entry)

    async def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """List dead letters."""
        return self.server.list_dead_letters(selection)

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected entries back to their own queues, counting the replay in a header."""
        entries = self.server.take_dead_letters(selection, max_replays=max_replays)
        replayed = 0
        orphans: list[DeadLetter] = []  # their queue is gone: kept, the others still replayed
        for index, entry in enumerate(entries):
            envelope = entry.envelope
            headers = {**envelope.headers, REPLAYS_HEADER: str(entry.replays + 1)}
            try:
                await self.send_to_queue(
                    entry.queue, msgspec.structs.replace(envelope, attempt=1, headers=headers)
                )
            except Unroutable:
                logger.warning(
                    "dead letter %s not replayed: its queue %r no longer exists",
                    envelope.id,
                    entry.queue,
                )
                orphans.append(entry)
                continue
            except BaseException:
                self.server.restore_dead_letters([*orphans, *entries[index:]])
                raise
            replayed += 1
        if orphans:
            self.server.restore_dead_letters(orphans)
        return replayed

    async def purge_dead_letters(self, selection: DeadLetterFilter) -> int:
        """Delete selected entries."""
        return len(self.server.take_dead_letters(selection))
