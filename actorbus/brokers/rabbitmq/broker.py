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
- the dead-letter store, the durable queue ``<prefix>.dead_letters`` (see
  ``_dead_letters``), read with ``basic.get`` and given back: two processes
  listing it at the same moment each see only what the other is not holding;
- replies to ``ask`` through RabbitMQ's direct reply-to (no queue to declare).

Guarantees: every publish waits for the broker's confirm, many in flight at once,
across outages (see ``_publishing`` for unroutable messages and batches, ``_sender``
for nacks, outages and timeouts: while the connection is down, publishes wait, at
most ``outbox_limit`` of them and ``publish_timeout`` s). A consumer's message is
acknowledged only once its delivery is settled; an undecodable message is stored
as a dead letter (confirmed) before it is acknowledged; each consumer recognises
copies of a message it already has by envelope id (see ``_intake``).

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
``_queue_defaults``), and their consumers keep a redelivery window (see
``_window``) so that only a message that kills its consumer gets there.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any, Literal

from aiormq.abc import AbstractChannel, AbstractConnection

from ...codec import Codec
from ...config import check_prefix
from ...errors import ConfigurationError
from .._unroutable import UnroutablePolicy, unroutable_spec
from ..base import (
    BrokerStats,
    ConsumerHandle,
    DeliverySink,
    QueueSpec,
    ReplyHandler,
)
from ._consumer import RabbitConsumer
from ._dead_letters import BrokerDeadLetters, DeadLetterFace, DeadLetterStore
from ._declarer import Declarer, TopologyFace
from ._link import Link
from ._params import ConnectionSettings, NodeUrls, node_settings
from ._publishing import Publishing, PublishingFace
from ._queue_defaults import QueueDefaults
from ._registry import ConsumerRegistry
from ._replies import DIRECT_REPLY_TO, Replies
from ._sender import Sender
from ._topology import Topology, expected_subsystems

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
    outage_seconds: float = 0.0
    """Seconds all outages lasted together."""
    queue_type: str = "classic"
    """The bus-wide queue type."""
    delivery_limit: int | None = None
    """The bus-wide delivery limit of quorum queues."""
    unavailable_queues: dict[str, str] = {}
    """Queues the node in use cannot serve now (a classic queue on a lost node), and why."""
    publish_nacks: int = 0
    """Publishes the broker refused (nacked), each counted once per refusal."""


