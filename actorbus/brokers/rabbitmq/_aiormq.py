"""The one module that reaches into aiormq's private internals, for the tested minor only.

The lean publish path (``_publisher``) writes frames straight into a channel's write
queue with the channel's own bookkeeping (delivery tags, confirm futures, the
message-id map for returns, its body splitting); the health check reads a channel's
registered consumer tags; the acker (``_acker``) writes settlements on the socket
writer of a connection, made through :class:`RecordingTransport`. None of this is
aiormq's public API, so it is pinned: importing this module with any aiormq but the
tested minor (``TESTED_MINOR``, the one ``pyproject.toml`` allows) raises
``ImportError`` naming both versions, rather than failing quietly later (a renamed
attribute would make every consumer look dead, or every publish fall back).
Everything else in the package goes through the functions here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping
from importlib.metadata import version
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

__all__ = [
    "AIORMQ_VERSION",
    "TESTED_MINOR",
    "RecordingTransport",
    "confirmations",
    "connection_idle",
    "consumer_tags",
    "message_id_tags",
    "next_delivery_tag",
    "remember",
    "split_body",
    "write_queue",
    "writer_of",
]

TESTED_MINOR = (7, 2)
"""The aiormq minor whose internals this module was written and tested against."""
AIORMQ_VERSION = version("aiormq")
"""The installed aiormq version."""


def check_version(installed: str) -> None:
    """Raise ``ImportError`` unless ``installed`` is of the tested aiormq minor."""
    try:
        minor = tuple(int(part) for part in installed.split(".")[:2])
    except ValueError:
        minor = ()
    if minor != TESTED_MINOR:
        tested = ".".join(str(part) for part in TESTED_MINOR)
        raise ImportError(
            f"actorbus's RabbitMQ broker needs aiormq {tested}.x (it uses that version's "
            f"channel internals), but aiormq {installed} is installed: "
            f"pip install 'aiormq>={tested},<{TESTED_MINOR[0]}.{TESTED_MINOR[1] + 1}'"
        )


check_version(AIORMQ_VERSION)


def confirmations(channel: AbstractChannel) -> dict[int, asyncio.Future[Any]]:
    """The confirm futures of a channel's unconfirmed publishes, by delivery tag."""
    futures: dict[int, asyncio.Future[Any]] = channel.confirmations  # type: ignore[attr-defined]
    return futures


def next_delivery_tag(channel: AbstractChannel) -> int:
    """Take the channel's next delivery tag (the channel's sole publisher calls this)."""
    inner: Any = channel
    inner.delivery_tag += 1
    tag: int = inner.delivery_tag
    return tag


def message_id_tags(channel: AbstractChannel) -> dict[str, int]:
    """The channel's map of mandatory publishes' message ids to delivery tags (returns)."""
    tags: dict[str, int] = channel.message_id_delivery_tag  # type: ignore[attr-defined]
    return tags


def write_queue(channel: AbstractChannel) -> asyncio.Queue[Any]:
    """The queue of marshalled frames the connection's writer task sends."""
    inner: Any = channel
    queue: asyncio.Queue[Any] = inner.write_queue
    return queue


def split_body(channel: AbstractChannel, body: bytes) -> Iterable[Any]:
    """The body frames of ``body``, cut to the channel's frame size."""
    inner: Any = channel
    frames: Iterable[Any] = inner._split_body(body)
    return frames


def consumer_tags(channel: AbstractChannel) -> Mapping[str, object]:
    """The consumer tags registered on a channel."""
    inner: Any = channel
    consumers: Mapping[str, object] = inner.consumers
    return consumers


def connection_idle(connection: AbstractConnection) -> bool:
    """Whether the connection's writer task has nothing queued (frame order is kept)."""
    return connection.write_queue.empty()


_writers: weakref.WeakKeyDictionary[AbstractConnection, asyncio.StreamWriter] = (
    weakref.WeakKeyDictionary()
)


class RecordingTransport(TransportFactory):
    """The client's TCP or TLS transport factory, keeping the writer it makes.

    The AMQP client writes frames from a task of its own, which runs only when the
    event loop gets a turn; a handler that never awaits keeps it from ever getting
    one. With the writer kept, the consumer's acker writes whole frames to the
    socket directly (no loop turn needed).
    """

    def __init__(self, tls: bool) -> None:
        self._inner: TransportFactory = TLSTransportFactory() if tls else TCPTransportFactory()
        self.writer: asyncio.StreamWriter | None = None
        """The stream writer of the last connection made."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the transport as the client would, and keep its writer."""
        reader, writer = await self._inner.create(url, **kwargs)
        self.writer = writer
        return reader, writer


def remember(connection: AbstractConnection, factory: RecordingTransport) -> None:
    """Note the writer ``factory`` made for ``connection``."""
    if factory.writer is not None:
        _writers[connection] = factory.writer


def writer_of(connection: AbstractConnection) -> asyncio.StreamWriter | None:
    """The stream writer of ``connection``, if it was opened through a recording factory."""
    return _writers.get(connection)
