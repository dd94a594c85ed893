"""Closing a connection or channel quietly, and telling a cancellation apart.

A failure to close is logged, not raised; a cancellation of the current task is
told from a cancelled future inside the client (``being_cancelled``).
"""

from __future__ import annotations

import asyncio
import logging

from aiormq.abc import AbstractChannel, AbstractConnection

__all__ = ["being_cancelled", "close_quietly"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


def being_cancelled() -> bool:
    """Whether the current task is being cancelled (not merely a future inside it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def close_quietly(closable: AbstractConnection | AbstractChannel, what: str) -> None:
    """Close ``closable`` within 2 s, logging (at debug) rather than raising a failure.

    A cancellation of the current task still propagates.
    """
    try:
        async with asyncio.timeout(2.0):
            await closable.close()
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError) and being_cancelled():
            raise
        logger.debug("closing %s: %r", what, exc)
