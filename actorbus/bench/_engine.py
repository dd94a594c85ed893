"""The benchmark itself: spawn the timed tree on a fresh bus, publish, wait, measure."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._loops import run as run_on_fresh_loop
from ..brokers.base import MessageBroker
from ..brokers.factory import BrokerFactory
from ..bus import AsyncMessageBus
from ..config import resolve_url
from ..errors import SchemaError
from ..messages import is_known_type, validate_data
from ._instrument import SENT_HEADER, SOURCE, Recorder, build_tree
from ._pacing import paced
from ._result import BenchResult, histogram_class, summarise
from ._target import BenchError, Payload, Target

__all__ = ["Progress", "bench", "run_bench"]

Progress = Callable[[int, int | None], None]
"""Called four times a second with deliveries completed and the total expected
(``None`` while a ``duration`` run is still publishing)."""

MODES = ("in_memory", "rabbitmq")
RABBITMQ_WINDOW = 1000
"""Publishes awaiting their confirm at once over RabbitMQ (each waits for its confirm)."""


def _check(count: int | None, duration: float | None, rate: float, mode: str) -> None:
    if (count is None) == (duration is None):
        raise BenchError("give exactly one of count and duration")
    if count is not None and count < 1:
        raise BenchError(f"count must be at least 1, not {count}")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise BenchError(f"duration must be a positive number of seconds, not {duration}")
    if not (math.isfinite(rate) and rate >= 0):
        raise BenchError(f"rate must be a finite number >= 0 (0: as fast as it goes), not {rate}")
    if mode not in MODES:
        raise BenchError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def _broker(mode: str, url: str | None, prefix: str) -> MessageBroker | None:
    if mode != "rabbitmq":
        return None
    return BrokerFactory(prefix=prefix, url=url).rabbitmq()


async def _delete_declared(broker: Any, url: str | None) -> None:
    """Delete every queue and exchange the run declared (the bus has shut down)."""
    import aiormq

    queues, exchanges = broker.declared_names()
    connection = await aiormq.connect(resolve_url(url))
    try:
        for name in sorted({*queues, broker.dead_letter_queue}):
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()
        for name in sorted(set(exchanges)):
            channel = await connection.channel()
            await channel.exchange_delete(name)
            await channel.close()
    finally:
        await connection.close()


async def _report_progress(recorder: Recorder, progress: Progress) -> None:
    while True:
        expected = recorder.expected
        progress(recorder.completed, None if math.isinf(expected) else int(expected))
        await asyncio.sleep(0.25)


async def _wait_finished(recorder: Recorder, drain_timeout: float) -> None:
    """Wait for the last delivery, giving up after ``drain_timeout`` s without progress."""
    while not recorder.finished.is_set():
        before = recorder.completed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.finished.wait(), drain_timeout)
        if recorder.completed == before:
            return


async def bench(
    target: Target,
    message_type: str,
    payload: Payload | None = None,
    *,
    count: int | None = None,
    duration: float | None = None,
    rate: float = 0.0,
    mode: str = "in_memory",
    url: str | None = None,
    prefix: str | None = None,
    window: int | None = None,
    drain_timeout: float = 30.0,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``target`` handling ``message_type`` messages; see :func:`run_bench`."""
    _check(count, duration, rate, mode)
    histogram_class()  # a missing extra is said before the run, not after it
    if not is_known_type(message_type):
        raise BenchError(
            f"unknown message type {message_type!r}: register it (register_message_type) "
            "in the target's module"
        )
    recorder = Recorder()
    tree, per_message = build_tree(target, message_type, recorder)
    data = payload or (lambda: None)
    try:
        first = data()
    except Exception as exc:
        raise BenchError(f"the payload function raised {type(exc).__name__}: {exc}") from None
    try:
        validate_data(message_type, first)
    except SchemaError as exc:
        raise BenchError(f"the payload does not fit the type's schema: {exc}") from None
    prefix = prefix or f"bench-{uuid.uuid4().hex[:10]}"
    broker = _broker(mode, url, prefix)
    if broker is not None:
        bus = AsyncMessageBus(broker=broker, prefix=prefix, fallback=False)
    else:
        from ..brokers.memory import InMemoryServer

        bus = AsyncMessageBus(mode, prefix=prefix, server=InMemoryServer(), fallback=False)
    ticker: asyncio.Task[None] | None = None
    started = False
    try:
        await bus.start()
        started = True
        await bus.spawn(tree)
        if progress is not None:
            ticker = asyncio.create_task(_report_progress(recorder, progress))
        publish = bus.publish

        def send() -> Awaitable[str]:
            return publish(message_type, data(), source=SOURCE)

        def send_stamped() -> Awaitable[str]:
            headers = {SENT_HEADER: repr(time.time())}
            return publish(message_type, data(), source=SOURCE, headers=headers)

        cpu = time.process_time()
        published, start = await paced(
            send if broker is None else send_stamped,
            count=count,
            duration=duration,
            rate=rate,
            window=window or (RABBITMQ_WINDOW if broker is not None else 1),
        )
        recorder.expect(published * per_message)
        await _wait_finished(recorder, drain_timeout)
        cpu = time.process_time() - cpu
        end = recorder.last_done if recorder.completed else time.perf_counter()
        seconds = max(end - start, 1e-9)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await bus.shutdown(timeout=5.0)
        if broker is not None and started:
            await _delete_declared(broker, url)
    if progress is not None:
        progress(recorder.completed, published * per_message)
    latency = summarise(recorder.latencies_us)
    return BenchResult(
        target=tree.name,
        message_type=message_type,
        mode=mode,
        messages=published,
        deliveries=latency.count,
        failed=recorder.failed,
        unfinished=max(0, published * per_message - recorder.completed),
        errors=recorder.errors,
        rate=rate,
        seconds=seconds,
        throughput=published / seconds,
        cpu_us_per_message=cpu / max(published, 1) * 1e6,
        latency_us=latency,
        first_error=recorder.first_error,
    )


def run_bench(
    target: Target,
    message_type: str,
    payload: Payload | None = None,
    **options: Any,
) -> BenchResult:
    """Benchmark ``target`` on a fresh event loop (uvloop when installed) and return the result.

    ``target`` is an :class:`~actorbus.Actor` subclass, a
    :class:`~actorbus.Supervisor`, or a function returning one; ``payload`` a
    function giving each message's data. Options: ``count`` or ``duration``
    (exactly one), ``rate`` (messages per second, 0 for flat out), ``mode``
    (``"in_memory"`` or ``"rabbitmq"``), ``url``, ``prefix`` (default: a fresh
    one, whose queues and exchanges are deleted afterwards), ``window``
    (publishes in flight), ``drain_timeout`` (seconds without progress before
    the rest counts as unfinished) and ``progress``. Raises :class:`BenchError`
    on bad settings.
    """

    async def main() -> BenchResult:
        return await bench(target, message_type, payload, **options)

    return run_on_fresh_loop(main())
