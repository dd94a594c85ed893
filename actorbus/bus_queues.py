"""The subscription and dead-letter face of ``AsyncMessageBus``.

A mixin of :class:`~actorbus.bus.AsyncMessageBus`: subscriptions (see
:mod:`actorbus.subscribing` for their bookkeeping and :mod:`actorbus.subscription`
for their queues), and the dead letters and queue lengths the broker keeps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from .background import Background
from .brokers.base import DeadLetter, DeadLetterFilter
from .errors import BusClosed
from .runtime import Runtime
from .subscribing import Subscriptions, patterns_of
from .subscription import MessageHandler, check_handler

__all__ = ["BusQueues"]


class BusQueues:
    """Subscribe and unsubscribe; list, replay and purge dead letters; measure queues."""

    _closed: bool
    _background: Background
    _subscriptions: Subscriptions
    _ready: Callable[[], Awaitable[Runtime]]

    async def subscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """Call ``handler(message_type, data)`` for every message of the types (or patterns).

        ``message_type`` is one type or topic pattern, or several (one queue, one order
        for them all). Each call is one subscription with a queue of its own, named
        after the handler and its set of types (see :mod:`actorbus.subscription` for
        when queues are shared); the same call again does nothing. With ``queue=`` the
        types go to that queue: subscribing the handler again adds them to it.
        Raises ``InvalidHandler`` for a handler not callable as ``handler(type, data)``.
        """
        await self._subscriptions.subscribe(message_type, handler, queue)

    def subscribe_soon(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """Subscribe in the background (from the bus's own loop); shutdown waits for it.

        For a handler of this bus, which must not wait for its own loop. A bad type,
        pattern or handler raises here (as :meth:`subscribe` would), and so does a bus
        shut down (``BusClosed``); a failure later is logged.
        """
        if self._closed:
            raise BusClosed("the message bus was shut down")
        patterns_of(message_type)
        check_handler(handler)
        self._background.start(self.subscribe(message_type, handler, queue=queue))

    async def unsubscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """End the subscription made with the same arguments (nothing if there is none).

        With ``queue=``, removes those types from that queue's subscription instead; its
        last type ends it.
        """
        await self._subscriptions.unsubscribe(message_type, handler, queue)

    async def dead_letters(
        self, *, actor: str | None = None, type: str | None = None
    ) -> list[DeadLetter]:
        """List dead letters, oldest first, optionally of one actor and/or type."""
        runtime = await self._ready()
        return await runtime.broker.dead_letters(DeadLetterFilter(actor=actor, type=type))

    async def replay_dead_letters(
        self, *, actor: str | None = None, type: str | None = None, max_replays: int | None = None
    ) -> int:
        """Send dead letters back to the queues they failed in; return how many."""
        runtime = await self._ready()
        return await runtime.broker.replay_dead_letters(
            DeadLetterFilter(actor=actor, type=type), max_replays=max_replays
        )

    async def purge_dead_letters(self, *, actor: str | None = None, type: str | None = None) -> int:
        """Delete dead letters; return how many."""
        runtime = await self._ready()
        return await runtime.broker.purge_dead_letters(DeadLetterFilter(actor=actor, type=type))

    async def queued(self) -> dict[str, int]:
        """Messages waiting in the broker for each actor of this process, by actor name.

        These are in the actor's queue, not yet delivered to it (beyond its prefetch);
        with :meth:`stats`, whose ``mailbox`` and ``busy`` cover the rest, they tell
        whether an actor has work left.
        """
        runtime = await self._ready()
        return {cell.name: await runtime.broker.queue_length(cell.queue) for cell in runtime.cells}

    async def queue_length(self, queue: str) -> int:
        """Messages waiting in the broker's queue ``queue`` (0: none, or no such queue)."""
        runtime = await self._ready()
        return await runtime.broker.queue_length(queue)
