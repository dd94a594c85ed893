"""The record of what a broker declared, and how it looks on RabbitMQ.

:class:`Topology` remembers the subsystem exchanges and the queues (with their
patterns) a broker declared, so they can be declared again, in that order,
on every new connection. It also knows the naming and binding rules:
exchange ``<prefix>.<subsystem>``; a pattern whose first word is a wildcard
(``#``, ``*.signal``) is bound on every subsystem exchange, any other pattern
on its own subsystem's exchange only, which together match exactly as one
topic exchange would.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiormq.abc import AbstractChannel

from ...messages import subsystem_of
from ..base import QueueSpec

__all__ = ["Topology", "leading_wildcard"]


def leading_wildcard(pattern: str) -> bool:
    """Whether a pattern's first word is ``*`` or ``#`` (it may match any subsystem)."""
    return subsystem_of(pattern) in ("*", "#")


class Topology:
    """Exchanges and queues declared by one broker, and how to declare them."""

    def __init__(self, prefix: str, *, idle_queue_expiry: float, timeout: float) -> None:
        self.prefix = prefix
        """Prefix of exchange names."""
        self.subsystems: set[str] = set()
        """Subsystems whose exchange is declared."""
        self.queues: dict[str, QueueSpec] = {}
        """Declared queues by name, with every pattern bound to them."""
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

    def arguments(self, spec: QueueSpec) -> dict[str, Any]:
        """The ``queue.declare`` arguments of a spec."""
        arguments: dict[str, Any] = {}
        if spec.quorum:
            arguments["x-queue-type"] = "quorum"
        if spec.max_length is not None:
            arguments["x-max-length"] = spec.max_length
            arguments["x-overflow"] = spec.overflow
        if spec.expires is not None:
            arguments["x-expires"] = int(spec.expires * 1000)
        elif not spec.durable:
            arguments["x-expires"] = self._expiry_ms
        return arguments

    async def declare_exchange(self, channel: AbstractChannel, subsystem: str) -> None:
        """Declare a subsystem's durable topic exchange."""
        await channel.exchange_declare(
            exchange=self.exchange(subsystem),
            exchange_type="topic",
            durable=True,
            timeout=self._timeout,
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
        """Declare a queue and bind every pattern of it."""
        await channel.queue_declare(
            spec.name,
            durable=spec.durable or spec.quorum,
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
