"""Acks of handled messages leave even while a handler never lets the loop turn.

A process whose synchronous handler never awaits dies (``os._exit``) after
handling some messages; a second process handles what is left. Every message
handled in the first process and not acknowledged before the crash is handled
again: their number must stay within the ack flush threshold, not be
"everything the first process handled".
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import ack_crash_app
import anyio.to_thread
import pytest
from support.rabbit_cleanup import delete_names

from actorbus import Envelope
from actorbus.brokers.base import QueueSpec
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker
from actorbus.messages import new_message_id

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

APP = Path(ack_crash_app.__file__)
MESSAGES = 600
DIE_AFTER = 400
ACK_COUNT = 16


def start(url: str, prefix: str, log: Path, die_after: int) -> subprocess.Popen[str]:
    """Start the consumer process; return once it is consuming."""
    process = subprocess.Popen(
        [sys.executable, str(APP), url, prefix, str(log), str(die_after), str(ACK_COUNT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready" and not (die_after and process.wait(30) == 17):
        process.kill()  # (one that dies as planned may do so before it says "ready")
        raise AssertionError(f"consumer did not start: {line!r}")
    return process


def wait_for_all(log: Path) -> None:
    """Wait (at most a minute, to stop a hang) until every message was handled once."""
    deadline = time.monotonic() + 60
    while len(handled(log)) < MESSAGES and time.monotonic() < deadline:
        time.sleep(0.05)


def handled(log: Path) -> Counter[int]:
    """How many times each message was handled, from the log."""
    return Counter(int(n) for n in log.read_text().split())


async def test_acks_leave_while_a_handler_never_awaits(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    queue = f"{unique_prefix}.actor.crasher"
    broker = AsyncRabbitMQBroker(rabbitmq_url, prefix=unique_prefix)
    await broker.connect()
    log = tmp_path / "handled.log"
    try:
        await broker.declare_queue(QueueSpec(name=queue, patterns=(ack_crash_app.WORK,)))
        for n in range(MESSAGES):
            envelope = Envelope(
                id=new_message_id(), type=ack_crash_app.WORK, data={"n": n}, timestamp=0.0
            )
            await broker.publish(envelope)
        first = start(rabbitmq_url, unique_prefix, log, DIE_AFTER)
        assert first.wait(60) == 17  # died in the handler, as planned
        assert first.stdout is not None
        first.stdout.close()
        assert first.stdin is not None
        first.stdin.close()
        second = start(rabbitmq_url, unique_prefix, log, 0)
        try:
            await anyio.to_thread.run_sync(wait_for_all, log)
        finally:
            assert second.stdin is not None
            second.stdin.close()
            second.wait(20)
            assert second.stdout is not None
            second.stdout.close()
        counts = handled(log)
        assert set(counts) == set(range(MESSAGES))  # none lost
        again = sum(counts.values()) - MESSAGES
        print(
            f"handled again after the crash: {again} of {DIE_AFTER} (ack_flush_count {ACK_COUNT})"
        )
        assert again <= ACK_COUNT
    finally:
        queues, exchanges = broker.declared_names()
        await broker.close()
        await delete_names(rabbitmq_url, [*queues, queue], exchanges)
