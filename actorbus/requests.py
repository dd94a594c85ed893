"""Request and reply (``ask``): one reply address per bus, a future per pending request.

``ask`` publishes the request with ``reply_to`` set to the bus's reply address
and waits, within its timeout (``asyncio.timeout``), for the reply whose
``correlation_id`` is the request's id. The first reply wins; later ones, and
replies to requests that gave up, are dropped. A request nobody is bound to
fails at once with ``Unroutable`` (it is published mandatory). A handler that
failed for good answers with an error (the ``x-actorbus-error`` header), which
``ask`` raises as ``AskFailed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .brokers.base import MessageBroker
from .errors import AskFailed, AskTimeout
from .messages import Envelope, log_fields, make_envelope, new_message_id

__all__ = ["ERROR_HEADER", "Requests"]

logger = logging.getLogger("actorbus.requests")

ERROR_HEADER = "x-actorbus-error"
"""Header of a reply that carries a failure instead of a result."""

Publish = Callable[..., Awaitable[None] | None]
"""``publish_nowait(envelope, mandatory=...)``: start a publish, return what is left to await."""


class Requests:
    """The pending ``ask`` calls of one bus, and the replies it sends."""

    def __init__(self, source: str) -> None:
        self.source = source
        """Source name of requests and replies the bus itself sends."""
        self.address: str | None = None
        """Where replies to this bus's requests arrive (set by :meth:`open`)."""
        self._pending: dict[str, asyncio.Future[Any]] = {}

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
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[envelope.id] = future
        try:
            async with asyncio.timeout(timeout):
                pending = publish(envelope, mandatory=True)
                if pending is not None:
                    await pending
                return await future
        except TimeoutError:
            raise AskTimeout(f"no reply to {message_type} within {timeout}s") from None
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
