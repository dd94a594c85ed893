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
``Unroutable``; a consumer's message is acknowledged only once its delivery is
settled; an undecodable message is stored as a dead letter (confirmed) before it
is acknowledged. While the connection is down, publishes wait (at most
``outbox_limit`` of them, then ``QueueFull``; at most ``publish_timeout`` s,
then ``PublishTimeout``) and go out once it is back. A publish cut by a lost
connection is sent again: at-least-once, and ids make duplicates detectable.

Dead letters are listed, replayed and purged by reading the whole store with
``basic.get`` and giving back what is not taken. Two processes doing so at the
same moment each see only what the other is not holding.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelPreconditionFailed,
    DeliveryError,
)
from aiormq.exceptions import PublishError as AmqpReturned
from pamqp.commands import Basic

from ...codec import Codec
from ...errors import (
    ConfigurationError,
    DecodeError,
    PublishError,
    PublishTimeout,
    QueueFull,
    Unroutable,
)
from ...messages import Envelope, MessageTypes, known_types, schema_for, subsystem_of
from ..base import (
    REPLAYS_HEADER,
    ConsumerHandle,
    DeadLetter,
    DeadLetterFilter,
    DeliverySink,
    QueueSpec,
    ReplyHandler,
)
from ._batch import Batcher
from ._consumer import RabbitConsumer, _consumers_of
from ._link import Link
from ._params import ConnectionSettings
from ._publisher import Pipeline
from ._wire import decode_message, encode_envelope

__all__ = ["AsyncRabbitMQBroker"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_LINK_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, RuntimeError)


