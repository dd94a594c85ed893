"""Publish-to-handled latency at a fixed rate (1k and 5k msgs/s), beside raw baselines.

Flat-out throughput says little about the tail a trading system sees: these
scenarios publish on a fixed schedule (message ``i`` due at ``start + i/rate``,
see :func:`actorbus.bench.paced`) and report p50, p99, p99.9 and max of the time
from publish to the end of the handler, from an HdrHistogram.

- actorbus: ``actorbus.bench.run_bench`` on a one-handler actor, in memory or
  over RabbitMQ (persistent, confirms, ack after the handler, prefetch 1000).
- raw in memory: one producer on the same schedule into an ``asyncio.Queue(1000)``,
  one consumer task; the latency runs from the put to the end of the consumer's work.
- raw aio-pika: persistent messages with publisher confirms (up to 1000 in flight),
  manual ack after handling, prefetch 1000; the publish time travels in a header
  and the latency is taken at the end of the handler, before its ack.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from typing import Any

import msgspec

from actorbus import Actor, Envelope, handles
from actorbus.bench import Latency, paced, run_bench, summarise

from .harness import Metrics, run_async
from .local import PAYLOAD, QUEUE_SIZE, TICK
from .rabbit import (
    BODY,
    PREFETCH,
    ROUTING_KEY,
    URL,
    WINDOW,
)
from .raw_pika import raw_run

__all__ = ["actorbus_at", "raw_aio_pika_at", "raw_queue_at"]

SENT = "x-sent"


class _Sink(Actor):
    """Handles a tick by reading its data, like the raw consumers do."""

    name = "latency_sink"

    @handles(TICK)
    async def on_tick(self, message: Envelope) -> None:
        message.data.get("seq")


def _metrics(latency: Latency, messages: int, seconds: float) -> Metrics:
    return {
        "rate": messages / seconds,
        "p50_us": latency.p50,
        "p99_us": latency.p99,
        "p999_us": latency.p999,
        "max_us": latency.max,
    }


def actorbus_at(mode: str, rate: float) -> Callable[[int], Metrics]:
    """The actorbus scenario at ``rate`` msgs/s in ``mode``, taking the message count."""

    def run(n: int) -> Metrics:
        result = run_bench(_Sink, TICK, lambda: PAYLOAD, count=n, rate=rate, mode=mode, url=URL)
        if result.unfinished or result.failed:
            raise RuntimeError(f"{result.unfinished} unfinished, {result.failed} failed")
        return _metrics(result.latency_us, result.messages, result.seconds)

    return run


def raw_queue_at(rate: float) -> Callable[[int], Metrics]:
    """A raw ``asyncio.Queue`` fed on the same schedule."""

    def run(n: int) -> Metrics:
        async def main() -> Metrics:
            queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue(QUEUE_SIZE)
            latencies = array("q")
            now = time.time

            async def consume() -> None:
                for _ in range(n):
                    sent, data = await queue.get()
                    data.get("seq")
                    latencies.append(int((now() - sent) * 1e6))

            consumer = asyncio.create_task(consume())
            _, start = await paced(
                lambda: queue.put((now(), PAYLOAD)), count=n, duration=None, rate=rate, window=1
            )
            await consumer
            return _metrics(summarise(latencies), n, time.perf_counter() - start)

        return run_async(main)

    return run


def raw_aio_pika_at(rate: float) -> Callable[[int], Metrics]:
    """Raw aio-pika, persistent and confirmed, acked after handling, on the same schedule."""

    def run(n: int) -> Metrics:
        async def main() -> Metrics:
            import aio_pika

            async with raw_run() as run:
                latencies = array("q")
                finished: list[float] = []
                done = asyncio.Event()
                channel = await run.connection.channel()
                await channel.set_qos(prefetch_count=PREFETCH)
                queue = await channel.get_queue(run.queue_name, ensure=False)

                async def on_message(message: Any) -> None:
                    msgspec.msgpack.decode(message.body).get("seq")
                    latencies.append(int((time.time() - float(message.headers[SENT])) * 1e6))
                    await message.ack()
                    if len(latencies) >= n:
                        finished.append(time.perf_counter())
                        done.set()

                await queue.consume(on_message, no_ack=False)

                def publish() -> Any:
                    message = aio_pika.Message(
                        BODY,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/msgpack",
                        type=ROUTING_KEY,
                        headers={SENT: repr(time.time())},
                    )
                    return run.exchange.publish(message, ROUTING_KEY)

                _, start = await paced(publish, count=n, duration=None, rate=rate, window=WINDOW)
                await done.wait()
                return _metrics(summarise(latencies), n, finished[0] - start)

        return run_async(main)

    return run
