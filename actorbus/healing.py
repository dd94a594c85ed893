"""The fallback that heals: a bus running in memory because RabbitMQ was down moves back to it.

When RabbitMQ does not answer at start-up, a bus with ``fallback=True`` runs in
memory. With ``heal=True`` (the default) it then keeps trying the broker in
the background, with the broker's reconnect backoff (``reconnect_interval``
doubling up to ``max_reconnect_interval``), and once RabbitMQ answers it moves
there by itself (:func:`switch_to`):

1. every actor's and subscription's queue is declared on RabbitMQ;
2. publishes and replies go over RabbitMQ from then on;
3. each actor consumes its RabbitMQ queue and stops consuming in memory;
4. what is still waiting in an in-memory queue of one of these actors (a
   backlog behind a full mailbox) is sent to its RabbitMQ queue, and this
   bus's dead letters move to RabbitMQ's dead-letter store;
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

from .brokers.base import DeadLetterFilter, MessageBroker
from .brokers.memory import InMemoryBroker
from .errors import BrokerRefused, BrokerUnavailable
from .messages import register_message_type
from .router import Router

__all__ = ["MODE_CHANGE_TYPE", "reconnect", "switch_to"]

logger = logging.getLogger("actorbus.bus")

MODE_CHANGE_TYPE = register_message_type("system.mode_change")
"""Announced by a bus that moved from memory to RabbitMQ (data: from, to, seconds, moved)."""

DEFAULT_BACKOFF = (0.1, 2.0)
"""First and longest wait between attempts, for a broker that does not say its own."""


async def reconnect(broker: MessageBroker) -> bool:
    """Try ``broker.connect()`` until it works (``True``) or is refused for good (``False``)."""
    first, longest = getattr(broker, "reconnect_backoff", DEFAULT_BACKOFF)
    wait = first
    while True:
        try:
            await broker.connect()
            return True
        except BrokerRefused as exc:
            logger.error("RabbitMQ refused this bus (%s): staying in memory", exc)
            return False
        except BrokerUnavailable as exc:
            logger.debug("RabbitMQ still unreachable (%s); next try in %.2fs", exc, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, longest)


async def switch_to(router: Router, broker: MessageBroker) -> int:
    """Move ``router`` and its actors to ``broker``; return the messages carried over.

    See the module docs for the steps. The in-memory connection is closed after.
    """
    started = time.monotonic()
    old = await router.move_to(broker)
    moved = 0
    if isinstance(old, InMemoryBroker):
        for cell in list(router.cells):
            queue = old.server.queues.get(cell.queue)
            if queue is None or queue.consumers:
                continue  # another in-memory bus still consumes it: its backlog is its own
            while queue.backlog:
                await broker.send_to_queue(cell.queue, queue.backlog.popleft())
                moved += 1
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
