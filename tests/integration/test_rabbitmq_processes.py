"""One tree, two real processes with different placements, talking through RabbitMQ."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tree_app
from support.rabbit_cleanup import delete_names
from support.ready_process import start_ready

from actorbus import AsyncMessageBus
from actorbus.messages import known_types, subsystem_of

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

APP = Path(tree_app.__file__)


def start(url: str, prefix: str, actors: str) -> subprocess.Popen[str]:
    """Start the tree with ``actors`` placed in a new process; return once it is ready."""
    return start_ready(APP, url, prefix, actors, what=f"{actors} process")


def stop(process: subprocess.Popen[str]) -> None:
    """Close the process's standard input (its signal to shut down) and wait for it."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def processes(rabbitmq_url: str, unique_prefix: str) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The strategy and the risk parts of the tree, each in its own process."""
    started: dict[str, subprocess.Popen[str]] = {}
    try:
        started["risk"] = start(rabbitmq_url, unique_prefix, "risk")
        started["strategy"] = start(rabbitmq_url, unique_prefix, "strategy")
        yield started
    finally:
        for process in started.values():
            stop(process)
        names = [f"{unique_prefix}.actor.strategy", f"{unique_prefix}.actor.risk"]
        names.append(f"{unique_prefix}.dead_letters")
        # every known subsystem: this process knows the types other tests registered
        subsystems = {subsystem_of(t) for t in known_types()}
        exchanges = [f"{unique_prefix}.{s}" for s in sorted(subsystems)]
        asyncio.run(delete_names(rabbitmq_url, names, exchanges))


async def test_tree_split_over_two_processes(
    rabbitmq_url: str, unique_prefix: str, processes: dict[str, subprocess.Popen[str]]
) -> None:
    signals: list[dict[str, Any]] = []

    async def on_signal(message_type: str, data: Any) -> None:
        signals.append(data)

    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
    ) as bus:
        await bus.subscribe(tree_app.SIGNAL, on_signal)
        # ask from this (third) process to the risk actor in its own process
        verdict = await bus.ask(tree_app.CHECK, {"n": 4}, timeout=10)
        assert verdict == {"approved": True, "pid": processes["risk"].pid}
        for n in range(10):
            await bus.publish(tree_app.TICK, {"n": n})
        for _ in range(1000):
            if len(signals) >= 10:
                break
            await asyncio.sleep(0.01)
        queues, _ = bus.broker.declared_names()  # type: ignore[union-attr, attr-defined]
    assert sorted(s["n"] for s in signals) == list(range(10))
    for signal in signals:
        assert signal["strategy_pid"] == processes["strategy"].pid
        assert signal["risk"] == {"approved": signal["n"] % 2 == 0, "pid": processes["risk"].pid}
    await delete_names(rabbitmq_url, [q for q in queues if ".sub." in q], [])
