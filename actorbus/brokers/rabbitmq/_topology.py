"""The record of what a broker declared, and how it looks on RabbitMQ.

:class:`Topology` remembers the subsystem exchanges and the queues (with their
patterns) a broker declared, so they can be declared again, in that order,
on every new connection. It also knows the naming and binding rules:
exchange ``<prefix>.<subsystem>``; a pattern whose first word is a wildcard
(``#``, ``*.signal``) is bound on every subsystem exchange, any other pattern
on its own subsystem's exchange only, which together match exactly as one
topic exchange would.

In passive mode (``declare="passive"``, for users without ``configure``
permission) nothing is created: exchanges and queues are checked with passive
declarations, and a missing one raises :class:`~actorbus.errors.TopologyMissing`.
Bindings are still made (idempotent, and they need only ``read`` on the exchange
and ``write`` on the queue). :meth:`Topology.missing` checks everything at once.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelNotFoundEntity

from ...errors import TopologyMissing
from ...messages import MessageTypes, known_types, subsystem_of
from ..base import QueueSpec
from ._queue_defaults import QueueDefaults

__all__ = ["Topology", "expected_subsystems", "leading_wildcard", "missing_error"]


def expected_subsystems() -> set[str]:
    """The subsystems whose exchanges a broker declares at connect: every known type's."""
    return {subsystem_of(t) for t in known_types()} | {t.subsystem for t in MessageTypes}


def leading_wildcard(pattern: str) -> bool:
    """Whether a pattern's first word is ``*`` or ``#`` (it may match any subsystem)."""
    return subsystem_of(pattern) in ("*", "#")


