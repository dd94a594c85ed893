"""The interface every broker implements, and the records brokers exchange.

A broker moves envelopes between publishers and named queues. It knows topic
routing (one topic exchange per subsystem, routing key = message type), queues
and their bindings, consumers with a prefetch limit, replies to ``ask``, and a
dead-letter store. It knows nothing of actors, supervisors or the bus.

The in-memory broker and the RabbitMQ broker implement the same contract, and
one set of contract tests runs against both (``tests/contract``), driving this
interface directly as well as through the bus. What a delivery means is the
same in both:

- **Prefetch.** A consumer has at most ``prefetch`` deliveries unsettled at
  once; the next message waits in the queue until one of them is settled.
- **Ack.** :meth:`Delivery.ack` says the message was handled: the broker forgets
  it, and the consumer's prefetch has room for one more.
- **Requeue.** :meth:`Delivery.requeue` gives the message back to the head of its
  queue, to be delivered again (to this consumer or another).
- **Cancel.** :meth:`ConsumerHandle.cancel` gives every delivery still unsettled
  back to the queue, in order; settling one of them afterwards does nothing
  (over RabbitMQ: its channel is closed; in memory: it was requeued at cancel).
  :meth:`ConsumerHandle.pause` only stops new deliveries.
- **Settling twice** does nothing.

One difference is deliberate, and stated where it applies: over RabbitMQ a
publish returns once the broker has the message, however long the queue; in
memory the queue lives in the publisher's own process, so a publish to a queue
whose consumers are all at their prefetch waits until one of them settles a
delivery (flow control, as RabbitMQ's own credit flow holds a publisher that
outruns a queue). Memory stays bounded under any load either way. Flow control
never holds back the consumer itself: a task handling deliveries of a sink
(:data:`handling_for`) that publishes into that sink's own queue leaves the
message waiting in the queue, as RabbitMQ would, rather than wait for itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Literal, Protocol

import msgspec

from ..messages import REPLAYS_HEADER, Delivery, Envelope
from ..queues import Overflow, QueueOptions, QueueType

__all__ = [
    "REPLAYS_HEADER",
    "BrokerStats",
    "ConsumerHandle",
    "DeadLetter",
    "DeadLetterFilter",
    "DeliverySink",
    "FunctionSink",
    "MessageBroker",
    "QueueSpec",
    "ReplyHandler",
    "handling_for",
]


handling_for: ContextVar[object] = ContextVar("actorbus_handling_for", default=None)
"""The sink whose deliveries the running task handles (an actor's activation sets
its mailbox): a broker never makes that task wait on flow control for the sink's own
queue, which only the task itself could drain."""


class DeliverySink(Protocol):
    """Where a consumer hands its deliveries: an actor's mailbox."""

    def offer(self, delivery: Delivery) -> bool:
        """Take ``delivery`` if that needs no wait; return whether it was taken."""

    async def put(self, delivery: Delivery) -> None:
        """Take ``delivery``, waiting for room."""

    def take_back(self, which: Callable[[Delivery], bool]) -> list[Delivery]:
        """Remove and return the deliveries ``which`` selects that are still waiting."""


class FunctionSink:
    """A :class:`DeliverySink` that hands each delivery to an async function, one at a time.

    It holds nothing: the function settles each delivery itself (or leaves it
    unsettled, counting against the prefetch, until it does).
    """

    __slots__ = ("function",)

    def __init__(self, function: Callable[[Delivery], Awaitable[None]]) -> None:
        self.function = function
        """Called with each delivery."""

    def offer(self, delivery: Delivery) -> bool:
        """Never takes at once: every delivery goes through :meth:`put`."""
        return False

    async def put(self, delivery: Delivery) -> None:
        """Call the function with ``delivery``."""
        await self.function(delivery)

    def take_back(self, which: Callable[[Delivery], bool]) -> list[Delivery]:
        """Nothing waits here to be taken back."""
        return []


ReplyHandler = Callable[[Envelope], None]
"""Called with each reply that arrives at a bus's reply address."""


class QueueSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A named queue and the topic patterns bound to it."""

    name: str
    """Queue name; the same name in several processes makes competing consumers."""
    patterns: tuple[str, ...]
    """Binding patterns (message types, or topics with ``*`` and ``#``)."""
    durable: bool = True
    """Survive a broker restart (RabbitMQ) / outlive the bus that declared it (in memory)."""
    max_length: int | None = None
    """Most messages kept while nobody consumes; past it, ``overflow`` says what happens."""
    overflow: Overflow = "reject-publish"
    """At ``max_length`` (RabbitMQ ``x-overflow``): ``"reject-publish"`` refuses the
    publish (``QueueFull``); ``"drop-head"`` drops the oldest message to make room."""
    expires: float | None = None
    """Seconds without a consumer after which the queue is deleted (RabbitMQ ``x-expires``);
    ``None``: a durable queue never expires (a non-durable one over RabbitMQ does, after
    the broker's ``idle_queue_expiry``)."""
    queue_type: QueueType | None = None
    """``"classic"`` or ``"quorum"`` (RabbitMQ only; in memory every queue is one kind).

    ``None``: the broker's bus-wide queue type for a durable queue; a non-durable
    queue is classic unless it says ``"quorum"``.
    """
    delivery_limit: int | None = None
    """Quorum queues: deliveries of one message before the broker dead-letters it.

    ``None``: the broker's default. RabbitMQ only: it bounds redelivery after a
    consumer *process* died with the message; the in-memory broker lives in the
    consumer's process, so no message outlives such a death there.
    """
    single_active: bool = False
    """One consumer at a time gets the queue's messages; the others stand by, and the
    next (in the order they subscribed) takes over when it goes, unsettled messages
    first, in order (RabbitMQ's ``x-single-active-consumer``)."""

    @classmethod
    def declared(cls, name: str, patterns: tuple[str, ...], options: QueueOptions) -> QueueSpec:
        """The queue ``name`` bound to ``patterns``, shaped by an actor's ``options``."""
        return cls(
            name=name,
            patterns=patterns,
            durable=options.durable,
            max_length=options.max_length,
            overflow=options.overflow,
            expires=options.expires,
            queue_type=options.queue_type,
            delivery_limit=options.delivery_limit,
            single_active=options.single_active,
        )


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message that could not be handled, kept with why."""

    envelope: Envelope
    """The original message, as it was first delivered."""
    queue: str
    """The queue it was consumed from; replays go back to it alone."""
    actor: str
    """Name of the actor (or subscription) that failed to handle it."""
    error_type: str
    """Class name of the last exception (or ``DecodeError`` for bad input)."""
    reason: str
    """Text of the last exception."""
    attempts: int
    """How many times the handler was tried."""
    first_failure: float
    """Epoch seconds of the first failed attempt."""
    last_failure: float
    """Epoch seconds of the last failed attempt."""

    @property
    def replays(self) -> int:
        """How many times this message was already replayed from the dead-letter queue."""
        return int(self.envelope.headers.get(REPLAYS_HEADER, "0"))

    def replay_envelope(self) -> Envelope:
        """The message as a replay sends it back: first attempt, one more replay counted."""
        envelope = self.envelope
        headers = {**envelope.headers, REPLAYS_HEADER: str(self.replays + 1)}
        return msgspec.structs.replace(envelope, attempt=1, headers=headers)

    @classmethod
    def for_failure(
        cls,
        envelope: Envelope,
        *,
        queue: str,
        actor: str,
        error: BaseException | str,
        attempts: int,
        first_failure: float | None = None,
    ) -> DeadLetter:
        """Build the record for a message that failed ``attempts`` times with ``error``."""
        now = time.time()
        if isinstance(error, BaseException):
            error_type, reason = type(error).__name__, str(error)
        else:
            error_type, reason = "DecodeError", error
        return cls(
            envelope=envelope,
            queue=queue,
            actor=actor,
            error_type=error_type,
            reason=reason,
            attempts=attempts,
            first_failure=first_failure or now,
            last_failure=now,
        )


class DeadLetterFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Selects dead letters by actor and/or message type; empty selects all."""

    actor: str | None = None
    """Only entries of this actor (or subscription) name."""
    type: str | None = None
    """Only entries of this message type."""

    def __call__(self, entry: DeadLetter) -> bool:
        """Tell whether ``entry`` is selected."""
        return (self.actor is None or entry.actor == self.actor) and (
            self.type is None or entry.envelope.type == self.type
        )


class BrokerStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a broker counts, for ``stats()``; each broker adds its own fields."""

    mode: str
    """``"in_memory"`` or ``"rabbitmq"``."""
    node: str
    """Where it is connected: ``host:port`` of the RabbitMQ node in use (or being tried
    again), ``"in_memory"`` for the in-memory broker."""
    connected: bool = True
    """Whether the connection is up (always, in memory)."""
    reconnects: int = 0
    """Connections made after the first one."""
    outbox: int = 0
    """Publishes waiting for the connection to come back."""
    unconfirmed: int = 0
    """Publishes sent and waiting for the broker's confirm."""
    unroutable: int = 0
    """Messages published that no queue was bound to (counted whether kept or dropped)."""


class ConsumerHandle(Protocol):
    """A running consumer; cancelling it gives unsettled deliveries back to the queue."""

    @property
    def active(self) -> bool:
        """Whether this consumer gets the queue's messages (``False``: it stands by).

        Always ``True`` on a queue without ``single_active``.
        """

    async def pause(self) -> None:
        """Stop new deliveries; those already handed on can still be settled (until cancel).

        A paused consumer of a ``single_active`` queue stays the active one: the next
        consumer takes over only at :meth:`cancel`, in one step.
        """

    async def cancel(self) -> None:
        """Stop consuming; every delivery still unsettled goes back to the queue, in order."""


class MessageBroker(Protocol):
    """What the router needs from a transport."""

    name: str
    """``"in_memory"`` or ``"rabbitmq"``: the mode this broker gives the bus."""
    unroutable: int
    """Messages published that no queue was bound to (counted whether kept or dropped)."""
    declare: Literal["create", "passive"]
    """``"create"`` declares what is missing; ``"passive"`` only checks that it exists."""

    def stats(self) -> BrokerStats:
        """The broker's counters (and, over RabbitMQ, its connection), read now."""

    async def connect(self) -> None:
        """Open the connection; raise ``BrokerUnavailable`` when it cannot be made."""

    async def close(self) -> None:
        """Cancel consumers and close; calling it twice is harmless."""

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing and bind it to every pattern of ``spec``."""

    async def delete_queue(self, name: str) -> None:
        """Delete a queue and its bindings; a missing queue is not an error."""

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding of a queue; a missing binding is not an error."""

    async def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Route ``envelope`` by its type; return once the broker has it.

        With ``mandatory``, raise ``Unroutable`` when no queue is bound to the type.
        """

    def publish_nowait(
        self, envelope: Envelope, *, mandatory: bool = False
    ) -> Awaitable[None] | None:
        """Start :meth:`publish`; return what is left to await, or ``None`` when it is done.

        The hot path of a publish: the in-memory broker hands a message to a consumer
        with room without any coroutine. A broker with nothing to gain returns its
        ``publish`` coroutine. Errors found at once (bad data, ``Unroutable``) raise here.
        """

    async def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Put ``envelope`` straight into one queue, bypassing routing (used by replay)."""

    async def queue_length(self, name: str) -> int:
        """Messages waiting in a queue, not yet delivered to a consumer (0: none, or no queue)."""

    async def consume(
        self, queue: str, sink: DeliverySink, *, prefetch: int, owner: str
    ) -> ConsumerHandle:
        """Hand each message of ``queue`` to ``sink``; at most ``prefetch`` unsettled at once.

        ``owner`` names who consumes (an actor or subscription): the broker files the
        dead letters it makes for this consumer (undecodable messages) under it.
        """

    async def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Create this bus's reply address; replies sent there call ``on_reply``."""

    async def send_reply(self, address: str, envelope: Envelope) -> None:
        """Deliver a reply envelope to a reply address."""

    def send_reply_nowait(self, address: str, envelope: Envelope) -> Awaitable[None] | None:
        """Start :meth:`send_reply`; return what is left to await, or ``None`` when done."""

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store a dead letter durably; return once it is stored."""

    async def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """List stored dead letters, oldest first, without removing them."""

    async def dead_letter_count(self) -> int:
        """How many entries the dead-letter store holds (cheap: nothing is read)."""

    async def replay_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> int:
        """Send selected dead letters back to their queues; return how many.

        Entries already replayed ``max_replays`` times stay where they are.
        """

    async def purge_dead_letters(self, selection: DeadLetterFilter) -> int:
        """Delete selected dead letters; return how many."""
