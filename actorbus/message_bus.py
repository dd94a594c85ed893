"""The process-wide default buses, under the names of the system actorbus replaces.

``message_bus`` is a :class:`MessageBus` (sync) and ``get_async_message_bus()``
returns an :class:`AsyncMessageBus`; both pick their mode from
``TRADING_SYSTEM_MESSAGE_BUS_MODE`` and share one broker (the process's
in-memory server, or RabbitMQ), so a message published through one reaches
subscribers of the other. Neither starts anything until first used.
"""

from __future__ import annotations

import threading

from .bus import AsyncMessageBus
from .messages import MessageTypes
from .sync_bus import MessageBus

__all__ = ["AsyncMessageBus", "MessageBus", "MessageTypes", "get_async_message_bus", "message_bus"]

message_bus = MessageBus()
"""The process-wide sync bus."""

_default_async: AsyncMessageBus | None = None
_lock = threading.Lock()


def get_async_message_bus() -> AsyncMessageBus:
    """Return the process-wide async bus (a new one once the last is shut down or its loop gone)."""
    global _default_async
    with _lock:
        bus = _default_async
        if bus is None or bus.closed or (bus.loop is not None and bus.loop.is_closed()):
            bus = _default_async = AsyncMessageBus()
        return bus
