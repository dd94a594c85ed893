"""Two real processes, each subscribing its module-level ``handler`` to another type."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from support.rabbit_cleanup import delete_names
from support.ready_process import start_ready

from actorbus import AsyncMessageBus, MessageTypes
from actorbus.messages import known_types, subsystem_of

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

APP = Path(__file__).with_name("subscriber_app.py")
SIGNAL = MessageTypes.STRATEGY_SIGNAL
POSITION = MessageTypes.POSITION_UPDATE
COUNT = 100


def start(url: str, prefix: str, message_type: str) -> subprocess.Popen[str]:
    """Start one subscriber process; return once it is subscribed."""
    return start_ready(APP, url, prefix, message_type, what=f"subscriber of {message_type}")


def read_until(process: subprocess.Popen[str], message_type: str, count: int) -> None:
    """Read the process's reports until it has received ``count`` of ``message_type``."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.split() == [str(message_type), str(count)]:
            return
    raise AssertionError(f"the subscriber of {message_type} ended early")


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    """Close the process's input and return its summary."""
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    out = process.stdout.read()
    process.stdout.close()
    process.wait(30)
    summary: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return summary


async def test_two_programs_with_a_handler_each_get_exactly_their_own(
    rabbitmq_url: str, unique_prefix: str
) -> None:
    processes = {t: start(rabbitmq_url, unique_prefix, t) for t in (SIGNAL, POSITION)}
    queues: set[str] = set()
    try:
        async with AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        ) as bus:
            for message_type in (SIGNAL, POSITION):
                for n in range(COUNT):
                    await bus.publish(message_type, {"n": n})
        for message_type, process in processes.items():
            await asyncio.wait_for(asyncio.to_thread(read_until, process, message_type, COUNT), 60)
        summaries = {t: finish(p) for t, p in processes.items()}
        for summary in summaries.values():
            queues.update(summary["queues"])  # type: ignore[arg-type]
        assert summaries[SIGNAL]["received"] == {SIGNAL: COUNT}
        assert summaries[POSITION]["received"] == {POSITION: COUNT}
        assert len([q for q in queues if ".sub." in q]) == 2, "one queue per subscription"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)
            if process.stdout is not None:
                process.stdout.close()
        subsystems = {subsystem_of(t) for t in known_types()}
        await delete_names(
            rabbitmq_url,
            sorted(queues | {f"{unique_prefix}.dead_letters"}),
            [f"{unique_prefix}.{s}" for s in sorted(subsystems)],
        )
