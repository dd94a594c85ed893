"""What telemetry costs: the tell and RabbitMQ scenarios with metrics or tracing on.

Each function is the same run as its plain counterpart (``local.actorbus_tell``,
``remote.actorbus_rabbitmq``) with the hooks of one telemetry installed on the
bus: ``metrics`` (Prometheus collector and histograms, nothing scraping) or
``tracing`` (OpenTelemetry SDK, every span recorded, handed to an exporter that
drops it: the cost of making spans, not of shipping them). The plain rows are
the cost with telemetry off.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Sequence
from typing import Any

from .harness import Metrics, run_async


def telemetry_missing() -> str | None:
    """Why the telemetry scenarios cannot run, or ``None``."""
    for module in ("prometheus_client", "opentelemetry"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (extra telemetry-test)"
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        return "opentelemetry-sdk is not installed (extra telemetry-test)"
    return None


def _instrument(bus: Any, kind: str) -> None:
    if kind == "metrics":
        from prometheus_client import CollectorRegistry

        from actorbus.telemetry.prometheus import instrument

        instrument(bus, CollectorRegistry())
        return
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from actorbus.telemetry.otel import instrument_tracing

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    instrument_tracing(bus, provider)


def tell(kind: str) -> Callable[[int], Metrics]:
    """``local.actorbus_tell`` with ``kind`` telemetry on."""
    from actorbus import AsyncMessageBus
    from actorbus.brokers.memory import InMemoryServer

    from .local import PAYLOAD, TICK, Stopwatch, _Counter, _sinks

    def run(n: int) -> Metrics:
        async def main() -> Metrics:
            counter = _Counter(n)
            async with AsyncMessageBus("in_memory", server=InMemoryServer()) as bus:
                _instrument(bus, kind)
                await bus.spawn(_sinks([counter], "sink"))
                publish = bus.publish
                clock = Stopwatch()
                for _ in range(n):
                    await publish(TICK, PAYLOAD)
                await counter.done.wait()
                return clock.rates(n)

        return run_async(main)

    return run


def rabbitmq(kind: str) -> Callable[[int], Metrics]:
    """``remote.actorbus_rabbitmq`` with ``kind`` telemetry on."""
    from .local import PAYLOAD, TICK
    from .rabbit import TIME_LIMIT, WINDOW, pipelined, unique
    from .remote import rabbit_bus, shutdown_and_clean, spawn_sink

    def run(n: int) -> Metrics:
        async def main() -> Metrics:
            bus = rabbit_bus(unique("ab"))
            try:
                async with asyncio.timeout(TIME_LIMIT):
                    _instrument(bus, kind)
                    await bus.start()
                    done = await spawn_sink(bus, n)
                    start = time.perf_counter()
                    await pipelined(n, lambda: bus.publish(TICK, PAYLOAD), WINDOW)
                    await done.wait()
                    return {"rate": n / (time.perf_counter() - start)}
            finally:
                await shutdown_and_clean([bus])

        return run_async(main)

    return run
