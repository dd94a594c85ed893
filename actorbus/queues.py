"""How an actor's queue is declared: one :class:`QueueOptions` value per actor class.

An actor consumes from one queue, bound to every type it handles. Its shape
(durability, length limit, expiry, queue type, delivery limit, single active
consumer) is one declaration on the class::

    class Execution(Actor):
        queue = QueueOptions(queue_type="quorum", single_active=True)

Every broker reads the same options; the ones RabbitMQ alone can honour say so.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .errors import ConfigurationError

__all__ = ["Overflow", "QueueOptions", "QueueType", "actor_queue_name"]

QueueType = Literal["classic", "quorum"]
"""RabbitMQ's two queue types: ``classic`` (one node) or ``quorum`` (replicated)."""
Overflow = Literal["reject-publish", "drop-head"]
"""What a queue at its length limit does with one more message."""


class QueueOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The declaration of an actor's queue; the defaults suit most actors."""

    name: str | None = None
    """Queue name; ``None``: ``<prefix>.actor.<actor name>``. The same queue in several
    processes makes competing consumers."""
    durable: bool = True
    """Keep the queue (and its messages) when the actor stops and across broker restarts."""
    queue_type: QueueType | None = None
    """``"classic"`` or ``"quorum"`` over RabbitMQ; ``None``: the bus-wide queue type
    (``TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE``, default classic). In memory every queue is
    one kind."""
    max_length: int | None = None
    """Most messages the queue keeps while unconsumed (``x-max-length``); ``None``: no limit."""
    overflow: Overflow = "reject-publish"
    """At ``max_length``: refuse publishes (``QueueFull``) or drop the oldest."""
    expires: float | None = None
    """Seconds without a consumer after which the queue is deleted (``x-expires``)."""
    delivery_limit: int | None = None
    """Quorum queues: deliveries before a message that keeps killing its consumer *process*
    is dead-lettered; ``None``: the bus-wide default. RabbitMQ only: an in-memory queue
    lives in its consumer's process, so no message outlives such a death there."""
    single_active: bool = False
    """Run as a standby pair (or more): any number of processes may consume the queue, one
    gets its messages and the others stand by; when the active one stops, dies or loses
    its connection, the next takes over, unsettled messages first, order kept."""

    def __post_init__(self) -> None:
        if self.queue_type not in (None, "classic", "quorum"):
            raise ConfigurationError(
                f"queue_type must be 'classic' or 'quorum', not {self.queue_type!r}"
            )
        if self.overflow not in ("reject-publish", "drop-head"):
            raise ConfigurationError(
                f"overflow must be 'reject-publish' or 'drop-head', not {self.overflow!r}"
            )
        if self.max_length is not None and self.max_length < 1:
            raise ConfigurationError(f"max_length must be at least 1, not {self.max_length}")
        if self.delivery_limit is not None and self.delivery_limit < 1:
            raise ConfigurationError(
                f"delivery_limit must be at least 1, not {self.delivery_limit}"
            )


def actor_queue_name(prefix: str, options: QueueOptions, actor: str) -> str:
    """The queue an actor named ``actor`` consumes from under ``prefix``."""
    return options.name or f"{prefix}.actor.{actor}"
