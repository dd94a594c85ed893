"""A small asyncio TCP proxy that breaks the link between a client and the broker.

Point the client at the proxy (``proxy.url``) instead of the broker, then:

- :meth:`TcpProxy.cut` aborts every open connection at once (both sides see a
  reset, as when a NAT or a load balancer drops its state); new connections are
  accepted and forwarded as before;
- :meth:`TcpProxy.blackhole` makes the link silent: bytes are no longer
  forwarded (they wait, unread, in the socket buffers) and new connections are
  accepted but never answered, like a network partition where packets vanish;
  :meth:`TcpProxy.heal` forwards again, late bytes first, as TCP would after
  retransmission.

It runs on the test's own event loop; everything it starts ends in :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

__all__ = ["TcpProxy"]

CHUNK = 64 * 1024


class _Link:
    """One proxied connection: the client's streams and the upstream's."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """Forward ``listen_port`` on 127.0.0.1 to ``target_host:target_port``; see the module docs."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1"
    ) -> None:
        self.target_host = target_host
        """Where connections are forwarded."""
        self.target_port = target_port
        """Port connections are forwarded to."""
        self.listen_host = listen_host
        """Where the proxy listens."""
        self.port = 0
        """The port the proxy listens on (picked by the OS at start)."""
        self.connections_total = 0
        """Connections accepted since start."""
        self.cuts = 0
        """Connections aborted by :meth:`cut`."""
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()

    @property
    def active(self) -> int:
        """Connections open right now."""
        return len(self._links)

    @property
    def blackholed(self) -> bool:
        """Whether the link is silent."""
        return not self._open.is_set()

    def url(self, broker_url: str = "amqp://guest:guest@127.0.0.1/") -> str:
        """``broker_url`` with host and port replaced by the proxy's."""
        parts = urlsplit(broker_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = (
            f"{credentials}@{self.listen_host}:{self.port}"
            if credentials
            else (f"{self.listen_host}:{self.port}")
        )
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, parts.fragment))

    async def start(self) -> TcpProxy:
        """Start listening on a free port."""
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening, abort every connection and wait for every task it started."""
        self._open.set()
        if self._server is not None:
            self._server.close()
        self.cut()
        tasks = list(self._handlers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def cut(self) -> int:
        """Abort every open connection; return how many were cut."""
        links = list(self._links)
        for link in links:
            link.abort()
        self.cuts += len(links)
        return len(links)

    def blackhole(self) -> None:
        """Stop forwarding: bytes and new connections wait until :meth:`heal`."""
        self._open.clear()

    def heal(self) -> None:
        """Forward again."""
        self._open.set()

    # -- internals ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        link = _Link(writer)
        self._links.add(link)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._open.wait()  # a connection opened during a blackhole is never answered
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port), 5.0
                )
            except (OSError, TimeoutError):
                writer.transport.abort()
                return
            link.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
            )
        finally:
            link.abort()
            self._links.discard(link)
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if not self._open.is_set():
                    await self._open.wait()  # hold the bytes: the peer sees silence
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other too, so both peers see the link go.
            writer.transport.abort()
