"""The in-memory broker: RabbitMQ's semantics inside one process.

:class:`InMemoryBroker` is one bus's connection to an
:class:`~actorbus.brokers._memory_server.InMemoryServer` (queues, bindings, dead
letters, reply addresses; every bus of a process shares the default one, so
buses in one process see each other the way buses sharing a RabbitMQ server do).

Semantics kept from RabbitMQ (the contract of ``brokers.base``, checked by the
same contract tests): topic routing with the shared matcher, durable named
queues with competing consumers (round robin), a backlog kept while a queue has
no consumer (bounded as RabbitMQ bounds it), a prefetch per consumer, acks,
requeues, unsettled deliveries given back when a consumer is cancelled, single
active consumers (see ``_memory_queue``), a dead-letter store with replay, and
each receiver's own copy of the data (see ``_copies``: bad data is refused at
publish, as the RabbitMQ broker refuses it). What differs: a publisher that
finds every consumer at its prefetch waits (flow control), and nothing
survives the process.

Unroutable messages (no queue bound to the type) are counted in
``unroutable`` and logged as a rate-limited warning per type; ``mandatory``
publishes raise ``Unroutable`` instead; with ``unroutable="keep"`` they are
kept in the queue ``<prefix>.unroutable`` (at most ``UNROUTABLE_MAX_LENGTH``,
dropping the oldest), as the RabbitMQ broker keeps them.

Threads: each consumer belongs to the event loop that started it; a publish from
another loop (another thread) is handed to that loop and awaited, so flow
control still holds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from threading import get_ident
from typing import Literal

from ..codec import Codec
from ..errors import QueueFull, Unroutable
from ..messages import Envelope, log_fields
from ._copies import Copier, CopyPlan
from ._memory_consumer import Consumer
from ._memory_queue import MemoryQueue
from ._memory_server import DEFAULT_MAX_DEAD_LETTERS, InMemoryServer
from ._unroutable import UnroutablePolicy, announcement, note_unroutable, unroutable_spec
from .base import (
    BrokerStats,
    DeadLetter,
    DeadLetterFilter,
    DeliverySink,
    QueueSpec,
    ReplyHandler,
)

__all__ = ["DEFAULT_MAX_DEAD_LETTERS", "InMemoryBroker", "InMemoryServer", "MemoryBrokerStats"]

logger = logging.getLogger("actorbus.brokers.memory")


class MemoryBrokerStats(BrokerStats, frozen=True, kw_only=True):
    """The in-memory broker's counters (those of its server are shared by its buses)."""

    dropped: int = 0
    """Messages the server's queues dropped at their length limit."""
    dead_letters_dropped: int = 0
    """Dead letters the server dropped at its store's cap."""


