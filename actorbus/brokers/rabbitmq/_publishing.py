"""The outbound side of the broker: envelopes to exchanges and queues, each confirmed.

A message goes to its subsystem's exchange (``<prefix>.<subsystem>``, declared the
first time a subsystem is published to) with its type as routing key, and a publish
returns once the broker confirmed it (see ``_sender``: outages, nacks, timeouts).

Unroutable messages: ``mandatory`` publishes that no queue takes raise
``Unroutable``; every other publish is sent mandatory too, so that the broker
returns what no queue takes: it is counted (``unroutable``), logged
(rate-limited) and, with ``unroutable="keep"``, sent on to the queue
``<prefix>.unroutable`` (see ``brokers._unroutable``). An alternate exchange
would do the last part inside RabbitMQ, but it is an exchange argument, and
declaring an existing exchange with other arguments fails
(``PRECONDITION_FAILED``): adding it would break every deployment made before.

Batched types (``batch_types``) go many to an AMQP message (see ``_batch``); they
are not counted when unroutable. Straight sends to one queue (a replay, a dead
letter) and replies go through the default exchange.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from pamqp.commands import Basic

from ...codec import Codec
from ...errors import Unroutable
from ...messages import Envelope, subsystem_of
from .._unroutable import UnroutablePolicy, announcement, note_unroutable, unroutable_spec
from ..base import QueueSpec
from ._batch import Batcher
from ._sender import Sender
from ._wire import encode_envelope

__all__ = ["Publishing", "PublishingFace"]

EnsureSubsystem = Callable[[str], Awaitable[str]]
"""Declares a subsystem's exchange if it is new; returns the exchange's name."""


class Publishing:
    """Routes, batches and sends one broker's envelopes; counts the unroutable ones."""

    def __init__(
        self,
        sender: Sender,
        codec: Codec,
        *,
        prefix: str,
        ensure_subsystem: EnsureSubsystem,
        batch_types: Iterable[str],
        batch_size: int,
        batch_linger: float,
        unroutable: UnroutablePolicy,
    ) -> None:
        self.sender = sender
        """Sends one AMQP message and waits for its confirm."""
        self.batch_types = frozenset(str(t) for t in batch_types)
        """Message types sent many to an AMQP message (see ``_batch``); others one each."""
        self.batcher = Batcher(self._send_batch, size=batch_size, linger=batch_linger)
        """Gathers the envelopes of batched types."""
        self.unroutable = 0
        """Messages published that no queue was bound to (returned by the broker)."""
        self.policy: UnroutablePolicy = unroutable
        """What becomes of them: ``"drop"`` or ``"keep"`` (in ``<prefix>.unroutable``)."""
        self.keep_spec: QueueSpec | None = unroutable_spec(prefix) if unroutable == "keep" else None
        """The queue unroutable messages are kept in (``None``: they are dropped)."""
        self._codec = codec
        self._ensure_subsystem = ensure_subsystem
        self._exchange_of: dict[str, str] = {}

    async def publish(self, envelope: Envelope, mandatory: bool) -> None:
        """Send to the type's subsystem exchange; return once the broker confirmed."""
        exchange = self._exchange_of.get(envelope.type)
        if exchange is None:
            exchange = await self._ensure_subsystem(subsystem_of(envelope.type))
            self._exchange_of[envelope.type] = exchange
        if envelope.type in self.batch_types and not mandatory and envelope.reply_to is None:
            self._codec.encode_data(envelope.data)  # bad data is refused here, not in a batch
            await self.batcher.publish(exchange, envelope)
            return
        body, properties = encode_envelope(self._codec, envelope)
        try:
            await self.sender.send(exchange, envelope.type, body, properties, mandatory=True)
        except Unroutable:
            if mandatory:
                self.unroutable += 1
                raise
            if announcement(envelope):
                return
            self.unroutable += 1
            spec = self.keep_spec
            note_unroutable(envelope, spec.name if spec is not None else None)
            if spec is not None:
                await self.sender.send("", spec.name, body, properties, mandatory=False)

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Put ``envelope`` into one queue through the default exchange (``Unroutable`` if none)."""
        body, properties = encode_envelope(self._codec, envelope)
        await self.sender.send("", queue, body, properties, mandatory=True)

    async def send_reply(self, address: str, envelope: Envelope) -> None:
        """Send a reply (transient, confirmed) to a requester's reply address."""
        body, properties = encode_envelope(self._codec, envelope, persistent=False)
        await self.sender.send("", address, body, properties, mandatory=False)

    async def flush(self) -> None:
        """Send every open batch now and wait for their confirms."""
        await self.batcher.flush_all()

    async def _send_batch(
        self, exchange: str, routing_key: str, body: bytes, properties: Basic.Properties
    ) -> None:
        await self.sender.send(exchange, routing_key, body, properties, mandatory=False)


class PublishingFace:
    """The broker's publishing methods and counters (``MessageBroker``), over its parts.

    Publishes go through :class:`Publishing`; the counters and limits of confirmed
    sending are the :class:`~._sender.Sender`'s.
    """

    _publishing: Publishing
    _sender: Sender

    def publish(self, envelope: Envelope, *, mandatory: bool = False) -> Coroutine[Any, Any, None]:
        """Send to the type's subsystem exchange; return once the broker confirmed."""
        return self._publishing.publish(envelope, mandatory)

    def publish_nowait(
        self, envelope: Envelope, *, mandatory: bool = False
    ) -> Awaitable[None] | None:
        """:meth:`publish`, to be awaited: every publish over RabbitMQ waits for a confirm."""
        return self._publishing.publish(envelope, mandatory)

    def send_to_queue(self, queue: str, envelope: Envelope) -> Coroutine[Any, Any, None]:
        """Put ``envelope`` into one queue through the default exchange (``Unroutable`` if none)."""
        return self._publishing.send_to_queue(queue, envelope)

    @property
    def unroutable(self) -> int:
        """Messages published that no queue was bound to (returned by the broker)."""
        return self._publishing.unroutable

    @unroutable.setter
    def unroutable(self, count: int) -> None:
        self._publishing.unroutable = count

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

    def send_reply(self, address: str, envelope: Envelope) -> Coroutine[Any, Any, None]:
        """Send a reply (transient, confirmed) to a requester's reply address."""
        return self._publishing.send_reply(address, envelope)

    def send_reply_nowait(self, address: str, envelope: Envelope) -> Awaitable[None] | None:
        """:meth:`send_reply`, to be awaited (it waits for the broker's confirm)."""
        return self._publishing.send_reply(address, envelope)
