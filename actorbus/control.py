"""System control messages: one stop for a system spread over processes.

Every bus listens for ``system.stop`` on a queue of its own (``<prefix>.control.<source>.<id>``,
not durable, deleted at shutdown; over RabbitMQ it also expires by itself once
its process is gone), bound on its prefix's ``system`` exchange. So one
message published there reaches every running bus of the prefix, in every
process, once each. :func:`request_stop` (and ``actorbus stop``) publishes it.

On receipt a bus sets :attr:`AsyncMessageBus.stop_requested` and calls its
stop listeners (``bus.add_stop_listener``); it does not shut itself down: the
program owns its life, and winds down its own way (``actorbus run`` stops its
feed, drains, prints its summary). A program with nothing to finish can simply
``await bus.stop_requested.wait()`` and then ``await bus.shutdown()``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from .brokers.base import ConsumerHandle, FunctionSink, MessageBroker, QueueSpec
from .errors import ActorbusError
from .messages import Delivery, Envelope, register_message_type

__all__ = ["STOP_TYPE", "ControlListener", "StopControl"]

logger = logging.getLogger("actorbus.control")

STOP_TYPE = register_message_type("system.stop")
"""The message type asking every process of a prefix to wind down.

Data: ``reason`` (told to every process) and ``from`` (the asking bus's control id)."""


class ControlListener:
    """A bus's own control queue and consumer; calls ``on_stop`` for each stop request."""

    def __init__(
        self, broker: MessageBroker, prefix: str, source: str, on_stop: Callable[[Envelope], Any]
    ) -> None:
        self._broker = broker
        self._on_stop = on_stop
        self.id = uuid.uuid4().hex[:12]
        """This bus's identity in control messages (``from``): its own requests are ignored."""
        self.queue = f"{prefix}.control.{source}.{self.id}"
        """The control queue of this bus."""
        self._consumer: ConsumerHandle | None = None

    async def open(self) -> None:
        """Declare the control queue, bound to ``system.stop``, and consume it.

        A bus that may not declare queues (``declare="passive"``, or a user whose
        permissions refuse it) runs without one: it does not hear ``system.stop``,
        and says so in a warning; nothing else depends on it.
        """
        if self._broker.declare == "passive":
            logger.warning(
                "passive mode: this bus declares no control queue and will not hear "
                "`actorbus stop`; stop its process the usual way"
            )
            return
        try:
            await self._broker.declare_queue(
                QueueSpec(name=self.queue, patterns=(STOP_TYPE,), durable=False)
            )
            self._consumer = await self._broker.consume(
                self.queue, FunctionSink(self._deliver), prefetch=10, owner="control"
            )
        except ActorbusError as exc:
            logger.warning("no control queue (%s): this bus will not hear `actorbus stop`", exc)

    async def _deliver(self, delivery: Delivery) -> None:
        delivery.ack()
        envelope = delivery.envelope
        data = envelope.data if isinstance(envelope.data, dict) else {}
        if data.get("from") == self.id:
            return  # our own request: the asking bus is not asked
        logger.warning("stop requested by %s: %s", envelope.source, data.get("reason", ""))
        self._on_stop(envelope)

    async def close(self) -> None:
        """Stop consuming and delete the control queue."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return  # never opened: nothing was declared
        await consumer.cancel()
        try:
            await self._broker.delete_queue(self.queue)
        except Exception:
            logger.debug("could not delete control queue %s", self.queue, exc_info=True)


class StopControl:
    """One bus's part in the one stop: its control listener, stop listeners and event."""

    def __init__(self, prefix: str, source: str) -> None:
        self._prefix = prefix
        self._source = source
        self.requested = asyncio.Event()
        """Set when a ``system.stop`` for this prefix arrived."""
        self._listeners: list[Callable[[str], Any]] = []
        self._control: ControlListener | None = None

    @property
    def asker(self) -> str:
        """This bus's control id (``from`` of its own stop requests); empty before start."""
        return self._control.id if self._control is not None else ""

    def add_listener(self, listener: Callable[[str], Any]) -> None:
        """Call ``listener(reason)`` when a ``system.stop`` arrives."""
        self._listeners.append(listener)

    async def reopen(self, broker: MessageBroker | None) -> None:
        """Close the control listener, if any; with ``broker``, open a new one there."""
        if self._control is not None:
            await self._control.close()
        if broker is not None:
            self._control = ControlListener(broker, self._prefix, self._source, self._on_stop)
            await self._control.open()

    async def close(self) -> None:
        """Close the control listener (at shutdown)."""
        if self._control is not None:
            await self._control.close()

    def _on_stop(self, envelope: Envelope) -> None:
        reason = envelope.data.get("reason", "") if isinstance(envelope.data, dict) else ""
        self.requested.set()
        for listener in list(self._listeners):
            try:
                listener(str(reason))
            except Exception:
                logger.exception("a stop listener failed")
