"""Request and reply (``ask``): one reply address per bus, a future per pending request.

``ask`` publishes the request with ``reply_to`` set to the bus's reply address
and waits, within its timeout, for the reply whose ``correlation_id`` is the
request's id. The first reply wins; later ones, and replies to requests that
gave up, are dropped. A request nobody is bound to fails at once with
``Unroutable`` (it is published mandatory). A handler that failed for good
answers with an error (the ``x-actorbus-error`` header), which ``ask`` raises
as ``AskFailed``.

Timeouts: the wait for a reply is bounded by :class:`ReplyDeadlines`, which fails
the reply's future with ``AskTimeout`` when its time is up. It keeps one timer for
all pending requests instead of one per request: asks with the same timeout
expire in the order they started, so each timeout value keeps its requests in a
FIFO and the timer is armed for the earliest of all. A timer per ask
(``asyncio.timeout``: a timer handle scheduled and cancelled, and a context
manager around the wait) cost as much as the rest of a local round trip (ask
ran at 0.31x a raw future round trip with it, 0.48x without). A publish that
has to wait (over RabbitMQ, or flow control in memory) is bounded by
``asyncio.timeout`` as well: it is milliseconds long anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .brokers.base import MessageBroker
from .errors import AskFailed, AskTimeout
from .messages import Envelope, log_fields, make_envelope, new_message_id

__all__ = ["ERROR_HEADER", "ReplyDeadlines", "Requests"]

logger = logging.getLogger("actorbus.requests")

ERROR_HEADER = "x-actorbus-error"
"""Header of a reply that carries a failure instead of a result."""

Publish = Callable[..., Awaitable[None] | None]
"""``publish_nowait(envelope, mandatory=...)``: start a publish, return what is left to await."""


class ReplyDeadlines:
    """Fails the futures of pending replies at their deadlines, all on one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        """The loop the futures and the timer belong to."""
        # Per timeout value, the pending futures in the order they started (their deadlines'
        # order too): a future leaves as soon as its reply came, not at its deadline.
        self._queues: dict[float, dict[asyncio.Future[Any], tuple[float, str]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def add(self, future: asyncio.Future[Any], timeout: float, what: str) -> None:
        """Fail ``future`` with ``AskTimeout`` (saying ``what``) in ``timeout`` s, unless done."""
        when = time.monotonic() + timeout
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = {}
        queue[future] = (when, what)
        if when < self._armed_at:
            self._arm(when)

    def discard(self, future: asyncio.Future[Any], timeout: float) -> None:
        """Forget ``future`` (its reply came, or it gave up)."""
        queue = self._queues.get(timeout)
        if queue is not None:
            queue.pop(future, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._timer, self._armed_at = None, math.inf
        now, earliest = time.monotonic(), math.inf
        for timeout, queue in list(self._queues.items()):
            while queue:
                future = next(iter(queue))
                when, what = queue[future]
                if when > now:
                    earliest = min(earliest, when)
                    break
                del queue[future]
                if not future.done():
                    future.set_exception(AskTimeout(f"no reply to {what} within {timeout}s"))
            if not queue:
                del self._queues[timeout]
        if earliest < math.inf:
            self._arm(earliest)


class Requests:
    """The pending ``ask`` calls of one bus, and the replies it sends."""

    def __init__(self, source: str) -> None:
        self.source = source
        """Source name of requests and replies the bus itself sends."""
        self.address: str | None = None
        """Where replies to this bus's requests arrive (set by :meth:`open`)."""
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._deadlines: ReplyDeadlines | None = None

    async def open(self, broker: MessageBroker) -> None:
        """Create this bus's reply address on ``broker`` (again on a new broker)."""
        self.address = await broker.open_reply_address(self._on_reply)

    async def ask(
        self,
        publish: Publish,
        message_type: str,
        data: Any,
        *,
        timeout: float,
        source: str | None = None,
    ) -> Any:
        """Publish a request with ``publish`` and wait for the first reply to it."""
        envelope = make_envelope(
            message_type, data, source=source or self.source, reply_to=self.address
        )
        deadlines = self._deadlines
        if deadlines is None:
            deadlines = self._deadlines = ReplyDeadlines(asyncio.get_running_loop())
        future: asyncio.Future[Any] = deadlines.loop.create_future()
        self._pending[envelope.id] = future
        try:
            pending = publish(envelope, mandatory=True)
            if pending is not None:
                try:
                    async with asyncio.timeout(timeout):
                        await pending
                except TimeoutError:
                    raise AskTimeout(f"no reply to {message_type} within {timeout}s") from None
            if future.done():
                return future.result()
            deadlines.add(future, timeout, message_type)
            try:
                return await future
            finally:
                deadlines.discard(future, timeout)
        finally:
            del self._pending[envelope.id]

    def _on_reply(self, reply: Envelope) -> None:
        future = self._pending.get(reply.correlation_id or "")
        if future is None or future.done():
            return
        error = reply.headers.get(ERROR_HEADER)
        if error is not None:
            future.set_exception(AskFailed(error))
        else:
            future.set_result(reply.data)

    async def reply(
        self, broker: MessageBroker, request: Envelope, result: Any, error: str | None = None
    ) -> None:
        """Answer ``request`` with ``result``, or with ``error`` when its handler failed.

        A reply that cannot be sent is logged: the asker times out.
        """
        assert request.reply_to is not None
        reply = Envelope(
            id=new_message_id(),
            type=request.type,
            data=result,
            timestamp=request.timestamp,
            source=self.source,
            correlation_id=request.id,
            headers={ERROR_HEADER: error} if error is not None else {},
        )
        try:
            pending = broker.send_reply_nowait(request.reply_to, reply)
            if pending is not None:
                await pending
        except Exception:
            logger.exception(
                "reply to %s for %s failed",
                request.reply_to,
                request.id,
                extra=log_fields(request),
            )

    def fail_pending(self, error: BaseException) -> None:
        """Fail every ask still waiting for its reply (the bus is going away)."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
