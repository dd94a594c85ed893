"""Deleting what a test declared on a broker."""

from __future__ import annotations

import aiormq


async def delete_names(url: str, queues: list[str], exchanges: list[str]) -> None:
    """Delete queues and exchanges on the broker at ``url``, ignoring missing ones."""
    connection = await aiormq.connect(url)
    try:
        for name in queues:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            await channel.exchange_delete(name)
            await channel.close()
    finally:
        await connection.close()
