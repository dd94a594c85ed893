"""Helpers of the trading-system tests: collecting messages, running the CLI, broker cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiormq

from actorbus import AsyncMessageBus, MessageTypes
from actorbus_trading.system import ACTOR_NAMES

ROOT = Path(__file__).resolve().parent.parent


async def collect(bus: AsyncMessageBus, *message_types: str) -> list[tuple[str, Any]]:
    """Subscribe a collector to ``message_types``; return the list it fills."""
    seen: list[tuple[str, Any]] = []

    async def collector(message_type: str, data: Any) -> None:
        seen.append((str(message_type), data))

    for message_type in message_types:
        await bus.subscribe(message_type, collector)
    return seen


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def of_type(seen: list[tuple[str, Any]], message_type: str) -> list[Any]:
    """The data of the collected messages of one type."""
    return [data for kind, data in seen if kind == message_type]


def field(data: Any, name: str) -> Any:
    """A field of a payload that may be a dict or a Struct."""
    return data[name] if isinstance(data, dict) else getattr(data, name)


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: mode and URL variables removed."""
    env = dict(os.environ)
    env.pop("TRADING_SYSTEM_MESSAGE_BUS_MODE", None)
    env.pop("TRADING_SYSTEM_RABBITMQ_URL", None)
    return env


def actorbus_command(*args: str) -> list[str]:
    """The command line running ``actorbus`` with this interpreter."""
    return [
        sys.executable,
        "-c",
        "import sys; from actorbus.cli import main; sys.exit(main())",
        *args,
    ]


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``actorbus ARGS`` in a subprocess and return what it did."""
    return subprocess.run(
        actorbus_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=ROOT,
        check=False,
    )


def run_json(*args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run ``actorbus run ARGS --json --quiet``; return the parsed report (exit code 0 or 1)."""
    done = run_cli("run", *args, "--json", "--quiet", timeout=timeout)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    report["exit_code"] = done.returncode
    return report


async def delete_prefix(url: str, prefix: str, queues: Sequence[str] = ()) -> None:
    """Delete what a trading run declared under ``prefix`` on the broker at ``url``."""
    names = [f"{prefix}.actor.{name}" for name in ACTOR_NAMES]
    names += [f"{prefix}.dead_letters", *queues]
    subsystems = {t.subsystem for t in MessageTypes}
    connection = await aiormq.connect(url)
    try:
        for name in names:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()
        for subsystem in sorted(subsystems):
            channel = await connection.channel()
            await channel.exchange_delete(f"{prefix}.{subsystem}")
            await channel.close()
    finally:
        await connection.close()
