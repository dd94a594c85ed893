"""``AsyncRabbitMQBroker``: the ``MessageBroker`` contract over RabbitMQ.

Topology (the wire, readable by any AMQP client):

- one durable topic exchange per subsystem, ``<prefix>.<subsystem>``; the
  routing key is the message type. Every exchange of a known subsystem (the
  ``MessageTypes`` ones, registered types, and any published to) is declared;
- a queue per :class:`~actorbus.brokers.base.QueueSpec`, durable unless told
  otherwise (a non-durable queue also expires after ``idle_queue_expiry`` s
  without consumers), bound to its patterns. A pattern whose first word is a
  wildcard (``#``, ``*.signal``) is bound on every subsystem exchange, others on
  their own subsystem's exchange only;
- the dead-letter store, the durable queue ``<prefix>.dead_letters``: one
  message per entry, the whole :class:`~actorbus.brokers.base.DeadLetter`
  msgpack-encoded in the body, with ``x-actor``, ``x-queue``, ``x-error-type``
  and ``x-reason`` headers for plain clients;
- replies to ``ask`` through RabbitMQ's direct reply-to (no queue to declare).

Guarantees: every publish waits for the broker's confirm (and many may be in
flight at once); ``mandatory`` publishes that no queue takes raise
``Unroutable``; every other publish is sent mandatory too, so that the broker
returns what no queue takes: it is counted (``unroutable``), logged
(rate-limited) and, with ``unroutable="keep"``, sent on to the queue
``<prefix>.unroutable`` (see ``brokers._unroutable``). An alternate exchange
would do the last part inside RabbitMQ, but it is an exchange argument, and
declaring an existing exchange with other arguments fails
(``PRECONDITION_FAILED``): adding it would break every deployment made before.
Batched types (``batch_types``) go as batches, not counted when unroutable.
A publish the broker nacks is sent again a few times (a replicated queue may
refuse for a moment while its leader moves) before it raises ``QueueFull``.
A consumer's message is acknowledged only once its delivery is
settled; an undecodable message is stored as a dead letter (confirmed) before it
is acknowledged. While the connection is down, publishes wait (at most
``outbox_limit`` of them, then ``QueueFull``; at most ``publish_timeout`` s,
then ``PublishTimeout``) and go out once it is back. A publish cut by a lost
connection is sent again (at-least-once); each consumer recognises copies of a
message it already has by envelope id and does not hand them on twice.

Several nodes: ``url`` may be a list of AMQP URLs, or one string of them
separated by commas (one per node of a cluster). The broker connects to the
first node that answers (``shuffle_nodes`` spreads clients over the list) and,
when its node is lost, to the next one that answers (see ``_link``): topology
and consumers are replayed there, publishes wait meanwhile and unconfirmed
ones are sent again. :attr:`AsyncRabbitMQBroker.node` says which node is in use.

Queue types: ``queue_type`` (``classic`` or ``quorum``, else
``TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE``, else classic) for every durable actor
queue and the dead-letter queue, unless a queue declares its own; quorum
queues dead-letter a message delivered ``delivery_limit`` times (see
``_queue_options``), and their consumers keep a redelivery window (see
``_window``) so that only a message that kills its consumer gets there.

Options: ``heartbeat`` (seconds; a silent link is noticed after about three
missed beats), ``connect_timeout``, ``reconnect_interval`` doubling up to
``max_reconnect_interval``, ``publish_timeout``, ``operation_timeout``
(declarations), ``outbox_limit``, ``idle_queue_expiry``, TLS
(``ssl_context`` or ``ssl_options``), ``coalesce_writes`` (many publishes per
socket write), ``dedup_window`` (0 turns copy detection off), opt-in
batching (``batch_types``, ``batch_size``, ``batch_linger``; see ``_batch``), and
``ack_flush_count``/``ack_flush_interval`` (acks are written at once past that
many waiting, or that age, even while a handler keeps the loop busy), and
``declare="passive"`` for users without ``configure`` permission: the topology is
only checked (one ``TopologyMissing`` lists all that is missing), never created;
``subsystems`` narrows the exchanges declared (or checked) at connect to those
named (default: every known subsystem; others are declared when first used).

Dead letters are listed, replayed and purged by reading the whole store with
``basic.get`` and giving back what is not taken. Two processes doing so at the
same moment each see only what the other is not holding.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from aiormq.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from ...codec import Codec
from ...config import check_prefix
from ...errors import (
    ConfigurationError,
    Unroutable,
)
from ...messages import Envelope, subsystem_of
from .._unroutable import UnroutablePolicy, announcement, note_unroutable, unroutable_spec
from ..base import (
    BrokerStats,
    ConsumerHandle,
    DeadLetter,
    DeadLetterFilter,
    DeliverySink,
    QueueSpec,
    ReplyHandler,
)
from ._batch import Batcher
from ._consumer import RabbitConsumer
from ._dead_letters import BrokerDeadLetters, DeadLetterStore
from ._declarer import Declarer
from ._link import Link
from ._params import ConnectionSettings, NodeUrls, node_settings
from ._queue_options import QueueOptions
from ._registry import ConsumerRegistry
from ._replies import DIRECT_REPLY_TO, Replies
from ._sender import Sender
from ._topology import Topology, expected_subsystems, leading_wildcard
from ._wire import encode_envelope

__all__ = ["AsyncRabbitMQBroker", "RabbitMQBrokerStats"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


class RabbitMQBrokerStats(BrokerStats, frozen=True, kw_only=True):
    """The RabbitMQ broker's connection and counters (``node`` is the one in use or tried)."""

    url: str | None = None
    """The URL of the node in use, without credentials (``None`` while reconnecting)."""
    node_index: int = 1
    """Position of the node in use (or last tried) in the list, from 1."""
    nodes: int = 1
    """How many nodes the list has."""
    connected_since: float | None = None
    """Epoch seconds the node in use was connected to (``None`` while reconnecting)."""
    queue_type: str = "classic"
    """The bus-wide queue type."""
    delivery_limit: int | None = None
    """The bus-wide delivery limit of quorum queues."""
    unavailable_queues: dict[str, str] = {}
    """Queues the node in use cannot serve now (a classic queue on a lost node), and why."""
    publish_nacks: int = 0
    """Publishes the broker refused (nacked), each counted once per refusal."""


