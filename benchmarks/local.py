"""In-process scenarios: actorbus in memory against raw asyncio, under uvloop.

Every function takes a size and returns :data:`~benchmarks.harness.Metrics`;
each run builds its own event loop and its own in-memory server, and times only
the messages (start-up and shutdown are outside the clock).

- tell: one producer publishes ``n`` messages to one actor; the clock stops when
  the actor has handled the last one. Baseline: ``asyncio.Queue(maxsize=1000)``
  with one producer and one consumer task (the mailbox capacity is 1000 too).
- fan-out: one publisher, four subscribing actors; ``rate`` is messages
  published per second, ``deliveries`` is handled deliveries per second.
  Baseline: four ``asyncio.Queue(1000)``, the publisher putting into each.
- ask: ``n`` sequential request/reply round trips to one actor, with p50/p99.
  Baseline: a future sent with the request through an ``asyncio.Queue`` to a
  server task, which sets its result.
- publish_sync: four threads publish ``n`` messages in total with the sync
  face's ``publish_sync`` (each call returns once the broker has the message).
  Baseline: four threads doing ``run_coroutine_threadsafe(queue.put(item))`` and
  waiting for each, into an ``asyncio.Queue(1000)`` on a uvloop thread.

The single-loop scenarios report each rate twice, per wall-clock second and per
CPU second of the loop's thread (``*_cpu``, see :class:`Stopwatch`): on a
shared, loaded machine the second is the steadier measure of the code itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from actorbus import (
    Actor,
    AsyncMessageBus,
    ChildSpec,
    Envelope,
    MessageBus,
    Supervisor,
    handles,
    register_message_type,
)
from actorbus.brokers.memory import InMemoryServer

from .harness import Metrics, latency_metrics, run_async

__all__ = [
    "actorbus_ask",
    "actorbus_fanout",
    "actorbus_publish_sync",
    "actorbus_tell",
    "raw_ask",
    "raw_fanout",
    "raw_queue_tell",
    "raw_queue_tell_envelopes",
    "raw_threads_put",
]

TICK = register_message_type("bench.tick")
FANOUT = register_message_type("bench.fanout")
REQUEST = register_message_type("bench.request")

PAYLOAD: dict[str, Any] = {"symbol": "BTC-USD", "bid": 64_000.5, "ask": 64_001.0, "seq": 0}
"""The data of every message: a small market-data-like dict."""

QUEUE_SIZE = 1000
"""Capacity of the raw queues, equal to the actors' default mailbox size."""

FANOUT_ACTORS = 4
SYNC_THREADS = 4


class Stopwatch:
    """Wall-clock time and this thread's CPU time, from creation on.

    The in-process scenarios report each rate twice: per wall-clock second, and
    per CPU second of the thread running the event loop (``*_cpu``). On a shared
    machine the second is what the code itself costs: time spent preempted by
    other processes is not in it.
    """

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def rates(self, count: int, name: str = "rate") -> Metrics:
        """``count`` per wall second and per CPU second, as ``name`` and ``name_cpu``."""
        wall = time.perf_counter() - self.wall
        cpu = time.thread_time() - self.cpu
        return {name: count / wall, f"{name}_cpu": count / max(cpu, 1e-9)}

    def latencies(self, samples_ns: list[int]) -> Metrics:
        """Round trips per second (wall and CPU) and p50/p99 of the per-call latencies."""
        wall = time.perf_counter() - self.wall
        cpu = time.thread_time() - self.cpu
        metrics = latency_metrics(samples_ns, wall)
        metrics["round_trips_cpu"] = len(samples_ns) / max(cpu, 1e-9)
        return metrics


# -- raw baselines ---------------------------------------------------------------------------


def raw_queue_tell(n: int) -> Metrics:
    """One producer, one consumer, ``asyncio.Queue(maxsize=1000)``."""

    async def main() -> Metrics:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_SIZE)

        async def consume() -> None:
            get = queue.get
            for _ in range(n):
                await get()

        consumer = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0)
        put = queue.put
        clock = Stopwatch()
        for _ in range(n):
            await put(PAYLOAD)
        await consumer
        return clock.rates(n)

    return run_async(main)