class Topology:
    """Exchanges and queues declared by one broker, and how to declare them."""

    def __init__(
        self,
        prefix: str,
        *,
        idle_queue_expiry: float,
        timeout: float,
        passive: bool = False,
        defaults: QueueDefaults | None = None,
    ) -> None:
        self.prefix = prefix
        """Prefix of exchange names."""
        self.passive = passive
        """Check that exchanges and queues exist instead of declaring them."""
        self.subsystems: set[str] = set()
        """Subsystems whose exchange is declared."""
        self.queues: dict[str, QueueSpec] = {}
        """Declared queues by name, with every pattern bound to them."""
        self.defaults = defaults or QueueDefaults(dead_letter_queue=f"{prefix}.dead_letters")
        """The bus-wide queue type and delivery limit."""
        self._expiry_ms = int(idle_queue_expiry * 1000)
        self._timeout = timeout

    def exchange(self, subsystem: str) -> str:
        """The exchange of a subsystem."""
        return f"{self.prefix}.{subsystem}"

    def exchanges_for(self, pattern: str) -> list[str]:
        """The exchanges a pattern is bound on."""
        if leading_wildcard(pattern):
            return [self.exchange(s) for s in sorted(self.subsystems)]
        return [self.exchange(subsystem_of(pattern))]

    def names(self) -> tuple[list[str], list[str]]:
        """The declared queue names and exchange names."""
        return sorted(self.queues), [self.exchange(s) for s in sorted(self.subsystems)]

    def merged(self, spec: QueueSpec) -> QueueSpec:
        """``spec`` with the patterns already bound to its queue kept first."""
        known = self.queues.get(spec.name)
        if known is None:
            return spec
        patterns = known.patterns + tuple(p for p in spec.patterns if p not in known.patterns)
        return msgspec.structs.replace(known, patterns=patterns)

    def without(self, name: str, pattern: str) -> None:
        """Forget one binding of a queue."""
        known = self.queues.get(name)
        if known is not None:
            self.queues[name] = msgspec.structs.replace(
                known, patterns=tuple(p for p in known.patterns if p != pattern)
            )

    def delivery_limit(self, queue: str) -> int | None:
        """The delivery limit of ``queue``: as declared here, else the bus-wide one."""
        spec = self.queues.get(queue)
        if spec is None:  # declared by another process: assume the same bus-wide options
            return self.defaults.delivery_limit
        if not self.defaults.bounded(spec):
            return None
        limit: int = self.defaults.arguments(spec)["x-delivery-limit"]
        return limit

    def bounded(self, queue: str) -> bool:
        """Whether ``queue`` was declared here with a delivery limit."""
        spec = self.queues.get(queue)
        return spec is not None and self.defaults.bounded(spec)

    def arguments(self, spec: QueueSpec) -> dict[str, Any]:
        """The ``queue.declare`` arguments of a spec."""
        arguments: dict[str, Any] = self.defaults.arguments(spec)
        if spec.max_length is not None:
            arguments["x-max-length"] = spec.max_length
            arguments["x-overflow"] = spec.overflow
        if spec.single_active:
            arguments["x-single-active-consumer"] = True
        if spec.expires is not None:
            arguments["x-expires"] = int(spec.expires * 1000)
        elif not spec.durable:
            arguments["x-expires"] = self._expiry_ms
        return arguments

    async def declare_exchange(self, channel: AbstractChannel, subsystem: str) -> None:
        """Declare a subsystem's durable topic exchange (passive mode: check it exists)."""
        name = self.exchange(subsystem)
        if self.passive:
            try:
                await channel.exchange_declare(exchange=name, passive=True, timeout=self._timeout)
            except ChannelNotFoundEntity:  # the channel is closed; the caller opens another
                raise _missing([f"exchange {name}"]) from None
            return
        await channel.exchange_declare(
            exchange=name, exchange_type="topic", durable=True, timeout=self._timeout
        )

    async def add_subsystem(self, channel: AbstractChannel, subsystem: str) -> None:
        """Declare a new subsystem's exchange and bind the leading-wildcard patterns on it."""
        await self.declare_exchange(channel, subsystem)
        for spec in self.queues.values():
            for pattern in spec.patterns:
                if leading_wildcard(pattern):
                    await channel.queue_bind(
                        spec.name,
                        self.exchange(subsystem),
                        routing_key=pattern,
                        timeout=self._timeout,
                    )
        self.subsystems.add(subsystem)

    async def apply_queue(self, channel: AbstractChannel, spec: QueueSpec) -> None:
        """Declare a queue (passive mode: check it exists) and bind every pattern of it."""
        if self.passive:
            try:
                await channel.queue_declare(spec.name, passive=True, timeout=self._timeout)
            except ChannelNotFoundEntity as exc:  # the channel is closed; the caller opens another
                if "down or inaccessible" in str(exc):
                    raise  # it exists, on a node that is down: unavailable, not missing
                raise _missing([f"queue {spec.name}"]) from None
        else:
            await channel.queue_declare(
                spec.name,
                durable=spec.durable or self.defaults.type_of(spec) == "quorum",
                arguments=self.arguments(spec),
                timeout=self._timeout,
            )
        for pattern in spec.patterns:
            for exchange in self.exchanges_for(pattern):
                await channel.queue_bind(
                    spec.name, exchange, routing_key=pattern, timeout=self._timeout
                )

    async def unbind(self, channel: AbstractChannel, name: str, pattern: str) -> None:
        """Remove the bindings of one pattern of a queue."""
        for exchange in self.exchanges_for(pattern):
            await channel.queue_unbind(name, exchange, routing_key=pattern, timeout=self._timeout)

    async def missing(self, connection: AbstractConnection) -> list[str]:
        """Every recorded exchange and queue that does not exist, checked passively.

        A failed passive declaration closes its channel, so each failure costs a
        fresh channel; the last one is closed before returning.
        """
        checks: list[tuple[str, str]] = [
            ("exchange", self.exchange(s)) for s in sorted(self.subsystems)
        ] + [("queue", name) for name in sorted(self.queues)]
        missing: list[str] = []
        channel: AbstractChannel | None = None
        for kind, name in checks:
            if channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=False, timeout=self._timeout)
            try:
                if kind == "exchange":
                    await channel.exchange_declare(
                        exchange=name, passive=True, timeout=self._timeout
                    )
                else:
                    await channel.queue_declare(name, passive=True, timeout=self._timeout)
            except ChannelNotFoundEntity:
                missing.append(f"{kind} {name}")
        if channel is not None and not channel.is_closed:
            await channel.close()
        return missing


def _missing(missing: list[str]) -> TopologyMissing:
    return TopologyMissing(
        f"passive mode: {', '.join(missing)} missing on the broker; declare "
        "it (`actorbus topology` prints the definitions to import)",
        missing,
    )


def missing_error(missing: list[str], where: str) -> TopologyMissing:
    """The error listing everything missing on the broker at ``where``."""
    return TopologyMissing(
        f"passive mode: {len(missing)} object(s) the bus expects are missing on RabbitMQ at "
        f"{where}: {', '.join(missing)}. Import the definitions `actorbus topology` prints "
        "(rabbitmqctl import_definitions), or let the bus declare them (declare='create')",
        missing,
    )
