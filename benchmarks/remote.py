"""RabbitMQ scenarios: the raw aio-pika baseline and actorbus, with the same guarantees.

Every message is its own AMQP message, persistent, published to a durable topic
exchange and routed to a durable queue, with publisher confirms (pipelined:
up to :data:`WINDOW` unconfirmed at once) and manual acks after handling, with
a prefetch of :data:`PREFETCH` (the actors' default mailbox capacity). The clock
runs from the first publish to the last ack.

Only 127.0.0.1 is used. Every run declares exchanges and queues with a fresh
random name and deletes them afterwards; every run is bounded by
:data:`TIME_LIMIT` seconds.

``python -m benchmarks.remote consume <url> <queue> <count>`` is the consumer
half of the two-process scenarios (it prints ``ready``, then the epoch time of
its last ack as JSON).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import msgspec

from .harness import Metrics, latency_metrics, run_async

__all__ = [
    "HOST",
    "PREFETCH",
    "URL",
    "WINDOW",
    "actorbus_missing",
    "actorbus_rabbitmq",
    "actorbus_rabbitmq_ask",
    "actorbus_rabbitmq_batched",
    "actorbus_rabbitmq_coalesced",
    "actorbus_rabbitmq_plain",
    "actorbus_rabbitmq_two_processes",
    "batching_missing",
    "rabbitmq_down",
    "raw_aio_pika",
    "raw_aio_pika_ask",
    "raw_aio_pika_two_processes",
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


# -- raw aio-pika --------------------------------------------------------------------------


async def _declare(connection: Any, exchange_name: str, queue_name: str) -> tuple[Any, Any, Any]:
    import aio_pika

    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(queue_name, durable=True)
    await queue.bind(exchange, ROUTING_KEY)
    return channel, exchange, queue


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


async def _consume_raw(connection: Any, queue_name: str, count: int) -> asyncio.Future[float]:
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


def raw_aio_pika(n: int) -> Metrics:
    """Publisher and consumer in one process, both on aio-pika."""

    async def main() -> Metrics:
        import aio_pika

        exchange_name, queue_name = unique("x"), unique("q")
        connection = await aio_pika.connect(URL)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                _, exchange, _ = await _declare(connection, exchange_name, queue_name)
                done = await _consume_raw(connection, queue_name, n)
                start = time.time()
                await pipelined(n, lambda: exchange.publish(_message(), ROUTING_KEY))
                last = await done
                return {"rate": n / (last - start)}
        finally:
            await cleanup(connection, exchange_name, queue_name)

    return run_async(main)


def raw_aio_pika_two_processes(n: int) -> Metrics:
    """The publisher here, the consumer in another process (both aio-pika)."""

    async def main() -> Metrics:
        import aio_pika

        exchange_name, queue_name = unique("x"), unique("q")
        connection = await aio_pika.connect(URL)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                _, exchange, _ = await _declare(connection, exchange_name, queue_name)

                async def publish() -> None:
                    await pipelined(n, lambda: exchange.publish(_message(), ROUTING_KEY))

                return {"rate": await _with_consumer_process("consume", queue_name, n, publish)}
        finally:
            await cleanup(connection, exchange_name, queue_name)

    return run_async(main)


async def _with_consumer_process(
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
        return n / (last - start)
    finally:
        if child.poll() is None:
            child.terminate()
        await asyncio.to_thread(child.wait, 10)
        if child.stdout is not None:
            child.stdout.close()


def raw_aio_pika_ask(n: int) -> Metrics:
    """Sequential RPC: persistent, confirmed request; the server acks after replying."""

    async def main() -> Metrics:
        import aio_pika

        exchange_name, queue_name = unique("x"), unique("q")
        connection = await aio_pika.connect(URL)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                channel, exchange, _ = await _declare(connection, exchange_name, queue_name)
                server_channel = await connection.channel()
                await server_channel.set_qos(prefetch_count=PREFETCH)
                server_queue = await server_channel.get_queue(queue_name, ensure=False)

                async def serve(message: Any) -> None:
                    await server_channel.default_exchange.publish(
                        aio_pika.Message(message.body, correlation_id=message.correlation_id),
                        routing_key=message.reply_to,
                    )
                    await message.ack()

                await server_queue.consume(serve, no_ack=False)
                replies = await channel.declare_queue(exclusive=True, auto_delete=True)
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
                    await exchange.publish(
                        aio_pika.Message(
                            BODY,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            correlation_id=correlation_id,
                            reply_to=replies.name,
                        ),
                        ROUTING_KEY,
                    )
                    await future

                return await _timed_asks(ask, n)
        finally:
            await cleanup(connection, exchange_name, queue_name)

    return run_async(main)


async def _timed_asks(ask: Any, n: int) -> Metrics:
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


# -- actorbus ------------------------------------------------------------------------------


def actorbus_missing() -> str | None:
    """Why the actorbus RabbitMQ scenarios cannot run, or ``None``."""
    import importlib.util

    if importlib.util.find_spec("actorbus.brokers.rabbitmq") is None:
        return "actorbus has no RabbitMQ broker yet"
    return rabbitmq_down()


def _rabbit_bus(prefix: str, **broker_options: Any) -> Any:
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


async def _shutdown_and_clean(buses: list[Any], extra_queues: tuple[str, ...] = ()) -> None:
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


async def _spawn_sink(bus: Any, count: int) -> asyncio.Event:
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
        bus = _rabbit_bus(unique("ab"), **options)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()
                done = await _spawn_sink(bus, n)
                start = time.perf_counter()
                # A batch is confirmed as a whole: keep enough publishes in flight
                # to fill several batches.
                window = WINDOW if not batch else max(WINDOW, 50 * batch)
                await pipelined(n, lambda: bus.publish(TICK, PAYLOAD), window)
                await done.wait()
                return {"rate": n / (time.perf_counter() - start)}
        finally:
            await _shutdown_and_clean([bus])

    return run_async(main)


def actorbus_rabbitmq_two_processes(n: int) -> Metrics:
    """The publishing bus here, the actor's bus in another process."""
    from .local import TICK

    async def main() -> Metrics:
        prefix = unique("ab")
        bus = _rabbit_bus(prefix)
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()

                async def publish() -> None:
                    await pipelined(n, lambda: bus.publish(TICK, PAYLOAD))

                rate = await _with_consumer_process("consume-actorbus", prefix, n, publish)
                return {"rate": rate}
        finally:
            await _shutdown_and_clean([bus], (f"{prefix}.actor.{SINK}0",))

    return run_async(main)