def raw_queue_tell_envelopes(n: int) -> Metrics:
    """As :func:`raw_queue_tell`, the producer building an actorbus envelope per message."""
    from actorbus.messages import make_envelope

    async def main() -> Metrics:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_SIZE)

        async def consume() -> None:
            get = queue.get
            for _ in range(n):
                await get()

        consumer = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0)
        put = queue.put
        clock = Stopwatch()
        for _ in range(n):
            await put(make_envelope(TICK, PAYLOAD, source="bench"))
        await consumer
        return clock.rates(n)

    return run_async(main)


def raw_fanout(n: int) -> Metrics:
    """One producer putting each message into four ``asyncio.Queue(1000)``."""

    async def main() -> Metrics:
        queues: list[asyncio.Queue[Any]] = [
            asyncio.Queue(maxsize=QUEUE_SIZE) for _ in range(FANOUT_ACTORS)
        ]

        async def consume(queue: asyncio.Queue[Any]) -> None:
            get = queue.get
            for _ in range(n):
                await get()

        loop = asyncio.get_running_loop()
        consumers = [loop.create_task(consume(queue)) for queue in queues]
        await asyncio.sleep(0)
        clock = Stopwatch()
        for _ in range(n):
            for queue in queues:
                await queue.put(PAYLOAD)
        await asyncio.gather(*consumers)
        return clock.rates(n) | clock.rates(n * FANOUT_ACTORS, "deliveries")

    return run_async(main)


def raw_ask(n: int) -> Metrics:
    """Sequential round trips: a future travels with the request to a server task."""

    async def main() -> Metrics:
        requests: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue(QUEUE_SIZE)

        async def serve() -> None:
            get = requests.get
            while True:
                data, future = await get()
                if not future.done():
                    future.set_result(data)

        loop = asyncio.get_running_loop()
        server = loop.create_task(serve())
        await asyncio.sleep(0)
        samples: list[int] = []
        now = time.perf_counter_ns
        clock = Stopwatch()
        for i in range(n):
            began = now()
            future: asyncio.Future[Any] = loop.create_future()
            await requests.put((i, future))
            await future
            samples.append(now() - began)
        metrics = clock.latencies(samples)
        server.cancel()
        return metrics

    return run_async(main)


