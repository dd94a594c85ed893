"""The publishing face of ``AsyncMessageBus``: publish, ask, and the bus's own messages.

A mixin of :class:`~actorbus.bus.AsyncMessageBus` (which holds the parts it
uses): every publish builds a validated envelope (``messages.make_envelope``)
and hands it to the runtime's publisher, on the hot path without a coroutine
of its own when the broker can take it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from threading import get_ident
from typing import Any

import msgspec

from .background import Background
from .control import STOP_TYPE, StopControl
from .errors import BusClosed
from .messages import Envelope, make_envelope, validate_data, validate_type
from .runtime import Runtime
from .shutdown import BusParts

__all__ = ["BusPublishing"]


class BusPublishing:
    """Publish, publish soon, ask, and the bus's announcements and stop requests."""

    source: str
    _parts: BusParts | None
    _loop: asyncio.AbstractEventLoop | None
    _thread: int
    _closed: bool
    _background: Background
    _announcements: Background
    _stops: StopControl
    start: Callable[[], Awaitable[None]]
    _ready: Callable[[], Awaitable[Runtime]]

    async def request_stop(self, reason: str = "stop requested") -> None:
        """Ask every process on this prefix (every other bus) to wind down; see ``control``."""
        await self._ready()
        await self.publish(STOP_TYPE, {"reason": reason, "from": self._stops.asker})

    def envelope(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
    ) -> Envelope:
        """Build a validated envelope as this bus would publish it (raises on bad input)."""
        return make_envelope(
            message_type,
            data,
            source=source or self.source,
            correlation_id=correlation_id,
            headers=headers,
        )

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
        mandatory: bool = False,
    ) -> str:
        """Publish a message; return its id once the broker has it.

        In memory, waits while the receivers are at their prefetch (flow control).
        With ``mandatory``, raises ``Unroutable`` when nobody is bound to the type.
        """
        parts, loop = self._parts, self._loop
        # On the bus's loop? Its thread with its loop running says so cheaply (a thread
        # runs one loop at a time; see actorbus._loops).
        if parts is None or loop is None or get_ident() != self._thread or not loop.is_running():
            await self.start()  # (raises BusClosed after shutdown, RuntimeError on another loop)
            assert self._parts is not None
            parts = self._parts
        elif self._closed:
            raise BusClosed("the message bus was shut down")
        envelope = make_envelope(
            message_type,
            data,
            source=source or self.source,
            correlation_id=correlation_id,
            headers=headers,
        )
        pending = parts.runtime.publisher.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending
        return envelope.id

    async def publish_envelope(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish an envelope built beforehand (by :meth:`envelope`), checked as any publish.

        An unknown type raises ``UnknownMessageType``, data not matching the type's
        schema ``SchemaError``.
        """
        data = validate_data(validate_type(envelope.type), envelope.data)
        if data is not envelope.data:
            envelope = msgspec.structs.replace(envelope, data=data)
        runtime = await self._ready()
        await runtime.publisher.publish(envelope, mandatory=mandatory)

    def publish_soon(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish in the background (from the bus's own loop); shutdown waits for it.

        A failure (``Unroutable`` for a ``mandatory`` one nobody is bound to) is logged.
        """
        if self._closed:
            raise BusClosed("the message bus was shut down")
        self._background.start(self.publish_envelope(envelope, mandatory=mandatory))

    def _announce(self, message_type: str, data: dict[str, Any]) -> None:
        """Publish a system message (startup, shutdown) in the background.

        Not awaited: a subscriber may live on an event loop that is blocked waiting
        for this very start or shutdown (the sync face called from async code), and
        an announcement must never deadlock the bus. Shutdown gives them a moment.
        """
        assert self._parts is not None
        envelope = make_envelope(message_type, {"source": self.source, **data}, source=self.source)
        self._announcements.start(self._parts.runtime.publisher.publish(envelope))

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request; return the first reply (``AskTimeout`` when none comes in time)."""
        runtime = await self._ready()
        return await runtime.ask(message_type, data, timeout=timeout)
