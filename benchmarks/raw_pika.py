"""The raw aio-pika baselines of the RabbitMQ scenarios, with the same guarantees.

Persistent messages, publisher confirms, manual acks after handling and the
prefetch of :mod:`benchmarks.rabbit`; what actorbus is measured against.
``_consumer_main`` is the consumer half of the two-process baseline (run by
``python -m benchmarks.remote consume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import msgspec

from .harness import Metrics, run_async
from .rabbit import (
    BODY,
    PREFETCH,
    ROUTING_KEY,
    TIME_LIMIT,
    URL,
    cleanup,
    pipelined,
    timed_asks,
    unique,
    with_consumer_process,
)

__all__ = [
    "RawRun",
    "consume_raw",
    "consumer_main",
    "declare",
    "raw_aio_pika",
    "raw_aio_pika_ask",
    "raw_aio_pika_two_processes",
]


async def declare(connection: Any, exchange_name: str, queue_name: str) -> tuple[Any, Any, Any]:
    """A confirming channel, the run's durable topic exchange, and its bound durable queue."""
    import aio_pika

    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(queue_name, durable=True)
    await queue.bind(exchange, ROUTING_KEY)
    return channel, exchange, queue


class RawRun(NamedTuple):
    """One raw run's connection, confirming channel, exchange and queue name."""

    connection: Any
    channel: Any
    exchange: Any
    queue_name: str


@contextlib.asynccontextmanager
async def raw_run() -> AsyncIterator[RawRun]:
    """Connect and declare a fresh exchange and queue; within ``TIME_LIMIT``; clean up after."""
    import aio_pika

    exchange_name, queue_name = unique("x"), unique("q")
    connection = await aio_pika.connect(URL)
    try:
        async with asyncio.timeout(TIME_LIMIT):
            channel, exchange, _ = await declare(connection, exchange_name, queue_name)
            yield RawRun(connection, channel, exchange, queue_name)
    finally:
        await cleanup(connection, exchange_name, queue_name)


def _message() -> Any:
    import aio_pika

    return aio_pika.Message(
        BODY,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/msgpack",
        type=ROUTING_KEY,
        message_id=uuid.uuid4().hex,
        timestamp=time.time(),
    )


async def consume_raw(connection: Any, queue_name: str, count: int) -> asyncio.Future[float]:
    """Start a manual-ack consumer; the future gets the time of the ``count``-th ack."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.get_queue(queue_name, ensure=False)
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    seen = 0

    async def on_message(message: Any) -> None:
        nonlocal seen
        msgspec.msgpack.decode(message.body)
        await message.ack()
        seen += 1
        if seen >= count and not done.done():
            done.set_result(time.time())

    await queue.consume(on_message, no_ack=False)
    return done


def raw_aio_pika(n: int) -> Metrics:
    """Publisher and consumer in one process, both on aio-pika."""

    async def main() -> Metrics:
        async with raw_run() as run:
            done = await consume_raw(run.connection, run.queue_name, n)
            start = time.time()
            await pipelined(n, lambda: run.exchange.publish(_message(), ROUTING_KEY))
            last = await done
            return {"rate": n / (last - start)}

    return run_async(main)


def raw_aio_pika_two_processes(n: int) -> Metrics:
    """The publisher here, the consumer in another process (both aio-pika)."""

    async def main() -> Metrics:
        async with raw_run() as run:

            async def publish() -> None:
                await pipelined(n, lambda: run.exchange.publish(_message(), ROUTING_KEY))

            return {"rate": await with_consumer_process("consume", run.queue_name, n, publish)}

    return run_async(main)


def raw_aio_pika_ask(n: int) -> Metrics:
    """Sequential RPC: persistent, confirmed request; the server acks after replying."""

    async def main() -> Metrics:
        import aio_pika

        async with raw_run() as run:
            server_channel = await run.connection.channel()
            await server_channel.set_qos(prefetch_count=PREFETCH)
            server_queue = await server_channel.get_queue(run.queue_name, ensure=False)

            async def serve(message: Any) -> None:
                await server_channel.default_exchange.publish(
                    aio_pika.Message(message.body, correlation_id=message.correlation_id),
                    routing_key=message.reply_to,
                )
                await message.ack()

            await server_queue.consume(serve, no_ack=False)
            replies = await run.channel.declare_queue(exclusive=True, auto_delete=True)
            pending: dict[str, asyncio.Future[bytes]] = {}

            async def on_reply(message: Any) -> None:
                future = pending.pop(message.correlation_id, None)
                if future is not None and not future.done():
                    future.set_result(message.body)

            await replies.consume(on_reply, no_ack=True)
            loop = asyncio.get_running_loop()

            async def ask() -> None:
                correlation_id = uuid.uuid4().hex
                future = pending[correlation_id] = loop.create_future()
                await run.exchange.publish(
                    aio_pika.Message(
                        BODY,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        correlation_id=correlation_id,
                        reply_to=replies.name,
                    ),
                    ROUTING_KEY,
                )
                await future

            return await timed_asks(ask, n)

    return run_async(main)


async def consumer_main(url: str, queue_name: str, count: int) -> None:
    """The consumer process of the two-process baseline: ``ready``, then its last ack."""
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        done = await consume_raw(connection, queue_name, count)
        print("ready", flush=True)
        last = await asyncio.wait_for(done, TIME_LIMIT)
        print(json.dumps({"last": last}), flush=True)
    finally:
        await connection.close()
