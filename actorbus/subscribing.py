"""The bus's subscription bookkeeping: which handler listens to which types, on which queue.

:class:`Subscriptions` turns ``subscribe`` and ``unsubscribe`` calls into one-off
subscription actors (see :mod:`actorbus.subscription`), each in a supervisor tree
of its own, and keeps one record per subscription: its child spec, the patterns
its queue is bound to now, and its tree. Adding types to a ``queue=``
subscription re-binds its queue through the runtime; nothing edits a class. The
same call twice does nothing; a second subscribe while the first is still
starting shares its outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .children import ChildSpec
from .errors import UnknownMessageType
from .messages import validate_type
from .runtime import Runtime
from .subscription import MessageHandler, check_handler, subscription_spec
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


@dataclass
class _Subscription:
    """One subscription in place: how it was spawned, what it is bound to, its tree."""

    spec: ChildSpec
    patterns: list[str]
    supervisor: Supervisor

    @property
    def queue(self) -> str:
        assert self.spec.queue_options is not None
        return self.spec.queue_options.name or ""

    @property
    def durable(self) -> bool:
        assert self.spec.queue_options is not None
        return self.spec.queue_options.durable


class Subscriptions:
    """The subscriptions of one bus, started and stopped through its ``spawn`` and ``stop``."""

    def __init__(
        self,
        prefix: str,
        *,
        ready: Callable[[], Awaitable[Runtime]],
        spawn: Callable[[Supervisor], Awaitable[Any]],
        stop: Callable[[Supervisor], Awaitable[None]],
    ) -> None:
        self._prefix = prefix
        self._ready = ready
        self._spawn = spawn
        self._stop = stop
        self._subscriptions: dict[_SubscriptionKey, _Subscription] = {}
        self._subscribing: dict[_SubscriptionKey, asyncio.Future[None]] = {}

    def private_queues(self) -> list[str]:
        """The non-durable queues of the subscriptions in place (deleted with the bus)."""
        return [sub.queue for sub in self._subscriptions.values() if not sub.durable]

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
            added = [p for p in patterns if p not in existing.patterns]
            existing.patterns.extend(added)
            starting = self._subscribing.get(key)
            if starting is not None:  # the first subscribe is still starting: share its outcome
                await asyncio.shield(starting)
            if added:
                await self._rebind(existing)
            return
        spec = subscription_spec(handler, self._prefix, queue, patterns)
        supervisor = Supervisor([spec], max_restarts=10, within=1.0, name=spec.actor_name)
        self._subscriptions[key] = _Subscription(spec, list(patterns), supervisor)
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
        runtime = await self._ready()
        key: _SubscriptionKey = (handler, None if queue is not None else patterns, queue)
        existing = self._subscriptions.get(key)
        if existing is None:
            return
        removed = list(patterns) if queue is not None else list(existing.patterns)
        for pattern in removed:
            if pattern in existing.patterns:
                existing.patterns.remove(pattern)
                if queue is not None or not existing.durable:
                    await runtime.broker.unbind_queue(existing.queue, pattern)
        if existing.patterns:
            self._set_patterns(existing)
            return
        del self._subscriptions[key]
        await self._stop(existing.supervisor)
        if not existing.durable:
            await runtime.broker.delete_queue(existing.queue)

    def _set_patterns(self, subscription: _Subscription) -> None:
        patterns = tuple(subscription.patterns)
        for cell in subscription.supervisor.cells:
            cell.queue_spec = msgspec.structs.replace(cell.queue_spec, patterns=patterns)

    async def _rebind(self, subscription: _Subscription) -> None:
        runtime = await self._ready()
        self._set_patterns(subscription)
        for cell in subscription.supervisor.cells:
            await runtime.declare(cell)
