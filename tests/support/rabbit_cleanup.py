"""Deleting what a test declared on a broker."""

from __future__ import annotations

import subprocess

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


def list_names(kind: str) -> list[str]:
    """Names of the shared broker's ``queues`` or ``exchanges`` (``rabbitmqctl``; [] if absent)."""
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", f"list_{kind}", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines()[1:] if line.strip()]


async def delete_under_prefixes(url: str, prefixes: tuple[str, ...]) -> None:
    """Delete every queue and exchange whose name starts with one of ``prefixes``."""
    queues = [name for name in list_names("queues") if name.startswith(prefixes)]
    exchanges = [name for name in list_names("exchanges") if name.startswith(prefixes)]
    if queues or exchanges:
        await delete_names(url, queues, exchanges)
