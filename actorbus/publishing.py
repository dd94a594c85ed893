"""The outbound path: every envelope a bus or its actors publish goes through a Publisher.

Routing itself is the broker's (a topic exchange per subsystem over RabbitMQ,
the same rules in memory, see ``brokers.base``); the publisher only hands each
envelope to the broker in use, through the publish hooks when telemetry
installed some (``actorbus.hooks``). With no hook installed, a publish is the
broker's own fast path (``MessageBroker.publish_nowait``) and nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .brokers.base import MessageBroker
from .hooks import Hooks
from .messages import Envelope, log_fields

__all__ = ["Publisher"]

logger = logging.getLogger("actorbus.publishing")


class Publisher:
    """Hands envelopes to one broker, through the publish hooks if any."""

    __slots__ = ("broker", "hooks", "publish_nowait")

    def __init__(self, broker: MessageBroker, hooks: Hooks | None = None) -> None:
        self.broker = broker
        """The broker in use."""
        self.hooks: Hooks | None = None
        """Telemetry called at each publish (and handle), if any."""
        self.publish_nowait: Callable[..., Awaitable[None] | None] = broker.publish_nowait
        """``publish_nowait(envelope, mandatory=False)``: start a publish; return what is
        left to await, or ``None`` when it is done (see ``MessageBroker.publish_nowait``)."""
        self.use(broker, hooks)

    def use(self, broker: MessageBroker, hooks: Hooks | None) -> None:
        """Publish to ``broker`` through ``hooks`` from now on."""
        self.broker, self.hooks = broker, hooks
        direct = broker.publish_nowait
        if hooks is None:
            self.publish_nowait = direct
            return
        on_publish = hooks.on_publish

        def publish_nowait(envelope: Envelope, *, mandatory: bool = False) -> Any:
            try:
                envelope = on_publish(envelope)
            except Exception:
                logger.exception("publish hook failed", extra=log_fields(envelope))
            return direct(envelope, mandatory=mandatory)

        self.publish_nowait = publish_nowait

    async def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish ``envelope``; return once the broker has it."""
        pending = self.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending
