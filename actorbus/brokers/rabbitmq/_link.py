"""The connection: open it within a timeout, watch it, and bring it back when it drops.

:class:`Link` owns one AMQP connection and its publishing channel (publisher
confirms on). A watcher task waits for either to close; then it reconnects
with a short, growing delay (``reconnect_interval`` doubling up to
``max_reconnect_interval``) and calls ``restore`` on the new connection, which
replays the recorded topology and consumers, before it reports the link ready
again. Between two outages it also calls ``check`` every ``check_interval``
seconds, so a consumer lost without the connection dropping is repaired.

Heartbeats are ``heartbeat`` seconds: a silent partition is noticed after about
three missed ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from ...errors import BrokerRefused
from ._params import ConnectionSettings
from ._refusals import classify
from ._transport import RecordingTransport, remember

__all__ = ["Link"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")


class Link:
    """One self-healing connection and its publishing channel."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        restore: Callable[[AbstractConnection, AbstractChannel], Awaitable[None]],
        check: Callable[[], Awaitable[None]],
        connect_timeout: float,
        reconnect_interval: float,
        max_reconnect_interval: float,
        check_interval: float = 5.0,
    ) -> None:
        self.settings = settings
        """Where to connect."""
        self.connection: AbstractConnection | None = None
        """The current connection, while up."""
        self.channel: AbstractChannel | None = None
        """The current publishing channel (confirms on), while up."""
        self.ready = asyncio.Event()
        """Set while the connection is up and restored."""
        self.reconnects = 0
        """Connections made after the first one."""
        self.outages: list[float] = []
        """Seconds each outage lasted, from noticing the loss to being restored."""
        self._restore = restore
        self._check = check
        self._connect_timeout = connect_timeout
        self._interval = reconnect_interval
        self._max_interval = max_reconnect_interval
        self._check_interval = check_interval
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        """Connect for the first time.

        Raises ``BrokerUnavailable`` when the broker cannot be reached, ``BrokerRefused``
        when it (or TLS) refuses, ``ConfigurationError`` for a name it cannot take.
        """
        try:
            await self._connect()
        except Exception as exc:
            raise classify(exc, self.settings) from None
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _connect(self) -> None:
        connection: AbstractConnection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                factory = RecordingTransport(tls=self.settings.scheme == "amqps")
                connection = await aiormq.connect(
                    self.settings.amqp_url(),
                    context=self.settings.ssl_context,
                    transport_factory=factory,
                )
                remember(connection, factory)
                channel = await connection.channel(publisher_confirms=True)
                await self._restore(connection, channel)
        except BaseException:
            if connection is not None:
                await _close_quietly(connection)
            raise
        self.connection, self.channel = connection, channel
        self.ready.set()

    async def wait_ready(self) -> tuple[AbstractConnection, AbstractChannel]:
        """Wait until the link is up; return its connection and publishing channel."""
        while True:
            await self.ready.wait()
            connection, channel = self.connection, self.channel
            if connection is not None and channel is not None and not channel.is_closed:
                return connection, channel
            await asyncio.sleep(0.005)  # the watcher is about to notice

    async def _watch(self) -> None:
        while not self._closed:
            connection, channel = self.connection, self.channel
            assert connection is not None
            assert channel is not None
            watched = [connection.closing, channel.closing]
            try:
                done, _ = await asyncio.wait(
                    watched, timeout=self._check_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for future in watched:
                    if not future.done():
                        future.cancel()
            if self._closed:
                return
            if not done and not connection.is_closed and not channel.is_closed:
                try:
                    await self._check()
                except Exception:
                    logger.exception("consumer check failed")
                continue
            await self._recover(connection, done)

    async def _recover(
        self, connection: AbstractConnection, done: set[asyncio.Future[object]]
    ) -> None:
        lost_at = time.monotonic()
        self.ready.clear()
        reason = next((f.exception() for f in done if not f.cancelled()), None)
        logger.warning("RabbitMQ connection lost (%r); reconnecting to %s", reason, self.settings)
        await _close_quietly(connection)
        delay = self._interval
        while not self._closed:
            try:
                await self._connect()
            except Exception as exc:
                error = classify(exc, self.settings)
                log = logger.error if isinstance(error, BrokerRefused) else logger.warning
                log("reconnect to %s failed: %s; next try in %.2fs", self.settings, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_interval)
                continue
            self.reconnects += 1
            outage = time.monotonic() - lost_at
            self.outages.append(outage)
            logger.warning("RabbitMQ connection restored after %.3fs", outage)
            return

    async def close(self) -> None:
        """Stop reconnecting and close the connection; harmless twice."""
        self._closed = True
        self.ready.clear()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            try:
                await watcher
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError) or _being_cancelled():
                    raise
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            await _close_quietly(connection)


async def _close_quietly(connection: AbstractConnection) -> None:
    try:
        async with asyncio.timeout(2.0):
            await connection.close()
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
            raise
        logger.debug("closing the connection: %r", exc)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
