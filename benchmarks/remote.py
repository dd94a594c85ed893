"""RabbitMQ scenarios of actorbus, with the guarantees of the raw aio-pika baseline.

The setting (persistence, confirms, acks, prefetch, the driver) is
:mod:`benchmarks.rabbit`'s; the baselines are in :mod:`benchmarks.raw_pika`.

``python -m benchmarks.remote consume <url> <queue> <count>`` (raw aio-pika) and
``consume-actorbus <url> <prefix> <count>`` are the consumer halves of the
two-process scenarios (each prints ``ready``, then the epoch time of its last
ack as JSON).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from typing import Any

from .harness import Metrics, run_async
from .rabbit import (
    PAYLOAD,
    TIME_LIMIT,
    URL,
    WINDOW,
    pipelined,
    rabbitmq_down,
    timed_asks,
    unique,
    with_consumer_process,
)
from .raw_pika import consumer_main

__all__ = [
    "actorbus_missing",
    "actorbus_rabbitmq",
    "actorbus_rabbitmq_ask",
    "actorbus_rabbitmq_batched",
    "actorbus_rabbitmq_coalesced",
    "actorbus_rabbitmq_plain",
    "actorbus_rabbitmq_two_processes",
    "batching_missing",
    "rabbit_bus",
    "shutdown_and_clean",
    "spawn_sink",
]


def actorbus_missing() -> str | None:
    """Why the actorbus RabbitMQ scenarios cannot run, or ``None``."""
    import importlib.util

    if importlib.util.find_spec("actorbus.brokers.rabbitmq") is None:
        return "actorbus has no RabbitMQ broker yet"
    return rabbitmq_down()


def rabbit_bus(prefix: str, **broker_options: Any) -> Any:
    """A bus over RabbitMQ; with ``broker_options``, on a broker made with them."""
    from actorbus import AsyncMessageBus

    if not broker_options:
        return AsyncMessageBus("rabbitmq", url=URL, prefix=prefix, fallback=False)
    from actorbus.brokers.factory import BrokerFactory

    broker = BrokerFactory(prefix=prefix, url=URL, rabbitmq_options=broker_options).rabbitmq()
    return AsyncMessageBus(broker=broker, prefix=prefix, fallback=False)


def batching_missing() -> str | None:
    """Why the batched RabbitMQ scenario cannot run, or ``None``."""
    reason = actorbus_missing()
    if reason is not None:
        return reason
    import inspect

    from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

    if "batch_types" not in inspect.signature(AsyncRabbitMQBroker).parameters:
        return "the RabbitMQ broker has no opt-in batching"
    return None


async def shutdown_and_clean(buses: list[Any], extra_queues: tuple[str, ...] = ()) -> None:
    """Shut the buses down, then delete every queue and exchange they declared."""
    import aio_pika

    from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

    queues: set[str] = set(extra_queues)
    exchanges: set[str] = set()
    for bus in buses:
        broker = bus.broker
        if isinstance(broker, AsyncRabbitMQBroker):
            declared_queues, declared_exchanges = broker.declared_names()
            queues.update(declared_queues)
            exchanges.update(declared_exchanges)
            queues.add(broker.dead_letter_queue)
        await bus.shutdown(timeout=2.0)
    admin = await aio_pika.connect(URL)
    try:
        for queue in sorted(q for q in queues if q):
            channel = await admin.channel()
            await channel.queue_delete(queue)
            await channel.close()
        for exchange in sorted(exchanges):
            channel = await admin.channel()
            await channel.exchange_delete(exchange)
            await channel.close()
    finally:
        await admin.close()


async def spawn_sink(bus: Any, count: int) -> asyncio.Event:
    """Spawn the sink actor on ``bus``; the event is set once it handled ``count`` messages."""
    from .local import _Counter, _sinks

    counter = _Counter(count)
    await bus.spawn(_sinks([counter], SINK))
    return counter.done


SINK = "sink"
"""Prefix of the sink actors' names (their queue is ``<prefix>.actor.sink0``)."""


def actorbus_rabbitmq_batched(n: int) -> Metrics:
    """As :func:`actorbus_rabbitmq`, the type batched 100 envelopes to an AMQP message."""
    return actorbus_rabbitmq(n, batch=100)


def actorbus_rabbitmq_coalesced(n: int) -> Metrics:
    """As :func:`actorbus_rabbitmq`, publishes coalesced into one socket write per loop turn."""
    return actorbus_rabbitmq(n, coalesce_writes=True)


def actorbus_rabbitmq_plain(n: int) -> Metrics:
    """As :func:`actorbus_rabbitmq`, each publish through aiormq's own ``basic_publish``."""
    return actorbus_rabbitmq(n, coalesce_writes=False)


def actorbus_rabbitmq(n: int, batch: int = 0, coalesce_writes: bool | None = None) -> Metrics:
    """One bus publishing to one of its own actors through RabbitMQ.

    ``batch``: the type goes that many envelopes to an AMQP message; ``coalesce_writes``
    picks the publish path (``None``: the broker's default).
    """
    from .local import TICK

    options: dict[str, Any] = {}
    if batch:
        options.update(batch_types=[TICK], batch_size=batch)
    if coalesce_writes is not None:
        options["coalesce_writes"] = coalesce_writes

    async def main() -> Metrics:
        bus = rabbit_bus(unique("ab"), **options)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()
                done = await spawn_sink(bus, n)
                start = time.perf_counter()
                # A batch is confirmed as a whole: keep enough publishes in flight
                # to fill several batches.
                window = WINDOW if not batch else max(WINDOW, 50 * batch)
                await pipelined(n, lambda: bus.publish(TICK, PAYLOAD), window)
                await done.wait()
                return {"rate": n / (time.perf_counter() - start)}
        finally:
            await shutdown_and_clean([bus])

    return run_async(main)


def actorbus_rabbitmq_two_processes(n: int) -> Metrics:
    """The publishing bus here, the actor's bus in another process."""
    from .local import TICK

    async def main() -> Metrics:
        prefix = unique("ab")
        bus = rabbit_bus(prefix)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()

                async def publish() -> None:
                    await pipelined(n, lambda: bus.publish(TICK, PAYLOAD))

                rate = await with_consumer_process("consume-actorbus", prefix, n, publish)
                return {"rate": rate}
        finally:
            await shutdown_and_clean([bus], (f"{prefix}.actor.{SINK}0",))

    return run_async(main)


def actorbus_rabbitmq_ask(n: int) -> Metrics:
    """Sequential ``bus.ask`` round trips to an actor of the same bus, through RabbitMQ."""
    from .local import REQUEST, _Echo

    async def main() -> Metrics:
        bus = rabbit_bus(unique("ab"))
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()
                await bus.spawn(_Echo)

                async def ask() -> None:
                    await bus.ask(REQUEST, 1)

                return await timed_asks(ask, n)
        finally:
            await shutdown_and_clean([bus])

    return run_async(main)


# -- the consumer process ------------------------------------------------------------------


async def _actorbus_consumer_main(url: str, prefix: str, count: int) -> None:
    from actorbus import AsyncMessageBus

    bus = AsyncMessageBus("rabbitmq", url=url, prefix=prefix, fallback=False)
    try:
        done = await spawn_sink(bus, count)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), TIME_LIMIT)
        print(json.dumps({"last": time.time()}), flush=True)
    finally:
        await bus.shutdown(timeout=2.0)


CONSUMERS: dict[str, Any] = {"consume": consumer_main, "consume-actorbus": _actorbus_consumer_main}
"""Consumer halves of the two-process scenarios, by name."""


def main(argv: list[str]) -> None:
    """Entry point of a consumer process."""
    kind, url, queue_name, count, *extra = argv
    consumer = CONSUMERS[kind]

    def run() -> Awaitable[None]:
        coroutine: Awaitable[None] = consumer(url, queue_name, int(count), *extra)
        return coroutine

    run_async(run)  # type: ignore[arg-type]


if __name__ == "__main__":
    main(sys.argv[1:])
