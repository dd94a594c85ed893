"""Queue type and bounded redelivery: bus-wide defaults resolved once, applied per queue.

The queue type of the whole bus is the ``queue_type`` argument, else the
``TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE`` variable, else ``classic``; it applies
to every durable actor queue and to the dead-letter queue. A queue's own
declaration wins (``QueueSpec.queue_type``, from the ``queue_type`` of an
XX
quorum: they are meant to vanish with their consumer.

Quorum queues (but the stores: the dead-letter queue and the unroutable
queue, which are read and given back, never consumed to completion) also
bound redelivery: the broker
counts each delivery (``x-delivery-count``), and past ``delivery_limit``
(argument, else ``TRADING_SYSTEM_RABBITMQ_DELIVERY_LIMIT``, else
:data:`DEFAULT_DELIVERY_LIMIT`) it dead-letters the message into the
dead-letter queue, at least once (``x-dead-letter-strategy=at-least-once``,
which needs ``x-overflow=reject-publish``). That is what stops a message that
kills its consumer process from being redelivered forever; the consumer's
redelivery window (``_window``) keeps the count of the messages behind it low.
A queue declared with ``max_length`` and ``overflow="drop-head"`` keeps its
overflow; RabbitMQ then dead-letters at most once (a message past its limit
may be dropped if the dead-letter queue cannot take it).

Changing these options for a queue that already exists with others makes the
broker refuse the declaration (``PRECONDITION_FAILED``): the queue has to be
moved (declared anew) first.
"""

from __future__ import annotations

import os
from typing import Any

from ...errors import ConfigurationError
from ..base import QueueSpec

__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "DELIVERY_LIMIT_VARIABLE",
    "QUEUE_TYPES",
    "QUEUE_TYPE_VARIABLE",
    "QueueDefaults",
]

QUEUE_TYPE_VARIABLE = "TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE"
"""Environment variable holding the bus-wide queue type when the argument does not."""
DELIVERY_LIMIT_VARIABLE = "TRADING_SYSTEM_RABBITMQ_DELIVERY_LIMIT"
"""Environment variable holding the quorum queues' delivery limit when the argument does not."""
QUEUE_TYPES = ("classic", "quorum")
DEFAULT_DELIVERY_LIMIT = 20
"""Deliveries of one message before a quorum queue dead-letters it.

High enough that failovers (each gives the messages in flight back, counted)
never dead-letter a healthy message; low enough that a message killing its
consumer process is put aside after a bounded number of crashes.
"""


def resolve_queue_type(queue_type: str | None) -> str:
    """The bus-wide queue type: ``queue_type``, else the environment, else ``classic``."""
    source = "queue_type" if queue_type else QUEUE_TYPE_VARIABLE
    chosen = queue_type or os.environ.get(QUEUE_TYPE_VARIABLE) or "classic"
    normalised = chosen.strip().lower()
    if normalised not in QUEUE_TYPES:
        raise ConfigurationError(
            f"unknown queue type {chosen!r} (from {source}): use 'classic' or 'quorum'"
        )
    return normalised


def resolve_delivery_limit(limit: int | None) -> int:
    """The delivery limit: ``limit``, else the environment, else the default."""
    source = "delivery_limit"
    if limit is None:
        raw = os.environ.get(DELIVERY_LIMIT_VARIABLE, "").strip()
        if not raw:
            return DEFAULT_DELIVERY_LIMIT
        source = DELIVERY_LIMIT_VARIABLE
        try:
            limit = int(raw)
        except ValueError:
            raise ConfigurationError(
                f"{DELIVERY_LIMIT_VARIABLE} must be a whole number, not {raw!r}"
            ) from None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"{source} must be a whole number of at least 1, not {limit!r}")
    return limit


class QueueDefaults:
    """The bus-wide queue type and delivery limit, and the arguments they give a queue.

    Defaults of the whole bus, as opposed to :class:`actorbus.queues.QueueOptions`, the
    declaration of one actor's queue: a queue's own ``queue_type`` and ``delivery_limit``
    win over these.
    """

    def __init__(
        self,
        *,
        dead_letter_queue: str,
        queue_type: str | None = None,
        delivery_limit: int | None = None,
        stores: tuple[str, ...] = (),
    ) -> None:
        self.queue_type = resolve_queue_type(queue_type)
        """The bus-wide queue type, ``classic`` or ``quorum``."""
        self.delivery_limit = resolve_delivery_limit(delivery_limit)
        """Default delivery limit of quorum queues."""
        self.dead_letter_queue = dead_letter_queue
        """Where quorum queues dead-letter what reached its delivery limit."""
        self.stores = frozenset((dead_letter_queue, *stores))
        """Queues that keep messages to be read, not handled: never bounded."""

    def type_of(self, spec: QueueSpec) -> str:
        """The type ``spec`` is declared with."""
        if spec.queue_type is not None:
            return resolve_queue_type(spec.queue_type)
        return self.queue_type if spec.durable else "classic"

    def bounded(self, spec: QueueSpec) -> bool:
        """Whether the broker bounds redelivery on this queue (a quorum actor queue)."""
        return self.type_of(spec) == "quorum" and spec.name not in self.stores

    def arguments(self, spec: QueueSpec) -> dict[str, Any]:
        """The ``queue.declare`` arguments the type and the delivery limit give ``spec``."""
        if self.type_of(spec) != "quorum":
            return {}
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if spec.name in self.stores:
            return arguments  # reading a store gives entries back: they must never expire
        limit = self.delivery_limit if spec.delivery_limit is None else spec.delivery_limit
        arguments.update(
            {
                "x-delivery-limit": resolve_delivery_limit(limit),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.dead_letter_queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
        return arguments