class AsyncRabbitMQBroker:
    """The RabbitMQ transport; implements ``MessageBroker`` with in-memory semantics."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str | None = None,
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
    ) -> None:
        self.settings = ConnectionSettings(
            url,
            heartbeat=heartbeat,
            ssl_context=ssl_context,
            ssl_options=ssl_options,
            connection_name=connection_name,
        )
        """Resolved connection settings (printing them hides the password)."""
        self.prefix = prefix
        """Prefix of exchange and queue names."""
        self.dead_letter_queue = f"{prefix}.dead_letters"
        """Name of the durable queue holding dead letters."""
        self.publish_timeout = publish_timeout
        """Seconds a publish may wait for the connection and the confirm."""
        self.outbox_limit = outbox_limit
        """Most publishes waiting for the connection at once; past it ``QueueFull``."""
        self._codec = codec or Codec()
        self._timeout = operation_timeout
        self._idle_expiry_ms = int(idle_queue_expiry * 1000)
        self._link = Link(
            self.settings,
            restore=self._restore,
            check=self._check_consumers,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            max_reconnect_interval=max_reconnect_interval,
        )
        self._subsystems: set[str] = set()
        self._exchange_of: dict[str, str] = {}
        self._queues: dict[str, QueueSpec] = {}
        self._consumers: list[RabbitConsumer] = []
        self._reply_handler: ReplyHandler | None = None
        self._topology: AbstractChannel | None = None
        self._waiting = 0
        self._dead_lock = asyncio.Lock()
        self._dead_encoder = msgspec.msgpack.Encoder()
        self._dead_decoder = msgspec.msgpack.Decoder(DeadLetter)
        self._closed = False
        self._connected = False
        self._coalesce = coalesce_writes
        self._dedup_window = dedup_window
        self.batch_types = frozenset(str(t) for t in batch_types)
        """Message types sent many to an AMQP message (see ``_batch``); others one each."""
        self._batcher = Batcher(self._send_batch, size=batch_size, linger=batch_linger)
        self._pipeline: Pipeline | None = None

    # -- connection ------------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The connection and its recovery statistics (``reconnects``, ``outages``)."""
        return self._link

    async def connect(self) -> None:
        """Connect and declare the exchanges and the dead-letter store."""
        if self._connected:
            return
        self._subsystems.update(subsystem_of(t) for t in known_types())
        self._subsystems.update(t.subsystem for t in MessageTypes)
        self._queues[self.dead_letter_queue] = QueueSpec(name=self.dead_letter_queue, patterns=())
        await self._link.open()
        self._connected = True
        logger.info("connected to RabbitMQ at %s", self.settings)

    async def close(self) -> None:
        """Cancel consumers (settling what was handled) and close the connection."""
        if self._closed:
            return
        try:
            await self._batcher.flush_all()
        except Exception:
            logger.exception("could not send the last batches")
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.cancel()
        await self._link.close()

    async def _restore(self, connection: AbstractConnection, channel: AbstractChannel) -> None:
        """Replay the recorded topology and consumers on a fresh connection."""
        self._topology = await connection.channel(publisher_confirms=False)
        for subsystem in sorted(self._subsystems):
            await self._declare_exchange(self._topology, subsystem)
        for spec in list(self._queues.values()):
            await self._apply_queue(self._topology, spec)
        if self._reply_handler is not None:
            await self._consume_replies(channel)
        for consumer in list(self._consumers):
            if not consumer.cancelled:
                await consumer.start(connection)
        broken = [c for c in self._consumers if not c.healthy]
        if broken:
            raise ConnectionError(f"{len(broken)} consumer(s) did not come back")

    async def _check_consumers(self) -> None:
        """Restart any consumer whose channel or registration was lost."""
        connection = self._link.connection
        if connection is None:
            return
        for consumer in list(self._consumers):
            if not consumer.healthy:
                logger.warning("consumer of %s was lost; restarting it", consumer.queue)
                spec = self._queues.get(consumer.queue)
                if spec is not None:
                    await self._apply_queue(await self._topology_channel(), spec)
                await consumer.start(connection)

    async def _topology_channel(self) -> AbstractChannel:
        connection, _ = await self._wait_link()
        channel = self._topology
        if channel is None or channel.is_closed:
            channel = self._topology = await connection.channel(
                publisher_confirms=False, timeout=self._timeout
            )
        return channel

    async def _wait_link(self) -> tuple[AbstractConnection, AbstractChannel]:
        if self._closed:
            raise PublishError("the RabbitMQ broker was closed")
        try:
            async with asyncio.timeout(self.publish_timeout):
                return await self._link.wait_ready()
        except TimeoutError:
            raise PublishTimeout(
                f"RabbitMQ at {self.settings} not reachable for {self.publish_timeout}s"
            ) from None

    async def _topology_op(self, operation: Any) -> None:
        """Run ``operation(channel)`` on the topology channel, retrying across outages."""
        deadline = time.monotonic() + self.publish_timeout
        while True:
            channel = await self._topology_channel()
            try:
                await operation(channel)
                return
            except ChannelPreconditionFailed as exc:
                raise ConfigurationError(f"RabbitMQ refused a declaration: {exc}") from None
            except _LINK_ERRORS:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)

    def declared_names(self) -> tuple[list[str], list[str]]:
        """The queues and exchanges this broker declared (to tear a test prefix down)."""
        queues = sorted(self._queues)
        exchanges = [self._exchange(s) for s in sorted(self._subsystems)]
        return queues, exchanges

    # -- topology --------------------------------------------------------------------------

    def _exchange(self, subsystem: str) -> str:
        return f"{self.prefix}.{subsystem}"

    async def _declare_exchange(self, channel: AbstractChannel, subsystem: str) -> None:
        await channel.exchange_declare(
            exchange=self._exchange(subsystem),
            exchange_type="topic",
            durable=True,
            timeout=self._timeout,
        )

    async def _ensure_subsystem(self, subsystem: str) -> None:
        """Declare a new subsystem's exchange, and bind leading-wildcard patterns on it."""
        if subsystem in self._subsystems:
            return

        async def declare(channel: AbstractChannel) -> None:
            await self._declare_exchange(channel, subsystem)
            for spec in self._queues.values():
                for pattern in spec.patterns:
                    if _leading_wildcard(pattern):
                        await channel.queue_bind(
                            spec.name,
                            self._exchange(subsystem),
                            routing_key=pattern,
                            timeout=self._timeout,
                        )

        await self._topology_op(declare)
        self._subsystems.add(subsystem)

    def _exchanges_for(self, pattern: str) -> list[str]:
        if _leading_wildcard(pattern):
            return [self._exchange(s) for s in sorted(self._subsystems)]
        return [self._exchange(subsystem_of(pattern))]

    def _queue_arguments(self, spec: QueueSpec) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if spec.quorum:
            arguments["x-queue-type"] = "quorum"
        if spec.max_length is not None:
            arguments["x-max-length"] = spec.max_length
            arguments["x-overflow"] = "reject-publish"
        if not spec.durable:
            arguments["x-expires"] = self._idle_expiry_ms
        return arguments

    async def _apply_queue(self, channel: AbstractChannel, spec: QueueSpec) -> None:
        await channel.queue_declare(
            spec.name,
            durable=spec.durable or spec.quorum,
            arguments=self._queue_arguments(spec),
            timeout=self._timeout,
        )
        for pattern in spec.patterns:
            for exchange in self._exchanges_for(pattern):
                await channel.queue_bind(
                    spec.name, exchange, routing_key=pattern, timeout=self._timeout
                )

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing and bind it to every pattern of ``spec``."""
        for pattern in spec.patterns:
            if not _leading_wildcard(pattern):
                await self._ensure_subsystem(subsystem_of(pattern))
        known = self._queues.get(spec.name)
        if known is not None:
            patterns = known.patterns + tuple(p for p in spec.patterns if p not in known.patterns)
            spec = msgspec.structs.replace(known, patterns=patterns)
        await self._topology_op(lambda channel: self._apply_queue(channel, spec))
        self._queues[spec.name] = spec

    async def delete_queue(self, name: str) -> None:
        """Cancel this broker's consumers of the queue, then delete it."""
        for consumer in [c for c in self._consumers if c.queue == name]:
            await consumer.cancel()
        self._queues.pop(name, None)
        await self._topology_op(lambda channel: channel.queue_delete(name, timeout=self._timeout))

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding of a queue."""
        known = self._queues.get(name)
        if known is not None:
            self._queues[name] = msgspec.structs.replace(
                known, patterns=tuple(p for p in known.patterns if p != pattern)
            )

        async def unbind(channel: AbstractChannel) -> None:
            for exchange in self._exchanges_for(pattern):
                await channel.queue_unbind(
                    name, exchange, routing_key=pattern, timeout=self._timeout
                )

        await self._topology_op(unbind)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Send to the type's subsystem exchange; return once the broker confirmed."""
        exchange = self._exchange_of.get(envelope.type)
        if exchange is None:
            subsystem = subsystem_of(envelope.type)
            await self._ensure_subsystem(subsystem)
            exchange = self._exchange_of[envelope.type] = self._exchange(subsystem)
        if envelope.type in self.batch_types and not mandatory and envelope.reply_to is None:
            await self._batcher.publish(exchange, envelope)
            return
        body, properties = encode_envelope(self._codec, envelope)
        await self._send(exchange, envelope.type, body, properties, mandatory=mandatory)

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
        """Publish and wait for the confirm, across outages, within ``publish_timeout``."""
        link = self._link
        try:
            async with asyncio.timeout(self.publish_timeout):
                while True:
                    channel = link.channel
                    if not link.ready.is_set() or channel is None or channel.is_closed:
                        channel = await self._wait_for_link()
                    try:
                        pipeline = self._pipeline
                        if pipeline is None or pipeline.channel is not channel:
                            pipeline = self._pipeline_for(channel)
                        if pipeline is not None:
                            await pipeline.publish(
                                exchange, routing_key, body, properties, mandatory
                            )
                        else:
                            await channel.basic_publish(
                                body,
                                exchange=exchange,
                                routing_key=routing_key,
                                properties=properties,
                                mandatory=mandatory,
                            )
                        return
                    except AmqpReturned:
                        raise Unroutable(
                            f"no queue is bound to {routing_key!r}"
                            + (f" on {exchange!r}" if exchange else "")
                        ) from None
                    except DeliveryError:
                        raise QueueFull(
                            f"RabbitMQ refused {routing_key!r} (a queue at its max length?)"
                        ) from None
                    except asyncio.CancelledError:
                        if _being_cancelled():
                            raise
                        logger.debug("publish cut by a closing channel; sending again")
                    except Exception as exc:
                        if self._closed:
                            raise PublishError(f"broker closed while publishing: {exc}") from None
                        if not isinstance(exc, _LINK_ERRORS) and not channel.is_closed:
                            raise
                        logger.debug("publish failed (%r); sending again once reconnected", exc)
                    await asyncio.sleep(0)
                    if channel is link.channel and not channel.is_closed:
                        await asyncio.sleep(0.01)
        except TimeoutError:
            raise PublishTimeout(
                f"no confirm for {routing_key!r} within {self.publish_timeout}s"
            ) from None

    def _pipeline_for(self, channel: AbstractChannel) -> Pipeline | None:
        if not self._coalesce or not Pipeline.supported(channel):
            return None
        self._pipeline = Pipeline(channel)
        return self._pipeline

    async def _wait_for_link(self) -> AbstractChannel:
        if self._closed:
            raise PublishError("the RabbitMQ broker was closed")
        if self._waiting >= self.outbox_limit:
            raise QueueFull(
                f"{self._waiting} publishes already wait for RabbitMQ to come back, the limit"
            )
        self._waiting += 1
        try:
            _, channel = await self._link.wait_ready()
        finally:
            self._waiting -= 1
        return channel

    # -- consuming -------------------------------------------------------------------------

    async def consume(self, queue: str, sink: DeliverySink, *, prefetch: int) -> ConsumerHandle:
        """Consume ``queue`` on a channel of its own, with ``prefetch`` unsettled at most."""
        consumer = RabbitConsumer(
            queue,
            sink,
            prefetch,
            codec=self._codec,
            actor=self._actor_of(queue),
            dead_letter=self.dead_letter,
            timeout=self._timeout,
            on_remove=self._forget_consumer,
            dedup_window=self._dedup_window,
        )
        deadline = time.monotonic() + self.publish_timeout
        while True:
            connection, _ = await self._wait_link()
            try:
                await consumer.start(connection)
                break
            except ChannelPreconditionFailed as exc:
                raise ConfigurationError(f"cannot consume {queue!r}: {exc}") from None
            except AMQPError as exc:
                if not connection.is_closed or time.monotonic() > deadline:
                    raise Unroutable(f"cannot consume {queue!r}: {exc}") from None
            except _LINK_ERRORS:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.01)
        self._consumers.append(consumer)
        return consumer

    def _forget_consumer(self, consumer: RabbitConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def _actor_of(self, queue: str) -> str:
        """The actor (or subscription) name behind a queue named the router's way."""
        name = queue.removeprefix(f"{self.prefix}.")
        return name.removeprefix("actor.")

    # -- replies ---------------------------------------------------------------------------

    async def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Consume RabbitMQ's direct reply-to on the publishing channel."""
        self._reply_handler = on_reply
        _, channel = await self._wait_link()
        await self._consume_replies(channel)
        return DIRECT_REPLY_TO

    async def _consume_replies(self, channel: AbstractChannel) -> None:
        if DIRECT_REPLY_TO in _consumers_of(channel):
            return

        async def on_reply(message: DeliveredMessage) -> None:
            try:
                envelope = decode_message(self._codec, message, schema_type="")
            except DecodeError as exc:
                logger.warning("undecodable reply dropped: %s", exc.reason)
                return
            handler = self._reply_handler
            if handler is not None:
                handler(envelope)

        await channel.basic_consume(
            DIRECT_REPLY_TO,
            on_reply,
            no_ack=True,
            consumer_tag=DIRECT_REPLY_TO,
            timeout=self._timeout,
        )

    async def send_reply(self, address: str, envelope: Envelope) -> None:
        """Send a reply (transient, confirmed) to a requester's reply address."""
        body, properties = encode_envelope(self._codec, envelope, persistent=False)
        await self._send("", address, body, properties, mandatory=False)

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store ``entry`` in the dead-letter queue; return once the broker confirmed it."""
        envelope = entry.envelope
        properties = Basic.Properties(
            content_type="application/msgpack",
            delivery_mode=2,
            message_id=envelope.id,
            message_type=envelope.type,
            headers={
                "x-actor": entry.actor,
                "x-queue": entry.queue,
                "x-error-type": entry.error_type,
                "x-reason": entry.reason[:1000],
                "x-attempts": entry.attempts,
            },
        )
        await self._send(
            "",
            self.dead_letter_queue,
            self._dead_encoder.encode(entry),
            properties,
            mandatory=True,
        )
        logger.warning(
            "dead letter: %s %s from %s after %d attempt(s): %s: %s",
            envelope.type,
            envelope.id,
            entry.actor,
            entry.attempts,
            entry.error_type,
            entry.reason,
        )

    def _read_entry(self, body: bytes) -> DeadLetter | None:
        try:
            entry = self._dead_decoder.decode(body)
        except msgspec.DecodeError:
            return None
        schema = schema_for(entry.envelope.type)
        if schema is not None and isinstance(entry.envelope.data, dict):
            try:
                data = msgspec.convert(entry.envelope.data, schema)
            except msgspec.ValidationError:
                return entry
            entry = msgspec.structs.replace(
                entry, envelope=msgspec.structs.replace(entry.envelope, data=data)
            )
        return entry

    async def _walk_dead_letters(self, visit: Any) -> None:
        """Take every stored entry on a private channel; give back what ``visit`` did not settle.

        ``visit(channel, tag, entry)`` returns True when it acknowledged the entry.
        """
        async with self._dead_lock:
            connection, _ = await self._wait_link()
            channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
            last_kept = 0
            try:
                while True:
                    message = await channel.basic_get(
                        self.dead_letter_queue, no_ack=False, timeout=self._timeout
                    )
                    delivery = message.delivery
                    if not isinstance(delivery, Basic.GetOk):
                        break
                    tag = delivery.delivery_tag or 0
                    entry = self._read_entry(message.body)
                    if entry is None or not await visit(channel, tag, entry):
                        last_kept = tag
                    if not delivery.message_count:
                        break
            finally:
                try:
                    if last_kept and not channel.is_closed:
                        await channel.basic_nack(last_kept, multiple=True, requeue=True)
                finally:
                    async with asyncio.timeout(2.0):
                        await channel.close()

    async def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """List the selected dead letters, oldest first, leaving them stored."""
        found: list[DeadLetter] = []

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            if selection(entry):
                found.append(entry)
            return False

        await self._walk_dead_letters(visit)
        return found

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected entries back to their own queues, counting replays in a header."""
        replayed = 0

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            nonlocal replayed
            if not selection(entry) or (max_replays is not None and entry.replays >= max_replays):
                return False
            envelope = entry.envelope
            headers = {**envelope.headers, REPLAYS_HEADER: str(entry.replays + 1)}
            await self.send_to_queue(
                entry.queue, msgspec.structs.replace(envelope, attempt=1, headers=headers)
            )
            await channel.basic_ack(tag)
            replayed += 1
            return True

        await self._walk_dead_letters(visit)
        return replayed

    async def purge_dead_letters(self, selection: DeadLetterFilter) -> int:
        """Delete the selected entries; return how many."""
        purged = 0

        async def visit(channel: AbstractChannel, tag: int, entry: DeadLetter) -> bool:
            nonlocal purged
            if not selection(entry):
                return False
            await channel.basic_ack(tag)
            purged += 1
            return True

        await self._walk_dead_letters(visit)
        return purged


def _leading_wildcard(pattern: str) -> bool:
    return subsystem_of(pattern) in ("*", "#")


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
