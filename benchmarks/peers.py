"""Peers: Pykka (local actors) and FastStream (RabbitMQ), when the ``bench`` extra is installed.

- Pykka tell: a ``ThreadingActor`` receiving ``n`` ``tell`` messages from the
  main thread; Pykka ask: ``n`` sequential ``ask`` round trips.
- FastStream: the RabbitMQ throughput scenario of :mod:`benchmarks.remote`
  with a FastStream subscriber (ack after the handler returns) and
  ``broker.publish(..., persist=True)`` on a channel with publisher confirms and
  the same prefetch, pipelined the same way.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any

from .harness import Metrics, latency_metrics, run_async
from .rabbit import PAYLOAD, PREFETCH, ROUTING_KEY, TIME_LIMIT, URL, cleanup, pipelined, unique

__all__ = ["faststream_missing", "faststream_rabbit", "pykka_ask", "pykka_missing", "pykka_tell"]


def pykka_missing() -> str | None:
    """Why the Pykka scenarios cannot run, or ``None``."""
    if importlib.util.find_spec("pykka") is None:
        return "pykka is not installed (pip install -e '.[bench]')"
    return None


def faststream_missing() -> str | None:
    """Why the FastStream scenario cannot run, or ``None``."""
    if importlib.util.find_spec("faststream") is None:
        return "faststream is not installed (pip install -e '.[bench]')"
    return None


def pykka_tell(n: int) -> Metrics:
    """``n`` tells from one thread to one Pykka threading actor."""
    import pykka

    done = threading.Event()

    class Sink(pykka.ThreadingActor):  # type: ignore[misc]
        count = 0

        def on_receive(self, message: Any) -> None:
            self.count += 1
            if self.count >= n:
                done.set()

    ref = Sink.start()
    try:
        tell = ref.tell
        start = time.perf_counter()
        for _ in range(n):
            tell(PAYLOAD)
        if not done.wait(TIME_LIMIT):
            raise TimeoutError("pykka actor did not receive every message")
        return {"rate": n / (time.perf_counter() - start)}
    finally:
        ref.stop()


def pykka_ask(n: int) -> Metrics:
    """``n`` sequential asks to one Pykka threading actor."""
    import pykka

    class Echo(pykka.ThreadingActor):  # type: ignore[misc]
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Echo.start()
    try:
        ask = ref.ask
        for _ in range(min(n, 100)):
            ask(PAYLOAD)
        samples: list[int] = []
        clock = time.perf_counter_ns
        start = time.perf_counter()
        for _ in range(n):
            began = clock()
            ask(PAYLOAD)
            samples.append(clock() - began)
        return latency_metrics(samples, time.perf_counter() - start)
    finally:
        ref.stop()


def faststream_rabbit(n: int) -> Metrics:
    """FastStream publisher and subscriber in one process, same guarantees as the raw run."""

    async def main() -> Metrics:
        import asyncio

        import aio_pika
        from faststream.rabbit import (
            Channel,
            ExchangeType,
            RabbitBroker,
            RabbitExchange,
            RabbitQueue,
        )

        exchange_name, queue_name = unique("x"), unique("q")
        broker = RabbitBroker(
            URL, default_channel=Channel(prefetch_count=PREFETCH), logger=None, log_level=50
        )
        exchange = RabbitExchange(exchange_name, type=ExchangeType.TOPIC, durable=True)
        queue = RabbitQueue(queue_name, durable=True, routing_key=ROUTING_KEY)
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        seen = 0

        @broker.subscriber(queue, exchange)
        async def handle(body: dict[str, Any]) -> None:
            nonlocal seen
            seen += 1
            if seen >= n and not done.done():
                done.set_result(time.time())

        try:
            async with asyncio.timeout(TIME_LIMIT):
                await broker.start()
                start = time.time()
                await pipelined(
                    n,
                    lambda: broker.publish(
                        PAYLOAD, exchange=exchange, routing_key=ROUTING_KEY, persist=True
                    ),
                )
                return {"rate": n / (await done - start)}
        finally:
            await broker.stop()
            admin = await aio_pika.connect(URL)
            await cleanup(admin, exchange_name, queue_name)

    return run_async(main)
