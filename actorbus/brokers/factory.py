"""Making a broker: by mode or URL, and the fallback to memory when RabbitMQ is down.

:class:`BrokerFactory` is the one way to get a broker: the bus, the CLI's commands,
the benchmarks and the demo all make theirs here. The RabbitMQ broker is imported
only when asked for, so an in-memory bus never loads ``aiormq``. Any of the RabbitMQ
broker's options (batching, timeouts, the publish path...) reaches it through
``rabbitmq_options``. :meth:`BrokerFactory.connect` connects a broker with the
fallback rule: a broker that does not answer (``BrokerUnavailable``) is replaced
by an in-memory one when ``fallback`` is on; one that answers but refuses
(``BrokerRefused``: login, virtual host, TLS, permissions) always raises, since
running in memory would hide a configuration or security mistake.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..codec import Codec
from ..config import Mode, resolve_url
from ..errors import BrokerRefused, BrokerUnavailable, ConfigurationError
from ._unroutable import UnroutablePolicy
from .base import MessageBroker
from .memory import InMemoryBroker, InMemoryServer

if TYPE_CHECKING:
    from .rabbitmq import AsyncRabbitMQBroker

__all__ = ["BrokerFactory"]

logger = logging.getLogger("actorbus.bus")

_OWN_FIELDS = ("url", "prefix", "codec", "connect_timeout", "unroutable", "declare")
"""RabbitMQ options the factory sets from its own fields (and both brokers share)."""


@dataclass(frozen=True)
class BrokerFactory:
    """What brokers are made of: a prefix, a codec, and the options of each broker."""

    prefix: str
    """Prefix of exchange and queue names."""
    codec: Codec = field(default_factory=Codec)
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
    rabbitmq_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of :class:`~actorbus.brokers.rabbitmq.AsyncRabbitMQBroker`.

    Any of them but those this factory has a field for (``url``, ``prefix``,
    ``codec``, ``connect_timeout``, ``unroutable``, ``declare``), which raise
    ``ConfigurationError`` here, as an unknown option does when the broker is made.
    """

    def __post_init__(self) -> None:
        own = sorted(set(self.rabbitmq_options) & set(_OWN_FIELDS))
        if own:
            raise ConfigurationError(
                f"RabbitMQ option(s) {', '.join(own)} are the factory's (and the bus's) own "
                "arguments: give them there, not among the broker options"
            )

    def memory(self) -> InMemoryBroker:
        """A new in-memory broker on this factory's server."""
        return InMemoryBroker(
            self.server, prefix=self.prefix, codec=self.codec, unroutable=self.unroutable
        )

    def rabbitmq(self) -> AsyncRabbitMQBroker:
        """A new, unconnected RabbitMQ broker (its module imported now, not before)."""
        from .rabbitmq import AsyncRabbitMQBroker

        options = dict(self.rabbitmq_options)
        unknown = sorted(set(options) - set(inspect.signature(AsyncRabbitMQBroker).parameters))
        if unknown:
            raise ConfigurationError(f"unknown RabbitMQ broker option(s): {', '.join(unknown)}")
        return AsyncRabbitMQBroker(
            url=self.url if self.url is not None else resolve_url(None),
            prefix=self.prefix,
            codec=self.codec,
            connect_timeout=self.connect_timeout,
            unroutable=self.unroutable,
            declare=self.declare,
            **options,
        )

    def make(self, mode: Mode) -> MessageBroker:
        """A new, unconnected broker for ``mode``."""
        return self.memory() if mode == "in_memory" else self.rabbitmq()

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
