"""What ``stats()`` returns: typed snapshots of a bus, its broker and its actors.

Every field is read at the moment ``stats()`` is called, from counters the
runtime keeps anyway (nothing is counted twice on the hot path). The structs
are msgspec Structs: ``msgspec.json.encode(bus.stats())`` gives the JSON that
``actorbus stats --json`` prints.
"""

from __future__ import annotations

import msgspec

from .brokers.base import BrokerStats
from .cell import ActorCell
from .mailbox import ConflatingMailbox

__all__ = ["ActorStats", "BusStats", "actor_stats"]


class ActorStats(msgspec.Struct, frozen=True, kw_only=True):
    """One actor (or subscription) of a bus, now."""

    state: str
    """Lifecycle state: new, starting, running, stopping, stopped or failed."""
    processed: int = 0
    """Messages handled successfully."""
    failed: int = 0
    """Handler calls that raised."""
    retried: int = 0
    """Retries made after a failure."""
    dead_lettered: int = 0
    """Messages sent to the dead-letter queue."""
    restarts: int = 0
    """Times its supervisor restarted it."""
    mailbox: int = 0
    """Deliveries waiting in its mailbox."""
    conflated: int = 0
    """Unread messages replaced by newer ones (a conflating mailbox)."""
    busy: bool = False
    """A message is being handled right now (or retried after a failure)."""
    role: str | None = None
    """``single_active`` actors only: ``"active"`` or ``"standby"`` (see the broker's
    consumer for what it can know of it); ``None`` for the others."""


class BusStats(msgspec.Struct, frozen=True, kw_only=True):
    """A bus, now: its mode, its broker's counters and every actor's."""

    mode: str
    """``"in_memory"`` or ``"rabbitmq"``: the broker in use (or asked for, before start)."""
    closed: bool
    """Whether ``shutdown()`` was called."""
    unroutable: int = 0
    """Messages this bus published that no queue was bound to."""
    broker: BrokerStats | None = None
    """The broker's own counters (over RabbitMQ also the node in use, reconnects,
    unavailable queues); ``None`` before start."""
    actors: dict[str, ActorStats] = {}
    """Each actor of this bus by name; a second instance of a name is ``name#2``, and so on."""


def actor_stats(cell: ActorCell) -> ActorStats:
    """The snapshot of one cell."""
    counters = cell.stats
    mailbox = cell.mailbox
    role: str | None = None
    if cell.queue_spec.single_active:
        consumer = cell.consumer
        role = "active" if consumer is not None and consumer.active else "standby"
    return ActorStats(
        state=str(cell.state),
        processed=counters.processed,
        failed=counters.failed,
        retried=counters.retried,
        dead_lettered=counters.dead_lettered,
        restarts=counters.restarts,
        mailbox=len(mailbox),
        conflated=mailbox.conflated if isinstance(mailbox, ConflatingMailbox) else 0,
        busy=cell.busy,
        role=role,
    )
