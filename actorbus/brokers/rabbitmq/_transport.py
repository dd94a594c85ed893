"""The socket writer of each connection, so an acknowledgement can be written at once.

The AMQP client writes frames from a task of its own, which runs only when the
event loop gets a turn. A handler that never awaits keeps the loop from ever
getting one, so acknowledgements of handled messages would wait (and be lost
at a crash). :class:`RecordingTransport` is the client's own transport factory
(TCP or TLS) that keeps the stream writer it made; :func:`writer_of` gives it
back for a connection, and the consumer's :class:`~._acker.Acker` writes
whole frames to it directly (a socket write, no loop turn needed).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiormq.abc import AbstractConnection
from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

__all__ = ["RecordingTransport", "remember", "writer_of"]

_writers: weakref.WeakKeyDictionary[AbstractConnection, asyncio.StreamWriter] = (
    weakref.WeakKeyDictionary()
)


class RecordingTransport(TransportFactory):
    """The client's TCP or TLS transport factory, keeping the writer it makes."""

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
