"""``ConsumerRegistry``: the broker's consumers, their recovery and health check.

Every consumer started is recorded; after a reconnect each is started again on the
fresh connection, and the link's periodic check restarts any whose channel or
registration was lost. A queue the node in use cannot serve (a classic queue on a
lost node) is noted in ``unavailable`` and its consumer waits until it is back.

The registry also remembers who consumes each queue (the ``owner`` a consumer was
started with), so that messages RabbitMQ dead-lettered from that queue can be
filed under it (:meth:`ConsumerRegistry.owner_of`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity, ChannelPreconditionFailed

from ...errors import ConfigurationError, Unroutable
from ._consumer import RabbitConsumer
from ._sender import LINK_ERRORS, LINK_RETRY_BACKOFF
from ._topology import Topology

__all__ = ["ConsumerRegistry"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


class ConsumerRegistry:
    """The consumers of one broker and the queues it cannot serve now."""

    def __init__(
        self,
        topo: Topology,
        *,
        topology_channel: Callable[[], Awaitable[AbstractChannel]],
        node: Callable[[], str],
    ) -> None:
        self._topo = topo
        self._topology_channel = topology_channel
        self._node = node
        self.consumers: list[RabbitConsumer] = []
        """Consumers started and not yet cancelled."""
        self.unavailable: dict[str, str] = {}
        """Queues the node in use cannot serve now, and why."""
        self.owners: dict[str, str] = {}
        """Who consumes each queue this broker consumed (the last consumer's owner).

        Kept after the consumer is cancelled (an actor being restarted still owns its
        queue's dead letters); forgotten when the queue is deleted.
        """

    def owner_of(self, queue: str) -> str:
        """The owner of this broker's consumer of ``queue``, else the queue's own name."""
        return self.owners.get(queue, queue)

    async def start(
        self,
        consumer: RabbitConsumer,
        wait_link: Callable[[], Awaitable[tuple[AbstractConnection, AbstractChannel]]],
        *,
        deadline: float,
    ) -> None:
        """Start ``consumer`` (retrying across outages until ``deadline``) and record it."""
        queue = consumer.queue
        waits = LINK_RETRY_BACKOFF.delays()
        while True:
            connection, _ = await wait_link()
            try:
                await consumer.start(connection)
                break
            except ChannelPreconditionFailed as exc:
                raise ConfigurationError(f"cannot consume {queue!r}: {exc}") from None
            except AMQPError as exc:
                if not connection.is_closed or time.monotonic() > deadline:
                    raise Unroutable(f"cannot consume {queue!r}: {exc}") from None
            except LINK_ERRORS:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(next(waits))
        self.consumers.append(consumer)
        self.owners[queue] = consumer.owner

    def forget(self, consumer: RabbitConsumer) -> None:
        """Drop a consumer that was cancelled."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    async def cancel_queue(self, queue: str) -> None:
        """Cancel the consumers of ``queue`` (it is being deleted: its owner is forgotten)."""
        for consumer in [c for c in self.consumers if c.queue == queue]:
            await consumer.cancel()
        self.owners.pop(queue, None)

    async def cancel_all(self) -> None:
        """Cancel every consumer (settling what was handled)."""
        for consumer in list(self.consumers):
            await consumer.cancel()

    def queue_unavailable(self, queue: str, exc: Exception) -> None:
        """Note (and say loudly) that the node in use cannot serve ``queue`` now."""
        reason = str(exc)
        self.unavailable[queue] = reason
        logger.error(
            "queue %s is unavailable on %s: %s; its consumer stops until the queue is back "
            "(a classic queue lives on one node only: use quorum queues on a cluster)",
            queue,
            self._node(),
            reason,
        )

    async def restore(self, connection: AbstractConnection) -> None:
        """Start every consumer again on a fresh connection; raise if any did not come back."""
        for consumer in list(self.consumers):
            if consumer.cancelled or consumer.paused or consumer.queue in self.unavailable:
                continue
            try:
                await consumer.start(connection)
            except ChannelNotFoundEntity as exc:
                self.queue_unavailable(consumer.queue, exc)
        broken = [c for c in self.consumers if not c.healthy and c.queue not in self.unavailable]
        if broken:
            raise ConnectionError(f"{len(broken)} consumer(s) did not come back")

    async def check(self, connection: AbstractConnection | None) -> None:
        """Restart any consumer whose channel or registration was lost."""
        if connection is None:
            return
        for consumer in list(self.consumers):
            if not consumer.healthy:
                queue = consumer.queue
                if queue not in self.unavailable:
                    logger.warning("consumer of %s was lost; restarting it", queue)
                spec = self._topo.queues.get(queue)
                try:
                    if spec is not None:
                        await self._topo.apply_queue(await self._topology_channel(), spec)
                    await consumer.start(connection)
                except ChannelNotFoundEntity as exc:
                    self.queue_unavailable(queue, exc)
                    continue
                if self.unavailable.pop(queue, None) is not None:
                    logger.warning("queue %s is available again; consuming", queue)
