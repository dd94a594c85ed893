"""Making the bus's broker: by mode or URL, and the fallback to memory when RabbitMQ is down.

:class:`BrokerFactory` is the one way the bus gets a broker. The RabbitMQ broker is
imported only when asked for, so an in-memory bus never loads ``aiormq``.
:meth:`BrokerFactory.connect` connects a broker with the fallback rule: a broker
that does not answer (``BrokerUnavailable``) is replaced by an in-memory one when
``fallback`` is on; one that answers but refuses (``BrokerRefused``: login, virtual
host, TLS, permissions) always raises, since running in memory would hide a
configuration or security mistake.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from ..codec import Codec
from ..config import Mode, resolve_url
from ..errors import BrokerRefused, BrokerUnavailable
from ._unroutable import UnroutablePolicy
from .base import MessageBroker
from .memory import InMemoryBroker, InMemoryServer

__all__ = ["BrokerFactory"]

logger = logging.getLogger("actorbus.bus")


@dataclass(frozen=True)
class BrokerFactory:
    """What the bus's brokers are made of: its prefix, codec and broker options."""

    prefix: str
    """Prefix of exchange and queue names."""
    codec: Codec
    """Codec of message bodies."""
    url: str | list[str] | None = None
    """RabbitMQ URL(s); ``None``: the environment's or the default (see ``config``)."""
    server: InMemoryServer | None = None
    """The in-memory server to share (``None``: the process-wide one)."""
    connect_timeout: float = 5.0
    """Seconds a RabbitMQ connection attempt may take."""
    unroutable: UnroutablePolicy = "drop"
    """What becomes of messages no queue is bound to."""
    declare: Literal["create", "passive"] = "create"
    """Declare the RabbitMQ topology, or only check it."""
    queue_options: dict[str, Any] = field(default_factory=dict)
    """``queue_type``, ``delivery_limit`` and ``shuffle_nodes`` for the RabbitMQ broker."""

    def memory(self) -> InMemoryBroker:
        """A new in-memory broker on this factory's server."""
        return InMemoryBroker(
            self.server, prefix=self.prefix, codec=self.codec, unroutable=self.unroutable
        )

    def make(self, mode: Mode) -> MessageBroker:
        """A new, unconnected broker for ``mode``."""
        if mode == "in_memory":
            return self.memory()
        from .rabbitmq import AsyncRabbitMQBroker  # imported only when asked for

        return AsyncRabbitMQBroker(
            url=self.url if self.url is not None else resolve_url(None),
            prefix=self.prefix,
            codec=self.codec,
            connect_timeout=self.connect_timeout,
            unroutable=self.unroutable,
            declare=self.declare,
            **self.queue_options,
        )

    async def connect(
        self, broker: MessageBroker, *, fallback: bool, heal: bool
    ) -> tuple[MessageBroker, MessageBroker | None]:
        """Connect ``broker``; return the broker in use and the one given up on, if any.

        An unreachable RabbitMQ broker with ``fallback`` gives a connected in-memory
        broker and itself as the second value (to be healed later, see ``healing``);
        otherwise its ``BrokerUnavailable`` is raised. ``BrokerRefused`` always is.
        """
        try:
            await broker.connect()
        except BrokerRefused:
            raise  # wrong credentials or vhost: a mistake to fix, not an outage to ride out
        except BrokerUnavailable as exc:
            if not fallback or broker.name == "in_memory":
                raise
            logger.warning(
                "RabbitMQ is unreachable (%s): running in memory instead%s",
                exc,
                "; trying it again in the background" if heal else "",
            )
            memory = self.memory()
            await memory.connect()
            return memory, broker
        return broker, None
