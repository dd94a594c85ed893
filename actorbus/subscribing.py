"""The bus's subscription bookkeeping: which handler listens to which types, on which queue.

:class:`Subscriptions` turns ``subscribe`` and ``unsubscribe`` calls into one-off
subscription actors (see :mod:`actorbus.subscription`), each in a supervisor tree
of its own, and keeps one record per subscription: its handler, its patterns (or
its ``queue=``), its actor class and its tree. The same call twice does nothing;
a second subscribe while the first is still starting shares its outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .errors import UnknownMessageType
from .messages import validate_type
from .router import Router
from .subscription import FunctionActor, MessageHandler, check_handler, subscription_class
from .supervisor import Supervisor
from .topic import is_pattern

__all__ = ["Subscriptions", "patterns_of", "validate_pattern"]

_SubscriptionKey = tuple[Any, tuple[str, ...] | None, str | None]
"""A subscription: its handler, its sorted patterns (default queue) and its ``queue=``."""


def patterns_of(message_type: str | Sequence[str]) -> tuple[str, ...]:
    """The sorted, distinct, validated patterns of one type or several."""
    given = [message_type] if isinstance(message_type, str) else list(message_type)
    if not given:
        raise UnknownMessageType("subscribe needs at least one message type or pattern")
    return tuple(sorted({validate_pattern(p) for p in given}))


def validate_pattern(pattern: str) -> str:
    """Return a subscription pattern as a plain string: a known type, or a topic with wildcards."""
    pattern = str(pattern)
    if is_pattern(pattern):
        if not all(pattern.split(".")):
            raise UnknownMessageType(f"malformed topic pattern {pattern!r}: empty word")
        return pattern
    return validate_type(pattern)


class Subscriptions:
    """The subscriptions of one bus, started and stopped through its ``spawn`` and ``stop``."""

    def __init__(
        self,
        prefix: str,
        *,
        ready: Callable[[], Awaitable[Router]],
        spawn: Callable[[Supervisor], Awaitable[Any]],
        stop: Callable[[Supervisor], Awaitable[None]],
    ) -> None:
        self._prefix = prefix
        self._ready = ready
        self._spawn = spawn
        self._stop = stop
        self._subscriptions: dict[_SubscriptionKey, tuple[type[FunctionActor], Supervisor]] = {}
        self._subscribing: dict[_SubscriptionKey, asyncio.Future[None]] = {}

    def classes(self) -> list[type[FunctionActor]]:
        """The actor class of every subscription in place."""
        return [cls for cls, _ in self._subscriptions.values()]

    def clear(self) -> None:
        """Forget every subscription (at shutdown, once their trees have ended)."""
        self._subscriptions.clear()

    async def subscribe(
        self, message_type: str | Sequence[str], handler: MessageHandler, queue: str | None
    ) -> None:
        """Subscribe ``handler`` (see ``AsyncMessageBus.subscribe``)."""
        patterns = patterns_of(message_type)
        check_handler(handler)
        await self._ready()
        key: _SubscriptionKey = (handler, None if queue is not None else patterns, queue)
        existing = self._subscriptions.get(key)
        if existing is not None:
            cls, supervisor = existing
            added = [p for p in patterns if p not in cls._handlers]
            for pattern in added:
                cls._handlers[pattern] = "function"
            starting = self._subscribing.get(key)
            if starting is not None:  # the first subscribe is still starting: share its outcome
                await asyncio.shield(starting)
            if added:
                await self._rebind(supervisor)
            return
        cls = subscription_class(handler, self._prefix, queue, patterns)
        cls._handlers = dict.fromkeys(patterns, "function")
        supervisor = Supervisor([cls], max_restarts=10, within=1.0, name=cls.name)
        self._subscriptions[key] = (cls, supervisor)
        starting = self._subscribing[key] = asyncio.get_running_loop().create_future()
        try:
            await self._spawn(supervisor)
        except BaseException as exc:
            del self._subscriptions[key]
            if isinstance(exc, Exception):
                starting.set_exception(exc)
                starting.exception()  # retrieved: whoever waits on it gets it too
            else:
                starting.cancel()
            raise
        else:
            starting.set_result(None)
        finally:
            del self._subscribing[key]

    async def unsubscribe(
        self, message_type: str | Sequence[str], handler: MessageHandler, queue: str | None
    ) -> None:
        """End a subscription (see ``AsyncMessageBus.unsubscribe``)."""
        patterns = patterns_of(message_type)
        router = await self._ready()
        key: _SubscriptionKey = (handler, None if queue is not None else patterns, queue)
        existing = self._subscriptions.get(key)
        if existing is None:
            return
        cls, supervisor = existing
        removed = patterns if queue is not None else tuple(cls._handlers)
        for pattern in removed:
            if pattern in cls._handlers:
                del cls._handlers[pattern]
                if queue is not None or not cls.queue_options.durable:
                    await router.broker.unbind_queue(cls.queue_options.name or "", pattern)
        if not cls._handlers:
            del self._subscriptions[key]
            await self._stop(supervisor)
            if not cls.queue_options.durable:
                await router.broker.delete_queue(cls.queue_options.name or "")

    async def _rebind(self, supervisor: Supervisor) -> None:
        router = await self._ready()
        for cell in supervisor.cells:
            await router.attach_bindings(cell)
