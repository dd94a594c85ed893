"""The fallback that heals: a bus running in memory because RabbitMQ was down moves back to it.

When RabbitMQ does not answer at start-up, a bus with ``fallback=True`` runs in
memory. With ``heal=True`` (the default) it then keeps trying the broker in
the background, with the broker's reconnect backoff (``reconnect_interval``
doubling up to ``max_reconnect_interval``), and once RabbitMQ answers it moves
there by itself (:func:`switch_to`):

1. every actor's and subscription's queue is declared on RabbitMQ;
2. publishes and replies go over RabbitMQ from then on;
3. each actor consumes its RabbitMQ queue and stops consuming in memory;
4. what is still waiting for one of these actors in memory (in its mailbox, or
   in its in-memory queue behind it) is sent to its RabbitMQ queue, in order,
   and this bus's dead letters move to RabbitMQ's dead-letter store;
5. it logs a warning and publishes ``system.mode_change`` (over RabbitMQ, so
   other processes hear it too).

What was published in memory meanwhile is not sent again over RabbitMQ: it
was delivered, in memory, to the subscribers of this process, and other
processes never see it (the bus cannot know who they would have been, and
sending it again would hand the local subscribers every message twice). A
message published to a type nobody in this process handled is gone, as in
any in-memory run. Messages published while the switch runs may reach a
local actor slightly out of order (the in-memory ones still in flight, and
the first ones over RabbitMQ), and an ``ask`` waiting for its reply over the
in-memory reply address then times out.

``heal=False`` keeps the bus in memory for good; ``fallback=False`` raises
``BrokerUnavailable`` at start instead of running in memory at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._retry import Backoff
from .brokers._memory_consumer import MemoryDelivery
from .brokers.base import DeadLetterFilter, MessageBroker
from .brokers.memory import InMemoryBroker
from .errors import BrokerRefused, BrokerUnavailable
from .messages import Delivery, register_message_type
from .runtime import Runtime

__all__ = ["MODE_CHANGE_TYPE", "Healer", "reconnect", "switch_to"]

logger = logging.getLogger("actorbus.bus")

MODE_CHANGE_TYPE = register_message_type("system.mode_change")
"""Announced by a bus that moved from memory to RabbitMQ (data: from, to, seconds, moved)."""

RECONNECT = Backoff(0.1, 2.0)
"""Waits between attempts to reach a broker that has no reconnect backoff of its own."""


async def reconnect(broker: MessageBroker) -> bool:
    """Try ``broker.connect()`` until it works (``True``) or is refused for good (``False``).

    Between tries it waits as the broker's own reconnects would (its ``reconnect_interval``
    doubling up to ``max_reconnect_interval``).
    """
    from .brokers.rabbitmq import AsyncRabbitMQBroker  # a bus heals only towards RabbitMQ

    backoff = broker.link.backoff if isinstance(broker, AsyncRabbitMQBroker) else RECONNECT
    delays = backoff.delays()
    while True:
        try:
            await broker.connect()
            return True
        except BrokerRefused as exc:
            logger.error("RabbitMQ refused this bus (%s): staying in memory", exc)
            return False
        except BrokerUnavailable as exc:
            wait = next(delays)
            logger.debug("RabbitMQ still unreachable (%s); next try in %.2fs", exc, wait)
            await asyncio.sleep(wait)


async def switch_to(runtime: Runtime, broker: MessageBroker) -> int:
    """Move ``runtime`` and its actors to ``broker``; return the messages carried over.

    See the module docs for the steps. The in-memory connection is closed after.
    """
    started = time.monotonic()
    old = await runtime.move_to(broker)
    moved = 0
    if isinstance(old, InMemoryBroker):
        for cell in list(runtime.cells):
            # Not yet handled, still the in-memory broker's: they go over with the backlog.
            unread = cell.mailbox.take_back(_from_memory)
            queue = old.server.queues.get(cell.queue)
            consumed = queue is not None and any(not c.paused for c in queue.consumers)
            backlog = [] if queue is None or consumed else list(queue.backlog)
            for envelope in [delivery.envelope for delivery in unread] + backlog:
                await broker.send_to_queue(cell.queue, envelope)
                moved += 1
            for delivery in unread:
                delivery.ack()
            if queue is not None and backlog:
                queue.backlog.clear()
            entries = old.server.take_dead_letters(DeadLetterFilter(actor=cell.name))
            for entry in entries:
                await broker.dead_letter(entry)
            moved += len(entries)
    await old.close()
    logger.info(
        "moved to %s in %.3fs (%d message(s) carried over)",
        broker.name,
        time.monotonic() - started,
        moved,
    )
    return moved


class Healer:
    """The background task that moves a bus from memory back onto ``broker``.

    ``reopen_control`` is awaited with ``None`` before the switch (to close what
    listens on the in-memory broker) and with ``broker`` after it; ``announce``
    publishes the ``system.mode_change``; ``closed`` says the bus is shutting down.
    """

    def __init__(
        self,
        broker: MessageBroker,
        runtime: Runtime,
        *,
        closed: Callable[[], bool],
        reopen_control: Callable[[MessageBroker | None], Awaitable[None]],
        announce: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self._broker = broker
        self._runtime = runtime
        self._closed = closed
        self._reopen_control = reopen_control
        self._announce = announce
        self._switching = False
        self._task = asyncio.get_running_loop().create_task(self._heal())

    async def _heal(self) -> None:
        broker = self._broker
        fell_back = time.monotonic()
        try:
            connected = await reconnect(broker)
        except asyncio.CancelledError:
            await _quietly(broker.close())
            raise
        if not connected or self._closed():
            await _quietly(broker.close())
            return
        self._switching = True
        try:
            await self._reopen_control(None)
            moved = await switch_to(self._runtime, broker)
            await self._reopen_control(broker)
        except Exception:
            logger.exception(
                "moving to RabbitMQ failed part way; mode is now %s", self._runtime.broker.name
            )
            return
        finally:
            self._switching = False
        seconds = time.monotonic() - fell_back
        logger.warning(
            "RabbitMQ answers again: this bus moved to it after %.1fs in memory", seconds
        )
        self._announce(
            MODE_CHANGE_TYPE,
            {"from": "in_memory", "to": broker.name, "seconds": round(seconds, 3), "moved": moved},
        )

    async def stop(self, timeout: float) -> None:
        """At shutdown: give up waiting for RabbitMQ, or let a switch under way finish."""
        if self._task.done():
            return
        if not self._switching:  # still waiting for RabbitMQ: give up on it
            self._task.cancel()
        await asyncio.wait([self._task], timeout=max(0.0, timeout))


def _from_memory(delivery: Delivery) -> bool:
    return isinstance(delivery, MemoryDelivery)


async def _quietly(operation: Awaitable[Any]) -> None:
    try:
        await operation
    except Exception:
        logger.debug("cleanup step failed", exc_info=True)
