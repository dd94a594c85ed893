"""``Sender``: one confirmed publish, across outages, nacks and ``publish_timeout``.

A publish waits for the link while it is down (at most ``outbox_limit`` of them at
once, then ``QueueFull``), is sent on the write pipeline (``_publisher``) when writes
are coalesced, else through aiormq's ``basic_publish``, and returns once the broker
confirmed it. A publish the broker returns raises ``Unroutable``; one it nacks is
sent again for up to ``nack_patience`` s (a replicated queue refuses while it
elects a new leader: seconds, longer on a loaded host) before it raises
``QueueFull`` (a queue at its max length refuses for good); one cut by a lost
connection is sent again once the link is back (at-least-once). Past
``publish_timeout`` s: ``PublishTimeout``.

Nothing here polls. A publish waits for the link on its ready event; one cut while
its channel still looks open waits for that channel's close (after which the
link brings a fresh one), at most the next wait of :data:`RESEND_BACKOFF`, then
tries again; a nacked one waits the next wait of :data:`NACK_BACKOFF`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from aiormq.abc import AbstractChannel
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError
from aiormq.exceptions import PublishError as AmqpReturned
from pamqp.commands import Basic

from ..._retry import Backoff
from ...errors import PublishError, PublishTimeout, QueueFull, Unroutable
from ._aiormq import confirmations
from ._closing import being_cancelled
from ._link import Link
from ._publisher import Pipeline

__all__ = [
    "LINK_ERRORS",
    "LINK_RETRY_BACKOFF",
    "NACK_BACKOFF",
    "RESEND_BACKOFF",
    "Sender",
]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

NACK_BACKOFF = Backoff(first=0.05, longest=1.0)
"""Waits before sending a nacked publish again: 0.05 s, doubling up to 1 s (a queue
whose new leader is elected is written to within a second)."""
RESEND_BACKOFF = Backoff(first=0.01, longest=1.0)
"""Longest waits for the channel of a cut publish to close before it is sent again."""
LINK_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, RuntimeError)
"""Failures that mean the link (not the request) is broken: wait for it and try again."""
LINK_RETRY_BACKOFF = Backoff(first=0.01, longest=0.5)
"""Waits between tries of an operation cut by one of :data:`LINK_ERRORS` (a declaration,
a consumer's start); each try first waits for the link to be up again."""


class Sender:
    """Publishes on the link's channel and waits for each confirm."""

    def __init__(
        self,
        link: Link,
        *,
        publish_timeout: float,
        nack_patience: float,
        outbox_limit: int,
        coalesce: bool,
        closed: Callable[[], bool],
    ) -> None:
        self._link = link
        self.publish_timeout = publish_timeout
        """Seconds a publish may wait for the connection and the confirm."""
        self.nack_patience = nack_patience
        """Seconds a nacked publish is sent again before ``QueueFull``."""
        self.outbox_limit = outbox_limit
        """Most publishes waiting for the connection at once; past it ``QueueFull``."""
        self._coalesce = coalesce
        self._closed = closed
        self.publish_nacks = 0
        """Publishes the broker refused (nacked), each counted once per refusal."""
        self.confirm_observer: Callable[[float], None] | None = None
        """Called with the seconds each confirmed publish took (``None``: not timed)."""
        self.waiting = 0
        """Publishes waiting for the connection to come back."""
        self._pipeline: Pipeline | None = None

    @property
    def unconfirmed(self) -> int:
        """Publishes sent on the current channel and waiting for the broker's confirm."""
        channel = self._link.channel
        return len(confirmations(channel)) if channel is not None else 0

    async def send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        *,
        mandatory: bool,
    ) -> None:
        """Publish and wait for the confirm, across outages, within ``publish_timeout``."""
        link = self._link
        nacks = 0
        first_nack = 0.0
        nack_waits: Iterator[float] | None = None
        resend_waits: Iterator[float] | None = None
        observer = self.confirm_observer
        started = time.perf_counter() if observer is not None else 0.0
        try:
            async with asyncio.timeout(self.publish_timeout):
                while True:
                    channel = link.channel
                    if not link.ready.is_set() or channel is None or channel.is_closed:
                        channel = await self._wait_for_link()
                    try:
                        pipeline = self._pipeline
                        if pipeline is None or pipeline.channel is not channel:
                            pipeline = self._pipeline_for(channel)
                        if pipeline is not None:
                            await pipeline.publish(
                                exchange, routing_key, body, properties, mandatory
                            )
                        else:
                            await channel.basic_publish(
                                body,
                                exchange=exchange,
                                routing_key=routing_key,
                                properties=properties,
                                mandatory=mandatory,
                            )
                        if observer is not None:
                            observer(time.perf_counter() - started)
                        return
                    except AmqpReturned:
                        raise Unroutable(
                            f"no queue is bound to {routing_key!r}"
                            + (f" on {exchange!r}" if exchange else "")
                        ) from None
                    except DeliveryError:
                        # A nack: a queue at its max length refuses for good, a replicated
                        # queue electing a new leader (a node went away) for a while.
                        nacks += 1
                        self.publish_nacks += 1
                        now = time.monotonic()
                        if nack_waits is None:
                            first_nack, nack_waits = now, NACK_BACKOFF.delays()
                        wait = next(nack_waits)
                        if now + wait - first_nack > self.nack_patience:
                            raise QueueFull(
                                f"RabbitMQ refused {routing_key!r} {nacks} times in "
                                f"{now - first_nack:.1f}s (a queue at its max length?)"
                            ) from None
                        await asyncio.sleep(wait)
                        continue
                    except asyncio.CancelledError:
                        if being_cancelled():
                            raise
                        logger.debug("publish cut by a closing channel; sending again")
                    except Exception as exc:
                        if self._closed():
                            raise PublishError(f"broker closed while publishing: {exc}") from None
                        if not isinstance(exc, LINK_ERRORS) and not channel.is_closed:
                            raise
                        logger.debug("publish failed (%r); sending again once reconnected", exc)
                    if channel is link.channel and not channel.is_closed:
                        resend_waits = resend_waits or RESEND_BACKOFF.delays()
                        await _closed_within(channel, next(resend_waits))
        except TimeoutError:
            raise PublishTimeout(
                f"no confirm for {routing_key!r} within {self.publish_timeout}s"
            ) from None

    def _pipeline_for(self, channel: AbstractChannel) -> Pipeline | None:
        if not self._coalesce:
            return None
        self._pipeline = Pipeline(channel)
        return self._pipeline

    async def _wait_for_link(self) -> AbstractChannel:
        if self._closed():
            raise PublishError("the RabbitMQ broker was closed")
        if self.waiting >= self.outbox_limit:
            raise QueueFull(
                f"{self.waiting} publishes already wait for RabbitMQ to come back, the limit"
            )
        self.waiting += 1
        try:
            _, channel = await self._link.wait_ready()
        finally:
            self.waiting -= 1
        return channel


async def _closed_within(channel: AbstractChannel, seconds: float) -> None:
    """Wait until ``channel`` closes, at most ``seconds``."""
    closing = channel.closing
    try:
        await asyncio.wait([closing], timeout=seconds)
    finally:
        if not closing.done():
            closing.cancel()
