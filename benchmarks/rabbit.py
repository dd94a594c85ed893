"""What every RabbitMQ scenario shares: the broker, the sizes, the driver, the cleanup.

Every message is its own AMQP message, persistent, published to a durable topic
exchange and routed to a durable queue, with publisher confirms (pipelined:
up to :data:`WINDOW` unconfirmed at once) and manual acks after handling, with
a prefetch of :data:`PREFETCH` (the actors' default mailbox capacity). The clock
runs from the first publish to the last ack.

Only 127.0.0.1 is used. Every run declares exchanges and queues with a fresh
random name and deletes them afterwards; every run is bounded by
:data:`TIME_LIMIT` seconds.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import msgspec

from .harness import Metrics, latency_metrics

__all__ = [
    "BODY",
    "HOST",
    "PAYLOAD",
    "PREFETCH",
    "ROUTING_KEY",
    "TIME_LIMIT",
    "URL",
    "WINDOW",
    "cleanup",
    "pipelined",
    "rabbitmq_down",
    "timed_asks",
    "unique",
    "with_consumer_process",
]

HOST = "127.0.0.1"
PORT = 5672
URL = f"amqp://guest:guest@{HOST}:{PORT}/"
"""The shared broker; benchmarks talk to nothing else."""

PREFETCH = 1000
"""Consumer prefetch, equal to the default mailbox capacity."""
WINDOW = 1000
"""Most publishes awaiting their confirm at once."""
TIME_LIMIT = 120.0
"""Seconds one run may take before it is abandoned."""
CHILD_EXIT_TIMEOUT = 30.0
"""Seconds a consumer process may take to shut down (and delete its queues) once done."""

PAYLOAD: dict[str, Any] = {"symbol": "BTC-USD", "bid": 64_000.5, "ask": 64_001.0, "seq": 0}
ROUTING_KEY = "bench.tick"
BODY = msgspec.msgpack.encode(PAYLOAD)


def rabbitmq_down() -> str | None:
    """Why the RabbitMQ scenarios cannot run, or ``None`` when the broker answers."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1.0):
            return None
    except OSError as exc:
        return f"RabbitMQ is not reachable on {HOST}:{PORT} ({exc})"


def unique(kind: str) -> str:
    """A fresh exchange or queue name for one run."""
    return f"bench.{kind}.{uuid.uuid4().hex[:12]}"


async def pipelined(count: int, publish: Any, window: int = WINDOW) -> None:
    """Await ``publish()`` ``count`` times with up to ``window`` of them in flight.

    ``window`` workers each publish their share one after another (a task per
    worker, not per message, so the driver itself costs little).
    """
    workers = max(1, min(window, count))
    share, extra = divmod(count, workers)

    async def worker(times: int) -> None:
        for _ in range(times):
            await publish()

    await asyncio.gather(*(worker(share + (i < extra)) for i in range(workers)))


async def cleanup(connection: Any, exchange_name: str | None, queue_name: str | None) -> None:
    """Close ``connection`` (its consumers first), then delete the run's exchange and queue."""
    import aio_pika

    await connection.close()
    admin = await aio_pika.connect(URL)
    try:
        channel = await admin.channel()
        if queue_name is not None:
            await channel.queue_delete(queue_name)
        if exchange_name is not None:
            await channel.exchange_delete(exchange_name)
    finally:
        await admin.close()


async def with_consumer_process(
    kind: str, queue_name: str, n: int, publish: Any, *extra: str
) -> float:
    """Run ``python -m benchmarks.remote <kind> ...`` as the consumer; return the rate."""
    child = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
        [sys.executable, "-m", "benchmarks.remote", kind, URL, queue_name, str(n), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        stdout = child.stdout
        line = await asyncio.to_thread(stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"consumer process did not start: {line!r}")
        start = time.time()
        await publish()
        line = await asyncio.to_thread(stdout.readline)
        last = float(json.loads(line)["last"])
        # let it shut down on its own: a process cut short leaves its queues behind
        await asyncio.to_thread(child.wait, CHILD_EXIT_TIMEOUT)
        return n / (last - start)
    finally:
        if child.poll() is None:
            child.terminate()
        await asyncio.to_thread(child.wait, 10)
        if child.stdout is not None:
            child.stdout.close()


async def timed_asks(ask: Any, n: int) -> Metrics:
    """Time ``n`` sequential ``ask()`` round trips (after 20 unmeasured): latency metrics."""
    for _ in range(min(20, n)):
        await ask()
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for _ in range(n):
        began = clock()
        await ask()
        samples.append(clock() - began)
    return latency_metrics(samples, time.perf_counter() - start)