class InMemoryBroker:
    """A bus's connection to an :class:`InMemoryServer`; implements ``MessageBroker``."""

    name = "in_memory"
    declare: Literal["create", "passive"] = "create"
    """An in-memory broker always declares what is missing."""

    def __init__(
        self,
        server: InMemoryServer | None = None,
        *,
        prefix: str = "trading",
        codec: Codec | None = None,
        unroutable: UnroutablePolicy = "drop",
    ) -> None:
        self.server = server or InMemoryServer.default()
        """The server this connection talks to."""
        self.copier = Copier(codec or Codec())
        """Checks each published message's data and makes each receiver's copy."""
        self.unroutable = 0
        """Messages this connection published that no queue was bound to."""
        self.unroutable_policy: UnroutablePolicy = unroutable
        """What becomes of them: ``"drop"`` or ``"keep"`` (in ``<prefix>.unroutable``)."""
        self._unroutable_spec = unroutable_spec(prefix) if unroutable == "keep" else None
        self._consumers: list[Consumer] = []
        self._reply_addresses: list[str] = []

    def stats(self) -> MemoryBrokerStats:
        """This connection's unroutable count and what the server's bounds dropped."""
        return MemoryBrokerStats(
            mode=self.name,
            node=self.name,
            unroutable=self.unroutable,
            dropped=self.server.dropped,
            dead_letters_dropped=self.server.dead_letters_dropped,
        )

    async def connect(self) -> None:
        """Nothing to open (the server is in this process); declare the unroutable queue."""
        if self._unroutable_spec is not None:
            self.server.declare_queue(self._unroutable_spec)

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
        copier = self.copier
        body = copier.prepare(envelope)  # refuses bad data, whoever is bound
        server = self.server
        queues = server._routes.get(envelope.type)
        if queues is None:
            queues = server.route(envelope.type)
        if not queues:
            return self._unroutable(envelope, body, mandatory)
        if len(queues) == 1:
            return queues[0].hand_over(copier.copy(envelope, body))
        return self._fan_out(None, queues, envelope, body)

    def _fan_out(
        self,
        full: QueueFull | None,
        queues: tuple[MemoryQueue, ...],
        envelope: Envelope,
        body: CopyPlan,
    ) -> Awaitable[None] | None:
        """Hand a copy to each queue; a full one (reject-publish) does not stop the others.

        As over RabbitMQ, the publish then fails with ``QueueFull`` although the
        other queues have the message.
        """
        for index, queue in enumerate(queues):
            try:
                pending = queue.hand_over(self.copier.copy(envelope, body))
            except QueueFull as exc:
                full = exc
                continue
            if pending is not None:
                return self._finish_delivery(pending, full, queues[index + 1 :], envelope, body)
        if full is not None:
            raise full
        return None

    def _unroutable(
        self, envelope: Envelope, body: CopyPlan, mandatory: bool
    ) -> Awaitable[None] | None:
        if mandatory:
            self.unroutable += 1
            raise Unroutable(f"no queue is bound to {envelope.type!r}")
        if announcement(envelope):
            return None
        self.unroutable += 1
        spec = self._unroutable_spec
        note_unroutable(envelope, spec.name if spec is not None else None)
        if spec is None:
            return None
        kept = self.server.queues.get(spec.name)
        if kept is None:  # deleted meanwhile: declared again
            self.server.declare_queue(spec)
            kept = self.server.queues[spec.name]
        return kept.hand_over(self.copier.copy(envelope, body))

    async def _finish_delivery(
        self,
        pending: Awaitable[None],
        full: QueueFull | None,
        queues: tuple[MemoryQueue, ...],
        envelope: Envelope,
        body: CopyPlan,
    ) -> None:
        await pending
        more = self._fan_out(full, queues, envelope, body)
        if more is not None:
            await more

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Put ``envelope`` into one queue by name, behind what waits there, without waiting.

        No flow control here (as over RabbitMQ): this is how dead letters are replayed,
        by a supervisor among others, which must never wait on the very actor it is
        restarting (whose prefetch may be full of messages it cannot take yet).
        """
        target = self.server.queues.get(queue)
        if target is None:
            raise Unroutable(f"no queue named {queue!r}")
        target.enqueue(envelope)

    async def queue_length(self, name: str) -> int:
        """Messages in the queue's backlog (none is held while a consumer can take them)."""
        target = self.server.queues.get(name)
        if target is None:
            return 0
        return len(target.backlog)

    async def consume(
        self, queue: str, sink: DeliverySink, *, prefetch: int, owner: str
    ) -> Consumer:
        """Attach ``sink`` as a consumer of ``queue``, ``prefetch`` deliveries unsettled at most."""
        target = self.server.queues.get(queue)
        if target is None:
            raise Unroutable(f"no queue named {queue!r}")
        consumer = Consumer(target, sink, prefetch, asyncio.get_running_loop())
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
        """:meth:`send_reply` without a coroutine (it never waits).

        The asker gets its own copy of the result, checked as a publish is, and read
        as plain data (as over RabbitMQ: a reply is not of its request's schema).
        """
        copier = self.copier
        envelope = copier.copy(envelope, copier.prepare(envelope, ""), "")
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

    async def dead_letter_count(self) -> int:
        """How many dead letters the server holds."""
        return len(self.server.list_dead_letters(DeadLetterFilter()))

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected entries back to their own queues, counting the replay in a header."""
        entries = self.server.take_dead_letters(selection, max_replays=max_replays)
        replayed = 0
        orphans: list[DeadLetter] = []  # their queue is gone: kept, the others still replayed
        for index, entry in enumerate(entries):
            envelope = entry.envelope
            try:
                await self.send_to_queue(entry.queue, entry.replay_envelope())
            except Unroutable:
                logger.warning(
                    "dead letter %s not replayed: its queue %r no longer exists",
                    envelope.id,
                    entry.queue,
                    extra=log_fields(envelope, entry.actor),
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
