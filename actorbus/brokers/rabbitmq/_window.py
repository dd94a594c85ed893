"""The redelivery window of a consumer on a queue with a delivery limit.

When a consumer process dies, a quorum queue counts a delivery for every
message that consumer held: the one that killed it, and every message merely
prefetched behind it. With a delivery limit, a message that kills its consumer
would then take its innocent neighbours into the dead-letter queue with it.
So, on such a queue, a consumer keeps its window narrow whenever a message may
be dangerous:

- it starts narrow (prefetch 1): after a crash, the messages given back come
  first, and each is tried alone;
- a redelivered message (``x-delivery-count`` > 0, or the redelivered flag)
  narrows the window again, and is handed on only once every message handed
  on before it is settled, alone; the ones after it follow one at a time;
- the first message handled on its first delivery widens the window to the
  consumer's full prefetch.

Only the culprit then reaches the delivery limit: a message prefetched behind
it is counted at most once more per crash before it is tried alone. Changing
the window of a running consumer takes a new ``basic.consume`` (RabbitMQ
applies a prefetch only to consumers started after it), which the consumer
does on the same channel, so the messages it holds stay settleable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiormq.abc import DeliveredMessage

__all__ = ["RedeliveryWindow", "first_delivery"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

Settle = Callable[[bool], None]
Resize = Callable[[int], Awaitable[None]]


def first_delivery(message: DeliveredMessage) -> bool:
    """Whether ``message`` is delivered for the first time (no count, not redelivered)."""
    headers = message.header.properties.headers
    count = headers.get("x-delivery-count") if headers else None
    if isinstance(count, int) and count > 0:
        return False
    return not getattr(message.delivery, "redelivered", False)


class RedeliveryWindow:
    """Narrows a consumer's prefetch after a redelivery, widens it after a fresh success."""

    __slots__ = (
        "_gate",
        "_idle",
        "_in_line",
        "_resize",
        "_resizing",
        "_size",
        "_unsettled",
        "narrow",
        "wide",
    )

    def __init__(self, wide: int, resize: Resize) -> None:
        self.wide = wide
        """The consumer's full prefetch."""
        self.narrow = True
        """Whether deliveries are handed on one at a time (prefetch 1)."""
        self._size = 1
        self._unsettled = 0
        self._in_line = 0  # deliveries held at the gate, in the order they came
        self._idle = asyncio.Event()
        self._idle.set()
        self._gate = asyncio.Lock()
        self._resize = resize
        self._resizing: asyncio.Task[None] | None = None

    @property
    def resizing(self) -> bool:
        """Whether the consumer is being registered again with another prefetch."""
        return self._resizing is not None and not self._resizing.done()

    def passes(self, first: bool) -> bool:
        """Whether a delivery may go straight on.

        Only a first delivery in a wide window, with no delivery that came before it
        still held at the gate: it must not overtake one.
        """
        return first and not self.narrow and self._in_line == 0

    @contextlib.asynccontextmanager
    async def alone(self, first: bool) -> AsyncIterator[None]:
        """Hold a delivery until its turn.

        Behind every delivery held before it, and, unless it is a first delivery in a
        wide window, until everything handed on before it is settled.
        """
        if not first and not self.narrow:
            self.narrow = True
            self._apply()
        self._in_line += 1
        try:
            async with self._gate:  # first come, first through
                if not first or self.narrow:
                    await self._idle.wait()
                yield
        finally:
            self._in_line -= 1

    def track(self, settle: Settle, first: bool) -> Settle:
        """Count a delivery handed on; the returned function settles it and updates the window."""
        self._unsettled += 1
        self._idle.clear()

        def settled(ok: bool) -> None:
            self._unsettled -= 1
            if self._unsettled <= 0:
                self._unsettled = 0
                self._idle.set()
            if ok and first and self.narrow:
                self.narrow = False
                self._apply()
            settle(ok)

        return settled

    def _apply(self) -> None:
        if self.wide <= 1 or self.resizing:
            return  # a running resize looks at ``narrow`` again when it is done
        self._resizing = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        try:
            while True:
                size = 1 if self.narrow else self.wide
                if size == self._size:
                    return
                await self._resize(size)
                self._size = size
        except Exception as exc:  # the channel died: the consumer starts anew, narrow
            logger.debug("could not change the consumer's window: %r", exc)