def raw_threads_put(n: int) -> Metrics:
    """Four threads hand messages to a uvloop thread's queue and wait for each put."""
    import uvloop

    loop = uvloop.new_event_loop()
    queue: asyncio.Queue[Any] | None = None
    done = threading.Event()
    ready = threading.Event()
    per_thread = max(1, n // SYNC_THREADS)
    total = per_thread * SYNC_THREADS

    async def consume() -> None:
        nonlocal queue
        queue = asyncio.Queue(maxsize=QUEUE_SIZE)
        ready.set()
        for _ in range(total):
            await queue.get()
        done.set()

    def loop_main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(consume())

    loop_thread = threading.Thread(target=loop_main, daemon=True)
    loop_thread.start()
    ready.wait(10)
    assert queue is not None
    target = queue

    def produce() -> None:
        for _ in range(per_thread):
            asyncio.run_coroutine_threadsafe(target.put(PAYLOAD), loop).result()

    elapsed = _threads(produce, done)
    loop_thread.join(10)
    loop.close()
    return {"rate": total / elapsed}


def _threads(produce: Callable[[], None], done: threading.Event) -> float:
    threads = [threading.Thread(target=produce, daemon=True) for _ in range(SYNC_THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    if not done.wait(120):
        raise TimeoutError("messages were not all consumed within 120s")
    return time.perf_counter() - start


# -- actorbus --------------------------------------------------------------------------------


class _Counter:
    """Counts handled messages and fires an event at the target."""

    __slots__ = ("count", "done", "target")

    def __init__(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


class _Sink(Actor):
    """Counts the messages it handles (an ``async def`` handler, as users write them)."""

    counter: _Counter

    def __init__(self, counter: _Counter) -> None:
        super().__init__()
        self.counter = counter

    @handles(TICK, FANOUT)
    async def on_message(self, message: Envelope) -> None:
        self.counter.hit()


class _Echo(Actor):
    """Answers every request with its data."""

    @handles(REQUEST)
    async def on_request(self, message: Envelope) -> Any:
        return message.data


def _sinks(counters: list[_Counter], prefix: str) -> Supervisor:
    return Supervisor(
        [
            ChildSpec(actor=_Sink, factory=lambda c=counter: _Sink(c), name=f"{prefix}{i}")
            for i, counter in enumerate(counters)
        ],
        name=prefix,
    )


def actorbus_tell(n: int) -> Metrics:
    """One producer publishing to one actor through the in-memory broker."""

    async def main() -> Metrics:
        counter = _Counter(n)
        async with AsyncMessageBus("in_memory", server=InMemoryServer()) as bus:
            await bus.spawn(_sinks([counter], "sink"))
            publish = bus.publish
            clock = Stopwatch()
            for _ in range(n):
                await publish(TICK, PAYLOAD)
            await counter.done.wait()
            return clock.rates(n)

    return run_async(main)


def actorbus_fanout(n: int) -> Metrics:
    """One publisher, four actors subscribed to the same type."""

    async def main() -> Metrics:
        counters = [_Counter(n) for _ in range(FANOUT_ACTORS)]
        async with AsyncMessageBus("in_memory", server=InMemoryServer()) as bus:
            await bus.spawn(_sinks(counters, "fan"))
            publish = bus.publish
            clock = Stopwatch()
            for _ in range(n):
                await publish(FANOUT, PAYLOAD)
            for counter in counters:
                await counter.done.wait()
            return clock.rates(n) | clock.rates(n * FANOUT_ACTORS, "deliveries")

    return run_async(main)


def actorbus_ask(n: int) -> Metrics:
    """Sequential ``bus.ask`` round trips to one actor."""

    async def main() -> Metrics:
        async with AsyncMessageBus("in_memory", server=InMemoryServer()) as bus:
            await bus.spawn(_Echo)
            ask = bus.ask
            for i in range(min(n, 100)):  # warm the caches, as the raw baseline needs none
                await ask(REQUEST, i)
            samples: list[int] = []
            now = time.perf_counter_ns
            clock = Stopwatch()
            for i in range(n):
                began = now()
                await ask(REQUEST, i)
                samples.append(now() - began)
            return clock.latencies(samples)

    return run_async(main)


def actorbus_publish_sync(n: int) -> Metrics:
    """Four threads calling ``MessageBus.publish_sync`` towards one actor."""
    per_thread = max(1, n // SYNC_THREADS)
    total = per_thread * SYNC_THREADS
    bus = MessageBus("in_memory", server=InMemoryServer())
    try:
        done = threading.Event()
        counter = _ThreadCounter(total, done)
        bus.spawn(
            ChildSpec(actor=_ThreadSink, factory=lambda: _ThreadSink(counter), name="sync-sink")
        )

        def produce() -> None:
            publish = bus.publish_sync
            for _ in range(per_thread):
                publish(TICK, PAYLOAD)

        elapsed = _threads(produce, done)
    finally:
        bus.shutdown()
    return {"rate": total / elapsed}


class _ThreadCounter:
    __slots__ = ("count", "done", "target")

    def __init__(self, target: int, done: threading.Event) -> None:
        self.count = 0
        self.target = target
        self.done = done

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


class _ThreadSink(Actor):
    def __init__(self, counter: _ThreadCounter) -> None:
        super().__init__()
        self.counter = counter

    @handles(TICK)
    async def on_message(self, message: Envelope) -> None:
        self.counter.hit()
