"""The connection: open it within a timeout, watch it, and bring it back when it drops.

:class:`Link` owns one AMQP connection and its publishing channel (publisher
confirms on), to one node of a list (a single broker is a list of one). It
connects to the first node that answers, in the list's order. A watcher task
waits for the connection or the channel to close; then it tries every other
node at once, the lost one last, and after a round in which none answered it
waits (the next delay of its :class:`~actorbus._retry.Backoff`:
``reconnect_interval`` doubling up to ``max_reconnect_interval``, jittered) and
goes around the list again. On the new connection it calls ``restore``, which
replays the recorded topology and consumers, before it reports the link ready
again. :attr:`Link.node` says which node is in use, without credentials.

A node that answers but refuses the login or the virtual host raises
``BrokerRefused`` when the link first opens (a mistake to fix, not an outage);
while recovering, it is logged and the next node is tried. Between two
outages the watcher also calls ``check`` every ``check_interval`` seconds, so a
consumer lost without the connection dropping is repaired.

Heartbeats are ``heartbeat`` seconds: a silent partition is noticed after about
three missed ones.

Outages are counted (:attr:`Link.reconnects`, :attr:`Link.outage_seconds`) and the
last :data:`OUTAGES_KEPT` are kept one by one (:attr:`Link.outages`), so a
process that lives through many stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection

from ..._retry import Backoff
from ...errors import ActorbusError, BrokerRefused, BrokerUnavailable
from ._aiormq import RecordingTransport, remember
from ._closing import being_cancelled, close_quietly
from ._params import ConnectionSettings
from ._refusals import classify

__all__ = ["OUTAGES_KEPT", "Link"]

logger = logging.getLogger("actorbus.brokers.rabbitmq")

OUTAGES_KEPT = 100
"""How many of the last outages :attr:`Link.outages` keeps, one by one."""


class Link:
    """One self-healing connection and its publishing channel."""

    def __init__(
        self,
        nodes: ConnectionSettings | list[ConnectionSettings],
        *,
        restore: Callable[[AbstractConnection, AbstractChannel], Awaitable[None]],
        check: Callable[[], Awaitable[None]],
        connect_timeout: float,
        reconnect_interval: float,
        max_reconnect_interval: float,
        check_interval: float = 5.0,
    ) -> None:
        self.nodes = [nodes] if isinstance(nodes, ConnectionSettings) else list(nodes)
        """Every node, in the order they are tried."""
        if not self.nodes:
            raise ValueError("a link needs at least one node")
        self.index = 0
        """Position in :attr:`nodes` of the node in use (or last tried)."""
        self.connection: AbstractConnection | None = None
        """The current connection, while up."""
        self.channel: AbstractChannel | None = None
        """The current publishing channel (confirms on), while up."""
        self.ready = asyncio.Event()
        """Set while the connection is up and restored."""
        self.reconnects = 0
        """Connections made after the first one (each ends one outage)."""
        self.outages: deque[float] = deque(maxlen=OUTAGES_KEPT)
        """Seconds each of the last outages lasted, from noticing the loss to being restored."""
        self.outage_seconds = 0.0
        """Seconds all outages lasted together."""
        self.backoff = Backoff(reconnect_interval, max_reconnect_interval)
        """Waits between two rounds of the node list in which no node answered."""
        self._restore = restore
        self._check = check
        self._connect_timeout = connect_timeout
        self._check_interval = check_interval
        self.connected_at: float | None = None
        """Epoch seconds when the node in use was connected to."""
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def settings(self) -> ConnectionSettings:
        """The settings of the node in use (or last tried)."""
        return self.nodes[self.index]

    @property
    def node(self) -> str:
        """The node in use (or last tried) as ``host:port``."""
        settings = self.settings
        return f"{settings.host}:{settings.port}"

    def _where(self) -> str:
        where = f"RabbitMQ at {self.settings}"
        return (
            where
            if len(self.nodes) == 1
            else f"{where} (node {self.index + 1} of {len(self.nodes)})"
        )

    async def open(self) -> None:
        """Connect to the first node that answers, in order.

        Raises ``BrokerUnavailable`` when no node can be reached, ``BrokerRefused``
        at once when a node (or TLS) refuses, ``ConfigurationError`` for a name it
        cannot take.
        """
        failures: list[ActorbusError] = []
        for index in range(len(self.nodes)):
            self.index = index
            try:
                await self._connect()
            except Exception as exc:
                error = classify(exc, self.settings)
                if isinstance(error, BrokerRefused) or not isinstance(error, BrokerUnavailable):
                    raise error from None
                failures.append(error)
                if len(self.nodes) > 1:
                    logger.warning("RabbitMQ node %s did not answer: %s", self.settings, error)
                continue
            break
        else:
            self.index = 0
            if len(failures) == 1:
                raise failures[0] from None
            raise BrokerUnavailable(
                f"cannot connect to any of the {len(self.nodes)} RabbitMQ nodes: "
                + "; ".join(str(failure) for failure in failures)
            ) from None
        logger.info("connected to %s", self._where())
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _connect(self) -> None:
        connection: AbstractConnection | None = None
        settings = self.settings
        try:
            async with asyncio.timeout(self._connect_timeout):
                factory = RecordingTransport(tls=settings.scheme == "amqps")
                connection = await aiormq.connect(
                    settings.amqp_url(), context=settings.ssl_context, transport_factory=factory
                )
                remember(connection, factory)
                channel = await connection.channel(publisher_confirms=True)
                await self._restore(connection, channel)
        except BaseException:
            if connection is not None:
                await close_quietly(connection, "the connection")
            raise
        self.connection, self.channel = connection, channel
        self.connected_at = time.time()
        self.ready.set()

    async def wait_ready(self) -> tuple[AbstractConnection, AbstractChannel]:
        """Wait until the link is up; return its connection and publishing channel.

        A channel found closed before the watcher noticed means the link is down:
        :attr:`ready` is cleared here at once, and the wait goes on until the
        watcher sets it again (on a fresh connection).
        """
        while True:
            await self.ready.wait()
            connection, channel = self.connection, self.channel
            if connection is not None and channel is not None and not channel.is_closed:
                return connection, channel
            self.ready.clear()

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
        lost = self.index
        logger.warning(
            "RabbitMQ connection to %s lost (%s); reconnecting",
            self._where(),
            _reason(reason) if isinstance(reason, BaseException) else reason,
        )
        await close_quietly(connection, "the connection")
        count = len(self.nodes)
        # The other nodes first, at once; the lost one last (it may be back at once too).
        order = [(lost + step) % count for step in range(1, count + 1)]
        delays = self.backoff.delays()
        while not self._closed:
            for index in order:
                if self._closed:
                    return
                self.index = index
                try:
                    await self._connect()
                except Exception as exc:
                    error = classify(exc, self.settings)
                    log = logger.error if isinstance(error, BrokerRefused) else logger.warning
                    log("reconnect to %s failed: %s", self._where(), error)
                    continue
                self.reconnects += 1
                outage = time.monotonic() - lost_at
                self.outages.append(outage)
                self.outage_seconds += outage
                logger.warning(
                    "RabbitMQ connection restored after %.3fs, to %s", outage, self._where()
                )
                return
            delay = next(delays)
            logger.warning("no RabbitMQ node answered; next round in %.2fs", delay)
            await asyncio.sleep(delay)
            order = [(lost + step) % count for step in range(count)]  # around the list

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
                if not isinstance(exc, asyncio.CancelledError) or being_cancelled():
                    raise
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            await close_quietly(connection, "the connection")


def _reason(exc: BaseException) -> str:
    """An exception in words, without any URL the client may have put in it."""
    text = str(exc)
    if "://" in text:  # the client's messages may quote the URL, credentials and all
        text = text.split("://", 1)[0].rsplit(" ", 1)[0] + " <url>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