class AsyncRabbitMQBroker(TopologyFace, PublishingFace, DeadLetterFace):
    """The RabbitMQ transport; implements ``MessageBroker`` with in-memory semantics.

    Options: ``heartbeat`` (seconds; a silent link is noticed after about three
    missed beats), ``connect_timeout``, ``reconnect_interval`` doubling up to
    ``max_reconnect_interval``, ``publish_timeout``, ``nack_patience`` (seconds a
    publish the broker refuses is sent again, as while a quorum queue elects a new
    leader, before ``QueueFull``), ``operation_timeout``
    (declarations), ``outbox_limit``, ``idle_queue_expiry``, TLS (``ssl_context``
    or ``ssl_options``), ``coalesce_writes`` (many publishes per socket write, see
    ``_publisher``), ``dedup_window`` (0 turns copy detection off), opt-in batching
    (``batch_types``, ``batch_size``, ``batch_linger``; see ``_batch``),
    ``ack_flush_count``/``ack_flush_interval`` (acks are written at once past that
    many waiting, or that age, even while a handler keeps the loop busy),
    ``unroutable`` (``"drop"`` or ``"keep"``), ``declare="passive"`` for users
    without ``configure`` permission (the topology is only checked, one
    ``TopologyMissing`` lists all that is missing), ``subsystems`` (the exchanges
    declared or checked at connect; default: every known subsystem, others when
    first used), ``shuffle_nodes``, ``queue_type`` and ``delivery_limit``.
    """

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
        nack_patience: float = 20.0,
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
        self.declare = declare
        """``"create"`` declares the topology; ``"passive"`` only checks it exists."""
        self._codec = codec = codec or Codec()
        self._timeout = operation_timeout
        self._closed = False
        self._connected = False
        self._dedup_window = dedup_window
        self._ack_flush = (ack_flush_count, ack_flush_interval)
        self._subsystems = None if subsystems is None else frozenset(subsystems)
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
            nack_patience=nack_patience,
            outbox_limit=outbox_limit,
            coalesce=coalesce_writes,
            closed=lambda: self._closed,
        )
        self.queue_defaults = QueueDefaults(
            dead_letter_queue=self.dead_letter_queue,
            queue_type=queue_type,
            delivery_limit=delivery_limit,
            stores=(unroutable_spec(prefix).name,),
        )
        """The bus-wide queue type and delivery limit of quorum queues."""
        self._topo = Topology(
            prefix,
            idle_queue_expiry=idle_queue_expiry,
            timeout=operation_timeout,
            passive=declare == "passive",
            defaults=self.queue_defaults,
        )
        self._declarer = Declarer(
            self._topo,
            self._link,
            timeout=operation_timeout,
            publish_timeout=lambda: self.publish_timeout,
            closed=lambda: self._closed,
        )
        self._publishing = Publishing(
            self._sender,
            codec,
            prefix=prefix,
            ensure_subsystem=self._declarer.ensure_subsystem,
            batch_types=batch_types,
            batch_size=batch_size,
            batch_linger=batch_linger,
            unroutable=unroutable,
        )
        self._batcher = self._publishing.batcher
        self.batch_types = self._publishing.batch_types
        """Message types sent many to an AMQP message (see ``_batch``); others one each."""
        self.unroutable_policy: UnroutablePolicy = unroutable
        """What becomes of unroutable messages: ``"drop"`` or ``"keep"`` (see ``_publishing``)."""
        self._registry = ConsumerRegistry(
            self._topo, topology_channel=self._declarer.channel, node=lambda: self.node
        )
        self.unavailable: dict[str, str] = self._registry.unavailable
        """Queues the node in use cannot serve now (a classic queue on a lost node), and why."""
        self._replies = Replies(codec, timeout=operation_timeout)
        self._dead = DeadLetterStore(
            self.dead_letter_queue,
            send=lambda body, properties: self._sender.send(
                "", self.dead_letter_queue, body, properties, mandatory=True
            ),
            send_to_queue=self._publishing.send_to_queue,
            wait_link=self._declarer.wait_link,
            timeout=operation_timeout,
            broker_dead=BrokerDeadLetters(
                codec, self._registry.owner_of, self._topo.delivery_limit
            ),
        )

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
            outage_seconds=link.outage_seconds,
            queue_type=self.queue_defaults.queue_type,
            delivery_limit=self.queue_defaults.delivery_limit,
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
        keep = self._publishing.keep_spec
        if keep is not None:
            self._topo.queues[keep.name] = keep
        await self._link.open()
        self._connected = True

    async def close(self) -> None:
        """Cancel consumers (settling what was handled) and close the connection."""
        if self._closed:
            return
        try:
            await self._publishing.flush()
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

    # -- consuming (see ``_consumer`` and ``_intake``) ------------------------------------

    async def consume(
        self, queue: str, sink: DeliverySink, *, prefetch: int, owner: str
    ) -> ConsumerHandle:
        """Consume ``queue`` on a channel of its own, with ``prefetch`` unsettled at most.

        ``owner`` also names the actor of what RabbitMQ dead-letters from this queue
        (see ``_dead_letters``).
        """
        spec = self._topo.queues.get(queue)
        single_active = spec is not None and spec.single_active
        consumer = RabbitConsumer(
            queue,
            sink,
            prefetch,
            codec=self._codec,
            owner=owner,
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

    # -- replies ---------------------------------------------------------------------------

    async def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Consume RabbitMQ's direct reply-to on the publishing channel."""
        self._replies.handler = on_reply
        _, channel = await self._declarer.wait_link()
        await self._replies.consume(channel)
        return DIRECT_REPLY_TO
