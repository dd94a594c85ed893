"""Moving a queue to a new declaration without losing a message.

RabbitMQ cannot change the arguments of an existing queue (single active
consumer, queue type, max length...): the queue must be deleted and declared
again, and deleting it deletes its messages. :func:`migrate_queue` does it
without losing any:

1. the queue must exist and have no consumer (stop the processes using it);
2. a holding queue ``<name>.migrating`` (durable, classic) is declared and bound
   to the queue's patterns, so messages published meanwhile are kept;
3. every message of the queue is moved to the holding queue: fetched with
   ``basic.get``, published again with its properties and body, and
   acknowledged only once RabbitMQ confirmed the copy;
4. the queue is deleted only if empty (a message that arrived meanwhile makes
   the delete fail and step 3 run again), declared with the new arguments and
   bound to its patterns;
5. the holding queue is unbound, drained back the same way, and deleted if empty.

A failure at any step leaves every message in one of the two queues; running
the migration again resumes it (the holding queue is reused). While both
queues are bound (steps 2-4 and 4-5 overlap by one binding), a message published
at that moment can land in both: a duplicate with the same message id, never a
loss. Messages already in the queue keep their order; ones published during the
migration may interleave with them.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq
import msgspec
from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import (
    AMQPConnectionError,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)
from pamqp.commands import Basic

from ...errors import BrokerUnavailable, ConfigurationError
from ...messages import MessageTypes, known_types, subsystem_of
from ..base import QueueSpec
from ._params import ConnectionSettings
from ._topology import Topology

__all__ = ["MigrationResult", "migrate_queue"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

HOLDING_SUFFIX = ".migrating"
"""The holding queue's name is the queue's name with this suffix."""
ATTEMPTS = 20
"""Most rounds of draining and deleting before giving up (a queue published to non-stop)."""


class MigrationResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a migration moved."""

    queue: str
    """The queue migrated."""
    moved_out: int
    """Messages moved from the old queue to the holding queue."""
    moved_back: int
    """Messages moved from the holding queue to the new queue."""
    arguments: dict[str, object]
    """The arguments the queue has now."""


async def migrate_queue(
    spec: QueueSpec,
    *,
    url: str | None = None,
    prefix: str = "trading",
    timeout: float = 10.0,
) -> MigrationResult:
    """Declare ``spec`` in place of the existing queue of that name, keeping every message.

    ``spec.patterns`` are the bindings the queue must have (an actor's handled
    types); the exchanges are ``<prefix>.<subsystem>``. See the module docs.
    Raises ``ConfigurationError`` when the queue is missing or still consumed.
    """
    settings = ConnectionSettings(url)
    topology = Topology(prefix, idle_queue_expiry=300.0, timeout=timeout)
    topology.subsystems.update(subsystem_of(t) for t in known_types())
    topology.subsystems.update(t.subsystem for t in MessageTypes)
    topology.subsystems.update(
        subsystem_of(p) for p in spec.patterns if subsystem_of(p) not in ("*", "#")
    )
    holding = QueueSpec(name=spec.name + HOLDING_SUFFIX, patterns=spec.patterns)
    try:
        async with asyncio.timeout(timeout):
            connection = await aiormq.connect(settings.amqp_url(), context=settings.ssl_context)
    except (OSError, TimeoutError, AMQPConnectionError) as exc:
        raise BrokerUnavailable(f"cannot reach RabbitMQ at {settings}: {exc!r}") from None
    try:
        moved_out = 0
        if await _exists(connection, spec.name, timeout, unused=True):
            channel = await connection.channel(publisher_confirms=True)
            for subsystem in sorted(topology.subsystems):
                await topology.declare_exchange(channel, subsystem)
            await topology.apply_queue(channel, holding)
            moved_out = await _move_all_then_delete(connection, spec.name, holding.name, timeout)
        elif not await _exists(connection, holding.name, timeout):
            raise ConfigurationError(f"queue {spec.name!r} does not exist: nothing to migrate")
        # else: an earlier migration stopped after the delete; finish it
        channel = await connection.channel(publisher_confirms=True)
        await topology.apply_queue(channel, spec)
        for pattern in holding.patterns:
            await topology.unbind(channel, holding.name, pattern)
        moved_back = await _move_all_then_delete(connection, holding.name, spec.name, timeout)
    finally:
        await connection.close()
    logger.info(
        "queue %s migrated: %d message(s) moved out and %d back", spec.name, moved_out, moved_back
    )
    return MigrationResult(
        queue=spec.name,
        moved_out=moved_out,
        moved_back=moved_back,
        arguments=dict(topology.arguments(spec)),
    )


async def _exists(
    connection: AbstractConnection, name: str, timeout: float, *, unused: bool = False
) -> bool:
    """Whether queue ``name`` exists; with ``unused``, refuse one that has consumers."""
    channel = await connection.channel()
    try:
        ok = await channel.queue_declare(name, passive=True, timeout=timeout)
    except ChannelNotFoundEntity:
        return False
    await channel.close()
    if unused and ok.consumer_count:
        raise ConfigurationError(
            f"queue {name!r} has {ok.consumer_count} consumer(s): stop the processes "
            "consuming it first (actorbus stop), then migrate"
        )
    return True


async def _move_all_then_delete(
    connection: AbstractConnection, source: str, target: str, timeout: float
) -> int:
    """Move every message of ``source`` to ``target``, then delete ``source`` once empty."""
    moved = 0
    for _ in range(ATTEMPTS):
        channel = await connection.channel(publisher_confirms=True)
        moved += await _move(channel, source, target, timeout)
        try:
            await channel.queue_delete(source, if_empty=True, timeout=timeout)
            return moved
        except ChannelPreconditionFailed:  # a message arrived since: move it too
            continue
        except ChannelNotFoundEntity:
            return moved
    raise ConfigurationError(
        f"queue {source!r} kept receiving messages: stop its publishers, then migrate again "
        "(every message is still in it or in the other queue)"
    )


async def _move(channel: AbstractChannel, source: str, target: str, timeout: float) -> int:
    moved = 0
    while True:
        message = await channel.basic_get(source, no_ack=False, timeout=timeout)
        if isinstance(message.delivery, Basic.GetEmpty):
            return moved
        confirm = await channel.basic_publish(
            message.body,
            exchange="",
            routing_key=target,
            properties=message.header.properties,
            mandatory=True,
            timeout=timeout,
        )
        if not isinstance(confirm, Basic.Ack):
            raise ConfigurationError(f"RabbitMQ did not confirm a message moved to {target!r}")
        await channel.basic_ack(message.delivery_tag or 0)
        moved += 1
