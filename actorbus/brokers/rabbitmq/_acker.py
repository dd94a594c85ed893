"""Settling the deliveries of one channel: acks batched, and never held back for long.

Settling is bookkeeping; the frames go out once per event-loop turn, from a
task. Acks of a run of consecutive delivery tags become one
``basic.ack(multiple=True)``; an ack that is not part of such a run (an earlier
message still unsettled) and every requeue go out on their own, requeues
first, so a multiple ack never covers a message that was not handled. Past a
count or an age, settling writes the frames itself (see :class:`Acker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from aiormq.abc import AbstractChannel, ChannelFrame
from pamqp.commands import Basic

from ._aiormq import connection_idle

__all__ = ["Acker"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

_ACK, _NACK, _SENT = 1, 2, 3


class Acker:
    """Settles the deliveries of one channel, batching acks with ``multiple=True``.

    Frames normally go out once per event-loop turn, from a task. So that a
    handler that never awaits (the loop never turns) cannot hold acks back
    until a crash loses them, settling also writes the frames itself, straight
    to the connection's socket, once ``flush_count`` settlements are waiting or
    (checked at each settlement) the oldest has waited ``flush_interval``
    seconds: at a crash, at most ``flush_count`` messages are delivered again
    (the one being handled included). It does so only when nothing else is queued for the
    socket, so frames never overtake one another.
    """

    __slots__ = (
        "_due",
        "_flushing",
        "_interval",
        "_limit",
        "_loop",
        "_pending",
        "_scheduled",
        "_state",
        "_unsent",
        "_writer",
        "channel",
    )

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        writer: asyncio.StreamWriter | None = None,
        flush_count: int = 64,
        flush_interval: float = 0.05,
    ) -> None:
        self.channel = channel
        """The channel the deliveries came on."""
        self._pending: deque[int] = deque()
        self._state: dict[int, int] = {}
        self._scheduled = False
        self._flushing: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._writer = writer
        self._limit = flush_count
        self._interval = flush_interval
        self._unsent = 0
        self._due = 0.0

    def delivered(self, tag: int) -> None:
        """Record a delivery tag as it arrives (tags arrive in increasing order)."""
        self._pending.append(tag)

    def settle(self, tag: int, ok: bool) -> None:
        """Mark ``tag`` handled (``ok``) or to be requeued; the frame goes out shortly."""
        if tag in self._state or self.channel.is_closed:
            return
        self._state[tag] = _ACK if ok else _NACK
        self._unsent += 1
        if not self._scheduled:
            self._scheduled = True
            self._due = time.monotonic() + self._interval
            self._loop.call_soon(self._kick)
        elif self._writer is not None and (
            self._unsent >= self._limit or time.monotonic() >= self._due
        ):
            self._write_now()

    def _kick(self) -> None:
        if self._flushing is None or self._flushing.done():
            self._flushing = self._loop.create_task(self._flush())
        # else the running flush loops until nothing is left

    def _take(self) -> tuple[list[int], int, list[int]]:
        """What to send now: requeues, the top of the acked run, and lone acks."""
        self._scheduled = False
        self._unsent = 0
        state, pending = self._state, self._pending
        nacks = [tag for tag, how in state.items() if how == _NACK]
        for tag in nacks:
            state[tag] = _SENT
        top = 0
        while pending and pending[0] in state:
            tag = pending.popleft()
            if state.pop(tag) == _ACK:
                top = tag
        singles = [tag for tag, how in state.items() if how == _ACK]
        for tag in singles:
            state[tag] = _SENT
        return nacks, top, singles

    def _write_now(self) -> None:
        """Write the waiting settlements to the socket at once, if that keeps frame order."""
        writer, channel = self._writer, self.channel
        assert writer is not None
        connection = channel.connection
        if (
            (self._flushing is not None and not self._flushing.done())
            or connection is None
            or not connection_idle(connection)
            or writer.is_closing()
        ):
            self._due = time.monotonic() + self._interval  # try again later
            return
        nacks, top, singles = self._take()
        frames: list[Basic.Nack | Basic.Ack] = [
            Basic.Nack(delivery_tag=tag, requeue=True) for tag in nacks
        ]
        if top:
            frames.append(Basic.Ack(delivery_tag=top, multiple=True))
        frames.extend(Basic.Ack(delivery_tag=tag) for tag in singles)
        if frames:
            writer.write(ChannelFrame.marshall(channel.number, frames).payload)
        self._scheduled = True  # the kick already queued finds nothing, or what came since
        self._due = time.monotonic() + self._interval

    async def flush(self) -> None:
        """Send every settlement made so far, and wait until they are written."""
        if self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        if self._state and not self.channel.is_closed:
            await self._flush()

    async def _flush(self) -> None:
        channel = self.channel
        try:
            while self._scheduled:
                nacks, top, singles = self._take()
                if channel.is_closed:
                    return
                for tag in nacks:
                    await channel.basic_nack(tag, requeue=True, wait=False)
                if top:
                    await channel.basic_ack(top, multiple=True, wait=False)
                for tag in singles:
                    await channel.basic_ack(tag, wait=False)
        except Exception as exc:  # the channel died: the broker requeues what is unsettled
            logger.debug("acknowledgements lost with their channel: %r", exc)