def actorbus_rabbitmq_ask(n: int) -> Metrics:
    """Sequential ``bus.ask`` round trips to an actor of the same bus, through RabbitMQ."""
    from .local import REQUEST, _Echo

    async def main() -> Metrics:
        bus = _rabbit_bus(unique("ab"))
        try:
            async with asyncio.timeout(TIME_LIMIT):
                await bus.start()
                await bus.spawn(_Echo)

                async def ask() -> None:
                    await bus.ask(REQUEST, 1)

                return await _timed_asks(ask, n)
        finally:
            await _shutdown_and_clean([bus])

    return run_async(main)


# -- the consumer process ------------------------------------------------------------------


async def _consumer_main(url: str, queue_name: str, count: int) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        done = await _consume_raw(connection, queue_name, count)
        print("ready", flush=True)
        last = await asyncio.wait_for(done, TIME_LIMIT)
        print(json.dumps({"last": last}), flush=True)
    finally:
        await connection.close()


async def _actorbus_consumer_main(url: str, prefix: str, count: int) -> None:
    from actorbus import AsyncMessageBus

    bus = AsyncMessageBus("rabbitmq", url=url, prefix=prefix, fallback=False)
    try:
        done = await _spawn_sink(bus, count)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), TIME_LIMIT)
        print(json.dumps({"last": time.time()}), flush=True)
    finally:
        await bus.shutdown(timeout=2.0)


CONSUMERS: dict[str, Any] = {"consume": _consumer_main, "consume-actorbus": _actorbus_consumer_main}
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