class AsyncRabbitMQBroker:
    """The RabbitMQ transport; implements ``MessageBroker`` with in-memory semantics."""

    name = "rabbitmq"

    def __init__(
        self,
        url: NodeUrls | None = None,
        *,
        prefix: str = "trading",
        codec: Codec | None = None,
        connect_timeout: float = 5.0,
        heartbeat: int = 3,
        reconnect_interval: float = 0.1,
        max_reconnect_interval: float = 2.0,
        publish_timeout: float = 30.0,
        operation_timeout: float = 10.0,
        outbox_limit: int = 10_000,
        idle_queue_expiry: float = 300.0,
        ssl_context: ssl.SSLContext | None = None,
        ssl_options: dict[str, Any] | None = None,
        connection_name: str | None = None,
        coalesce_writes: bool = True,
        dedup_window: int = 10_000,
        batch_types: Iterable[str] = (),
        batch_size: int = 100,
        batch_linger: float = 0.001,
        unroutable: UnroutablePolicy = "drop",
        declare: Literal["create", "passive"] = "create",
        ack_flush_count: int = 64,
        ack_flush_interval: float = 0.05,
        subsystems: Iterable[str] | None = None,
        shuffle_nodes: bool = False,
        queue_type: str | None = None,
        delivery_limit: int | None = None,
    ) -> None:
        check_prefix(prefix)
        if declare not in ("create", "passive"):
            raise ConfigurationError(f"declare must be 'create' or 'passive', not {declare!r}")
        self.nodes = node_settings(
            url,
            shuffle=shuffle_nodes,
            heartbeat=heartbeat,
            ssl_context=ssl_context,
            ssl_options=ssl_options,
            connection_name=connection_name,
        )
        """Resolved settings of every node, in the order they are tried."""
        self.prefix = prefix
        """Prefix of exchange and queue names."""
        self.dead_letter_queue = f"{prefix}.dead_letters"
        """Name of the durable queue holding dead letters."""
        self.queue_options = QueueOptions(
            dead_letter_queue=self.dead_letter_queue,
            queue_type=queue_type,
            delivery_limit=delivery_limit,
            stores=(unroutable_spec(prefix).name,),
        )
        """The bus-wide queue type and delivery limit of quorum queues."""
        self._codec = codec or Codec()
        self._timeout = operation_timeout
        self.declare = declare
        """``"create"`` declares the topology; ``"passive"`` only checks it exists."""
        self._topo = Topology(
            prefix,
            idle_queue_expiry=idle_queue_expiry,
            timeout=operation_timeout,
            passive=declare == "passive",
            options=self.queue_options,
        )
        self._registry = ConsumerRegistry(
            self._topo, topology_channel=lambda: self._declarer.channel(), node=lambda: self.node
        )
        self.unavailable: dict[str, str] = self._registry.unavailable
        """Queues the node in use cannot serve now (a classic queue on a lost node), and why."""
        self._link = Link(
            self.nodes,
            restore=self._restore,
            check=self._check_consumers,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            max_reconnect_interval=max_reconnect_interval,
        )
        self._sender = Sender(
            self._link,
            publish_timeout=publish_timeout,
            outbox_limit=outbox_limit,
            coalesce=coalesce_writes,
            closed=lambda: self._closed,
        )
        self._declarer = Declarer(
            self._topo,
            self._link,
            timeout=operation_timeout,
            publish_timeout=lambda: self.publish_timeout,
            closed=lambda: self._closed,
        )
        self.reconnect_backoff = (reconnect_interval, max_reconnect_interval)
        """First wait between connection attempts, and the longest (it doubles in between)."""
        self._exchange_of: dict[str, str] = {}
        self._replies = Replies(self._codec, timeout=operation_timeout)
        self._dead = DeadLetterStore(
            self.dead_letter_queue,
            send=self._store_dead,
            send_to_queue=self.send_to_queue,
            wait_link=self._declarer.wait_link,
            timeout=operation_timeout,
            broker_dead=BrokerDeadLetters(self._codec, self._actor_of, self._topo.delivery_limit),
        )
        self._closed = False
        self._connected = False
        self._dedup_window = dedup_window
        self._ack_flush = (ack_flush_count, ack_flush_interval)
        self._subsystems = None if subsystems is None else frozenset(subsystems)
        self.batch_types = frozenset(str(t) for t in batch_types)
        """Message types sent many to an AMQP message (see ``_batch``); others one each."""
        self._batcher = Batcher(self._send_batch, size=batch_size, linger=batch_linger)
        self.unroutable = 0
        """Messages published that no queue was bound to (returned by the broker)."""
        self.unroutable_policy: UnroutablePolicy = unroutable
        """What becomes of them: ``"drop"`` or ``"keep"`` (in ``<prefix>.unroutable``)."""
        self._unroutable_spec = unroutable_spec(prefix) if unroutable == "keep" else None

    # -- connection ------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The connection and its recovery statistics (``reconnects``, ``outages``)."""
        return self._link

    @property
    def settings(self) -> ConnectionSettings:
        """Settings of the node in use (printing them hides the password)."""
        return self._link.settings

    @property
    def node(self) -> str:
        """The node in use, without credentials."""
        return self._link.node

    def stats(self) -> RabbitMQBrokerStats:
        """Where the broker is connected, and its counters."""
        link = self._link
        connected = link.ready.is_set()
        return RabbitMQBrokerStats(
            mode=self.name,
            node=link.node,
            connected=connected,
            reconnects=link.reconnects,
            unroutable=self.unroutable,
            url=str(link.settings) if connected else None,
            node_index=link.index + 1,
            nodes=len(link.nodes),
            connected_since=link.connected_at if connected else None,
            queue_type=self.queue_options.queue_type,
            delivery_limit=self.queue_options.delivery_limit,
            unavailable_queues=dict(self.unavailable),
            publish_nacks=self.publish_nacks,
            outbox=self.outbox,
            unconfirmed=self.unconfirmed,
        )

    async def connect(self) -> None:
        """Connect and declare the exchanges and the dead-letter store."""
        if self._connected:
            return
        self._topo.subsystems.update(
            expected_subsystems() if self._subsystems is None else self._subsystems
        )
        self._topo.queues[self.dead_letter_queue] = QueueSpec(
            name=self.dead_letter_queue, patterns=()
        )
        if self._unroutable_spec is not None:
            self._topo.queues[self._unroutable_spec.name] = self._unroutable_spec
        await self._link.open()
        self._connected = True

    async def close(self) -> None:
        """Cancel consumers (settling what was handled) and close the connection."""
        if self._closed:
            return
        try:
            await self._batcher.flush_all()
        except Exception:
            logger.exception("could not send the last batches")
        self._closed = True
        await self._registry.cancel_all()
        await self._link.close()

    async def _restore(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        """Replay the recorded topology and consumers on a fresh connection."""
        await self._declarer.replay(connection, self._registry)
        if self._replies.handler is not None:
            await self._replies.consume(channel)
        await self._registry.restore(connection)

    async def _check_consumers(self) -> None:
        await self._registry.check(self._link.connection)

    def declared_names(self) -> tuple[list[str], list[str]]:
        """The queues and exchanges this broker declared (to tear a test prefix down)."""
        return self._topo.names()

    # -- topology --------------------------------------------------------------------------

    async def _ensure_subsystem(self, subsystem: str) -> None:
        """Declare a new subsystem's exchange, and bind leading-wildcard patterns on it."""
        if subsystem not in self._topo.subsystems:
            await self._declarer.run(lambda channel: self._topo.add_subsystem(channel, subsystem))

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing and bind it to every pattern of ``spec``."""
        for pattern in spec.patterns:
            if not leading_wildcard(pattern):
                await self._ensure_subsystem(subsystem_of(pattern))
        spec = self._topo.merged(spec)
        await self._declarer.run(lambda channel: self._topo.apply_queue(channel, spec), spec)
        self._topo.queues[spec.name] = spec

    async def delete_queue(self, name: str) -> None:
        """Cancel this broker's consumers of the queue, then delete it."""
        await self._registry.cancel_queue(name)
        self._topo.queues.pop(name, None)
        await self._declarer.run(lambda channel: channel.queue_delete(name, timeout=self._timeout))

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding of a queue."""
        self._topo.without(name, pattern)
        await self._declarer.run(lambda channel: self._topo.unbind(channel, name, pattern))

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Send to the type's subsystem exchange; return once the broker confirmed."""
        exchange = self._exchange_of.get(envelope.type)
        if exchange is None:
            subsystem = subsystem_of(envelope.type)
            await self._ensure_subsystem(subsystem)
            exchange = self._exchange_of[envelope.type] = self._topo.exchange(subsystem)
        if envelope.type in self.batch_types and not mandatory and envelope.reply_to is None:
            self._codec.encode_data(envelope.data)  # bad data is refused here, not in a batch
            await self._batcher.publish(exchange, envelope)
            return
        body, properties = encode_envelope(self._codec, envelope)
        try:
            await self._send(exchange, envelope.type, body, properties, mandatory=True)
        except Unroutable:
            if mandatory:
                self.unroutable += 1
                raise
            if announcement(envelope):
                return
            self.unroutable += 1
            spec = self._unroutable_spec
            note_unroutable(envelope, spec.name if spec is not None else None)
            if spec is not None:
                await self._send("", spec.name, body, properties, mandatory=False)

    def publish_nowait(
        self, envelope: Envelope, *, mandatory: bool = False
    ) -> Awaitable[None] | None:
        """:meth:`publish`, to be awaited: every publish over RabbitMQ waits for a confirm."""
        return self.publish(envelope, mandatory=mandatory)

    async def _send_batch(
        self, exchange: str, routing_key: str, body: bytes, properties: Basic.Properties
    ) -> None:
        await self._send(exchange, routing_key, body, properties, mandatory=False)

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Put ``envelope`` into one queue through the default exchange (``Unroutable`` if none)."""
        body, properties = encode_envelope(self._codec, envelope)
        await self._send("", queue, body, properties, mandatory=True)

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        *,
        mandatory: bool,
    ) -> None:
        await self._sender.send(exchange, routing_key, body, properties, mandatory=mandatory)

    @property
    def outbox(self) -> int:
        """Publishes waiting for the connection to come back (at most ``outbox_limit``)."""
        return self._sender.waiting

    @property
    def unconfirmed(self) -> int:
        """Publishes sent on the current channel and waiting for the broker's confirm."""
        return self._sender.unconfirmed

    @property
    def publish_nacks(self) -> int:
        """Publishes the broker refused (nacked), each counted once per refusal."""
        return self._sender.publish_nacks

    @property
    def confirm_observer(self) -> Callable[[float], None] | None:
        """Called with the seconds each confirmed publish took (``None``: not timed).

        Timed from the publish call to the broker's confirm, outages included; set by
        telemetry.
        """
        return self._sender.confirm_observer

    @confirm_observer.setter
    def confirm_observer(self, observer: Callable[[float], None] | None) -> None:
        self._sender.confirm_observer = observer

    @property
    def publish_timeout(self) -> float:
        """Seconds a publish may wait for the connection and the confirm."""
        return self._sender.publish_timeout

    @publish_timeout.setter
    def publish_timeout(self, seconds: float) -> None:
        self._sender.publish_timeout = seconds

    @property
    def outbox_limit(self) -> int:
        """Most publishes waiting for the connection at once; past it ``QueueFull``."""
        return self._sender.outbox_limit

    @outbox_limit.setter
    def outbox_limit(self, limit: int) -> None:
        self._sender.outbox_limit = limit

    async def queue_length(self, name: str) -> int:
        """Messages ready in the queue, not yet delivered to a consumer (0 for no queue)."""
        return await self._declarer.queue_length(name)

    # -- consuming -------------------------------------------------------------------------

    async def consume(
        self, queue: str, sink: DeliverySink, *, prefetch: int, owner: str
    ) -> ConsumerHandle:
        """Consume ``queue`` on a channel of its own, with ``prefetch`` unsettled at most."""
        spec = self._topo.queues.get(queue)
        single_active = spec is not None and spec.single_active
        consumer = RabbitConsumer(
            queue,
            sink,
            prefetch,
            codec=self._codec,
            actor=owner,
            dead_letter=self.dead_letter,
            timeout=self._timeout,
            on_remove=self._registry.forget,
            dedup_window=self._dedup_window,
            ack_flush_count=self._ack_flush[0],
            ack_flush_interval=self._ack_flush[1],
            # No redelivery window on a single-active queue: widening it subscribes
            # again, which would put the active consumer at the back of the line.
            bounded=self._topo.bounded(queue) and not single_active,
            single_active=single_active,
        )
        await self._registry.start(
            consumer, self._declarer.wait_link, deadline=time.monotonic() + self.publish_timeout
        )
        return consumer

    def _actor_of(self, queue: str) -> str:
        """The actor (or subscription) name behind a queue named the router's way."""
        name = queue.removeprefix(f"{self.prefix}.")
        return name.removeprefix("actor.")

    # -- replies ---------------------------------------------------------------------------

    async def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Consume RabbitMQ's direct reply-to on the publishing channel."""
        self._replies.handler = on_reply
        _, channel = await self._declarer.wait_link()
        await self._replies.consume(channel)
        return DIRECT_REPLY_TO

    async def send_reply(self, address: str, envelope: Envelope) -> None:
        """Send a reply (transient, confirmed) to a requester's reply address."""
        body, properties = encode_envelope(self._codec, envelope, persistent=False)
        await self._send("", address, body, properties, mandatory=False)

    def send_reply_nowait(self, address: str, envelope: Envelope) -> Awaitable[None] | None:
        """:meth:`send_reply`, to be awaited (it waits for the broker's confirm)."""
        return self.send_reply(address, envelope)

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store ``entry`` in the dead-letter queue; return once the broker confirmed it."""
        await self._dead.add(entry)

    async def _store_dead(self, body: bytes, properties: Basic.Properties) -> None:
        await self._send("", self.dead_letter_queue, body, properties, mandatory=True)

    async def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """List the selected dead letters, oldest first, leaving them stored."""
        return await self._dead.list(selection)

    async def dead_letter_count(self) -> int:
        """Entries in the dead-letter queue (those ready; none is held by a reader)."""
        return await self.queue_length(self.dead_letter_queue)

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected entries back to their own queues, counting replays in a header."""
        return await self._dead.replay(selection, max_replays=max_replays)

    async def purge_dead_letters(self, selection: DeadLetterFilter) -> int:
        """Delete the selected entries; return how many."""
        return await self._dead.purge(selection)
