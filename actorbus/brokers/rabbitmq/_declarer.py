"""``Declarer``: runs topology operations on a channel of their own, across outages.

Declarations, deletions and bindings run on one topology channel (opened again when
RabbitMQ closes it, as it does on a refused declaration), retried while the link is
down (each try waits for the link, and tries are spaced by ``LINK_RETRY_BACKOFF``),
within ``publish_timeout``. A queue that exists with other arguments raises
``QueueMismatch`` listing every difference; a refused permission, or a name the
client refuses, a ``ConfigurationError``. On a fresh connection the recorded
topology is declared again (:meth:`Declarer.replay`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)

from ...errors import ActorbusError, ConfigurationError, PublishError, PublishTimeout, QueueMismatch
from ...messages import subsystem_of
from ..base import QueueSpec
from ._link import Link
from ._mismatch import find_differences, mismatch_error, parse_refusal
from ._refusals import refused_declaration
from ._registry import ConsumerRegistry
from ._sender import LINK_ERRORS, LINK_RETRY_BACKOFF
from ._topology import Topology, leading_wildcard, missing_error

__all__ = ["Declarer", "TopologyFace"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


class Declarer:
    """The topology channel of one broker and the operations run on it."""

    def __init__(
        self,
        topo: Topology,
        link: Link,
        *,
        timeout: float,
        publish_timeout: Callable[[], float],
        closed: Callable[[], bool],
    ) -> None:
        self._topo = topo
        self._link = link
        self._timeout = timeout
        self._publish_timeout = publish_timeout
        self._closed = closed
        self._topology: AbstractChannel | None = None

    async def replay(self, connection: AbstractConnection, consumers: ConsumerRegistry) -> None:
        """Declare the recorded exchanges and queues again on a fresh connection.

        The queues the node cannot serve are noted afresh in ``consumers.unavailable``.
        """
        if self._topo.passive:
            missing = await self._topo.missing(connection)
            if missing:
                raise missing_error(missing, str(self._link.settings))
        self._topology = await connection.channel(publisher_confirms=False)
        for subsystem in sorted(self._topo.subsystems):
            await self._topo.declare_exchange(self._topology, subsystem)
        consumers.unavailable.clear()
        for spec in list(self._topo.queues.values()):
            try:
                await self._topo.apply_queue(self._topology, spec)
            except ChannelPreconditionFailed as exc:  # declared elsewhere with other options
                logger.error("cannot declare %s again as recorded: %s", spec.name, exc)
                self._topology = await connection.channel(publisher_confirms=False)
            except ChannelNotFoundEntity as exc:  # a classic queue whose node is down
                consumers.queue_unavailable(spec.name, exc)
                self._topology = await connection.channel(publisher_confirms=False)

    async def channel(self) -> AbstractChannel:
        """The topology channel, opened again if closed (waits for the link)."""
        connection, _ = await self.wait_link()
        channel = self._topology
        if channel is None or channel.is_closed:
            channel = self._topology = await connection.channel(
                publisher_confirms=False, timeout=self._timeout
            )
        return channel

    async def wait_link(self) -> tuple[AbstractConnection, AbstractChannel]:
        """The connection and publishing channel, once up (``PublishTimeout`` if too long)."""
        if self._closed():
            raise PublishError("the RabbitMQ broker was closed")
        timeout = self._publish_timeout()
        try:
            async with asyncio.timeout(timeout):
                return await self._link.wait_ready()
        except TimeoutError:
            raise PublishTimeout(
                f"RabbitMQ at {self._link.settings} not reachable for {timeout}s"
            ) from None

    async def run(self, operation: Any, spec: QueueSpec | None = None) -> None:
        """Run ``operation(channel)`` on the topology channel, retrying across outages.

        A queue declaration (``spec``) that RabbitMQ refuses because the queue exists
        with other arguments raises ``QueueMismatch`` listing every difference.
        """
        deadline = time.monotonic() + self._publish_timeout()
        waits = LINK_RETRY_BACKOFF.delays()
        while True:
            channel = await self.channel()
            try:
                await operation(channel)
                return
            except ActorbusError:  # TopologyMissing in passive mode: not an outage to wait out
                raise
            except ChannelPreconditionFailed as exc:
                if spec is not None and parse_refusal(str(exc)) is not None:
                    raise await self._mismatch(spec, str(exc)) from None
                raise ConfigurationError(f"RabbitMQ refused a declaration: {exc}") from None
            except ChannelAccessRefused as exc:
                raise refused_declaration(exc, self._link.settings) from None
            except ValueError as exc:  # the AMQP client refuses the name
                raise ConfigurationError(f"not a valid AMQP name: {exc}") from None
            except LINK_ERRORS:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(next(waits))

    async def ensure_subsystem(self, subsystem: str) -> str:
        """Declare a new subsystem's exchange (binding leading-wildcard patterns on it).

        Returns the exchange's name.
        """
        if subsystem not in self._topo.subsystems:
            await self.run(lambda channel: self._topo.add_subsystem(channel, subsystem))
        return self._topo.exchange(subsystem)

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing, bind it to every pattern of ``spec``, record it."""
        for pattern in spec.patterns:
            if not leading_wildcard(pattern):
                await self.ensure_subsystem(subsystem_of(pattern))
        spec = self._topo.merged(spec)
        await self.run(lambda channel: self._topo.apply_queue(channel, spec), spec)
        self._topo.queues[spec.name] = spec

    async def delete_queue(self, name: str) -> None:
        """Forget a queue and delete it (a missing queue is not an error)."""
        self._topo.queues.pop(name, None)
        await self.run(lambda channel: channel.queue_delete(name, timeout=self._timeout))

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Forget one binding of a queue and remove it."""
        self._topo.without(name, pattern)
        await self.run(lambda channel: self._topo.unbind(channel, name, pattern))

    async def _mismatch(self, spec: QueueSpec, refusal: str) -> QueueMismatch:
        async def fresh_channel() -> AbstractChannel:
            self._topology = None
            return await self.channel()

        differences = await find_differences(
            fresh_channel,
            spec.name,
            durable=spec.durable or self._topo.defaults.type_of(spec) == "quorum",
            arguments=self._topo.arguments(spec),
            first=refusal,
        )
        return mismatch_error(spec.name, differences, refusal)

    async def queue_length(self, name: str) -> int:
        """Messages ready in the queue, not yet delivered to a consumer (0 for no queue)."""
        channel = await self.channel()
        try:
            ok = await channel.queue_declare(name, passive=True, timeout=self._timeout)
        except ChannelNotFoundEntity:  # closes the channel; the next operation opens another
            return 0
        return int(ok.message_count or 0)


class TopologyFace:
    """The broker's topology methods (``MessageBroker``), over its :class:`Declarer`."""

    _declarer: Declarer
    _registry: ConsumerRegistry

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Create the queue if missing and bind it to every pattern of ``spec``."""
        await self._declarer.declare_queue(spec)

    async def delete_queue(self, name: str) -> None:
        """Cancel this broker's consumers of the queue, then delete it."""
        await self._registry.cancel_queue(name)
        await self._declarer.delete_queue(name)

    async def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding of a queue."""
        await self._declarer.unbind_queue(name, pattern)

    async def queue_length(self, name: str) -> int:
        """Messages ready in the queue, not yet delivered to a consumer (0 for no queue)."""
        return await self._declarer.queue_length(name)
