"""Cluster scenario C6: a message that kills its consumer process, on a quorum queue.

30 messages reach the ``worker`` actor in another process; number 7 ends that
process (``os._exit``) every time it is delivered. The test starts the
process again each time it dies, until every other message is handled and the
poison is in the dead-letter queue. Pass: exactly one dead letter, the poison,
with its reason (delivery limit reached, how many deliveries); every other
message handled; the process died at most ``limit + 1`` times.

The broker counts a delivery for every message the dead process held, not
only the poison; without the consumer's redelivery window (prefetch 1 after a
redelivery) the messages queued behind the poison would reach the limit too.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import poison_worker
import pytest
from cluster_scenario import record
from support.checker import LossChecker
from support.rabbit_cluster import RabbitCluster
from support.scenario import TICK

from actorbus import AsyncMessageBus

pytestmark = [pytest.mark.cluster, pytest.mark.anyio]

MESSAGES = 30
POISON_AT = 7
LIMIT = 3
MAX_STARTS = 12


def start_worker(urls: str, prefix: str, out: Path) -> subprocess.Popen[str]:
    """Start the worker process; return once it consumes (or once it died trying)."""
    process = subprocess.Popen(
        [sys.executable, poison_worker.__file__, urls, prefix, str(out), str(LIMIT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "ready", or nothing when the poison came first
    return process


def wait_exit(process: subprocess.Popen[str], timeout: float) -> int | None:
    """The process's exit code if it ends within ``timeout`` seconds, else ``None``."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def stop_worker(process: subprocess.Popen[str]) -> None:
    """Close its standard input (its signal to shut down) and wait; kill it (by pid) if stuck."""
    if process.poll() is None:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            stream.close()


async def test_c6_a_process_killing_poison_is_the_only_dead_letter(
    cluster: RabbitCluster,
    prefix: str,
    make_bus: Callable[..., AsyncMessageBus],
    tmp_path: Path,
) -> None:
    checker = LossChecker("C6. process-killing poison")
    out = tmp_path / "handled.txt"
    out.touch()
    worker = await asyncio.to_thread(start_worker, cluster.url, prefix, out)
    starts, deaths = 1, 0
    began = time.monotonic()
    try:
        async with make_bus(delivery_limit=LIMIT) as bus:
            poison_id = ""
            for seq in range(MESSAGES):
                envelope = bus.envelope(TICK, {"seq": seq, "poison": seq == POISON_AT})
                if seq == POISON_AT:
                    poison_id = envelope.id
                else:
                    checker.sent(envelope.id)
                await bus.publish_envelope(envelope)
                if seq != POISON_AT:
                    checker.confirmed(envelope.id)
            dead: list = []
            while time.monotonic() - began < 90:
                handled = set(out.read_text().split())
                if len(handled) >= MESSAGES - 1:
                    dead = await bus.dead_letters()
                    if dead:
                        break
                if worker.poll() is not None:
                    assert worker.returncode == poison_worker.POISON_EXIT, worker.returncode
                    deaths += 1
                    stop_worker(worker)
                    assert starts < MAX_STARTS, f"still dying after {starts} starts"
                    worker = await asyncio.to_thread(start_worker, cluster.url, prefix, out)
                    starts += 1
                await asyncio.sleep(0.1)
            # The death that put the poison aside may not have been seen yet.
            code = await asyncio.to_thread(wait_exit, worker, 3.0)
            if code is not None:
                assert code == poison_worker.POISON_EXIT, code
                deaths += 1
                stop_worker(worker)
                worker = await asyncio.to_thread(start_worker, cluster.url, prefix, out)
                starts += 1
            # Nothing may die any more once the poison is put aside.
            still_alive = await asyncio.to_thread(wait_exit, worker, 2.0) is None
            dead = await bus.dead_letters()
    finally:
        await asyncio.to_thread(stop_worker, worker)
    took = time.monotonic() - began
    for message_id in out.read_text().split():
        checker.handled(message_id)
    result = checker.result()
    entry = dead[0] if len(dead) == 1 else None
    record(
        "C6. process-killing poison on a quorum queue (consumer restarted until done)",
        result,
        recovery=None,
        note=(
            f"{len(dead)} dead letter(s) (expected 1: the poison, "
            f"{entry.error_type if entry else '?'} after {entry.attempts if entry else '?'} "
            f"deliveries, limit {LIMIT}); the process died {deaths} times; {took:.1f}s in all"
        ),
        extra={"reason": entry.reason if entry else None, "deaths": deaths},
    )
    assert [e.envelope.id for e in dead] == [poison_id], [e.reason for e in dead]
    assert entry is not None
    assert entry.error_type == "DeliveryLimitReached"
    assert entry.attempts == LIMIT + 1
    assert f"delivered {LIMIT + 1} times (limit {LIMIT})" in entry.reason
    # This process never consumed the worker's queue: the entry names the queue itself.
    assert entry.actor == f"{prefix}.actor.worker"
    assert entry.queue == f"{prefix}.actor.worker"
    # Each delivery of the poison ends its process; one may also end with a connection
    # the broker closed (a cluster just restarted), which counts as a delivery too.
    assert 1 <= deaths <= LIMIT + 1, deaths
    assert still_alive, "the worker died after the poison was put aside"
    assert result.received == MESSAGES - 1, result.summary()
    assert result.lost == 0, result.summary()
