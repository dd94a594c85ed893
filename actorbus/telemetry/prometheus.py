"""Prometheus metrics of a bus: counters read at scrape time, histograms fed by the hooks.

``instrument(bus)`` registers, in a ``CollectorRegistry`` (the process-wide one by
default), a collector that reads ``bus.stats()`` and the broker's connection state
when Prometheus scrapes, so counting costs nothing per message beyond what the
runtime already counts; and it installs :class:`MetricsHooks` on the bus, which
time each handler and the latency from publish (the envelope's timestamp) to
handled. ``start_metrics_server(bus, port)`` does that and serves ``/metrics``.

Metric names (label ``actor`` on the per-actor ones; ``type`` on the histograms):

=======================================  =========  =========================================
``actorbus_messages_handled_total``       counter    messages handled successfully
``actorbus_messages_failed_total``        counter    handler calls that raised
``actorbus_messages_retried_total``       counter    retries after a failure
``actorbus_messages_dead_lettered_total`` counter    messages sent to the dead-letter queue
``actorbus_messages_conflated_total``     counter    messages replaced in a conflating mailbox
``actorbus_actor_restarts_total``         counter    restarts by the supervisor
``actorbus_mailbox_depth``                gauge      deliveries waiting in the mailbox
``actorbus_actor_busy``                   gauge      1 while a handler runs
``actorbus_actor_state``                  gauge      1 for the actor's state (label ``state``)
``actorbus_handler_duration_seconds``     histogram  handler time, retries included
``actorbus_publish_to_handled_seconds``   histogram  from the envelope's timestamp to handled
``actorbus_messages_unroutable_total``    counter    published with no queue bound to the type
``actorbus_messages_dropped_total``       counter    in memory: dropped at a queue's length limit
``actorbus_dead_letters_dropped_total``   counter    in memory: dropped at the dead-letter cap
``actorbus_broker_connected``             gauge      1 while connected (labels ``mode``, ``node``)
``actorbus_broker_reconnects_total``      counter    connections made after the first
``actorbus_broker_outbox_depth``          gauge      publishes waiting for the connection
``actorbus_broker_unconfirmed``           gauge      publishes waiting for the broker's confirm
``actorbus_broker_confirm_seconds``       histogram  publish to the broker's confirm (RabbitMQ)
``actorbus_dead_letter_queue_depth``      gauge      entries in the dead-letter queue
=======================================  =========  =========================================

Restarts are a counter (they only grow), so ``rate()`` and ``increase()`` apply.
The histograms' buckets span 10 µs to 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..brokers.memory import MemoryBrokerStats
from ..bus import AsyncMessageBus
from ..hooks import HandleDone
from ..messages import Envelope
from ..stats import ActorStats, BusStats
from .status import broker_status

__all__ = [
    "BUCKETS",
    "Buckets",
    "BusCollector",
    "MetricsHooks",
    "instrument",
    "start_metrics_server",
]

logger = logging.getLogger("actorbus.telemetry")

BUCKETS = (
    *(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4),
    *(1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
"""Histogram buckets in seconds: microseconds (a local handler) to seconds (a backlog)."""

SCRAPE_TIMEOUT = 2.0
"""Seconds a scrape waits for the broker's answers (the dead-letter queue depth)."""

_COUNTERS = (
    ("messages_handled", "processed", "Messages handled successfully."),
    ("messages_failed", "failed", "Handler calls that raised."),
    ("messages_retried", "retried", "Retries made after a handler failure."),
    ("messages_dead_lettered", "dead_lettered", "Messages sent to the dead-letter queue."),
    ("messages_conflated", "conflated", "Messages replaced by a newer one in the mailbox."),
    ("actor_restarts", "restarts", "Restarts of the actor by its supervisor."),
)
_MEMORY_COUNTERS = (
    ("messages_dropped", "dropped", "Messages in-memory queues dropped at their length limit."),
    ("dead_letters_dropped", "dead_letters_dropped", "Dead letters dropped at the store's cap."),
)
_STATES = ("new", "starting", "running", "stopping", "stopped", "failed")


class Buckets:
    """One histogram series counted the cheap way: a bisect and two additions per value.

    ``prometheus_client.Histogram`` takes a lock and walks its buckets in Python
    for every observation; here the loop thread counts into a list (the GIL keeps
    each addition whole) and a scrape turns the counts into cumulative buckets.
    """

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        """Observations per bucket (not cumulative); the last one is above every bound."""
        self.total = 0.0
        """Sum of the observed values."""

    def observe(self, value: float) -> None:
        """Count one value (seconds)."""
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus wants them: ``(le, count at or below)``, ``+Inf`` last."""
        counts = list(self.counts)
        running = 0
        result = []
        for bound, count in zip((*map(floatToGoString, BUCKETS), "+Inf"), counts, strict=True):
            running += count
            result.append((bound, float(running)))
        return result


class MetricsHooks:
    """Hooks that time handlers and publish-to-handled latency, per actor and type."""

    def __init__(self, bus: AsyncMessageBus | None = None) -> None:
        self._bus = bus
        self.duration: dict[tuple[str, str], Buckets] = {}
        """Handler time (retries included) per (actor, type)."""
        self.latency: dict[tuple[str, str], Buckets] = {}
        """Time from the envelope's timestamp to handled, per (actor, type)."""
        self.confirm = Buckets()
        """Time from a publish to the broker's confirm (RabbitMQ only)."""
        self._broker_timed = False

    def _time_confirms(self) -> None:
        """Count the confirm latency of the bus's broker, once it has one (with confirms)."""
        broker = self._bus.broker if self._bus is not None else None
        if broker is None:
            return
        if hasattr(broker, "confirm_observer"):
            broker.confirm_observer = self.confirm.observe
        self._broker_timed = True

    def on_publish(self, envelope: Envelope) -> Envelope:
        """The first publish seen on a started bus starts timing its broker's confirms.

        (The envelope's timestamp is where publish-to-handled latency starts.)
        """
        if not self._broker_timed:
            self._time_confirms()
        return envelope

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        """Start the clock; the returned function counts into both histograms."""
        key = (actor, envelope.type)
        duration = self.duration.get(key)
        if duration is None:
            duration = self.duration[key] = Buckets()
            self.latency[key] = Buckets()
        latency = self.latency[key]
        started = time.perf_counter()
        created = envelope.timestamp

        def done(error: BaseException | None) -> None:
            duration.observe(time.perf_counter() - started)
            if error is None:
                latency.observe(max(0.0, time.time() - created))

        return done

    def collect(self) -> Iterator[Metric]:
        """Both histograms as metric families."""
        for name, documentation, series in (
            (
                "actorbus_handler_duration_seconds",
                "Time an actor took to handle a message, retries included.",
                self.duration,
            ),
            (
                "actorbus_publish_to_handled_seconds",
                "Time from a message's creation (its envelope timestamp) to handled.",
                self.latency,
            ),
        ):
            family = HistogramMetricFamily(name, documentation, labels=("actor", "type"))
            for key, buckets in list(series.items()):
                family.add_metric(list(key), buckets.cumulative(), buckets.total)
            yield family
        broker = self._bus.broker if self._bus is not None else None
        if self._broker_timed and hasattr(broker, "confirm_observer"):
            confirms = HistogramMetricFamily(
                "actorbus_broker_confirm_seconds",
                "Time from a publish to the broker's confirm, outages included.",
            )
            confirms.add_metric([], self.confirm.cumulative(), self.confirm.total)
            yield confirms


class BusCollector(Collector):
    """Reads a bus's counters and its broker's state each time Prometheus scrapes."""

    def __init__(self, bus: AsyncMessageBus, hooks: MetricsHooks | None = None) -> None:
        self.bus = bus
        """The bus observed."""
        self.hooks = hooks
        """The timing hooks whose histograms are reported too, if any."""

    def collect(self) -> Iterator[Metric]:
        """The current values (called by the registry, from the scraping thread)."""
        stats = self.bus.stats()
        yield from self._actor_metrics(stats.actors)
        if self.hooks is not None:
            yield from self.hooks.collect()
        yield from self._bus_metrics(stats)
        yield from self._broker_metrics()

    def _bus_metrics(self, stats: BusStats) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "actorbus_messages_unroutable",
            "Messages published that no queue was bound to.",
            value=stats.unroutable,
        )
        if isinstance(stats.broker, MemoryBrokerStats):  # what the in-memory bounds dropped
            for name, key, documentation in _MEMORY_COUNTERS:
                value = getattr(stats.broker, key)
                yield CounterMetricFamily(f"actorbus_{name}", documentation, value=value)

    def _actor_metrics(self, actors: dict[str, ActorStats]) -> Iterator[Metric]:
        for name, key, documentation in _COUNTERS:
            family = CounterMetricFamily(f"actorbus_{name}", documentation, labels=("actor",))
            for actor, counters in actors.items():
                family.add_metric((actor,), getattr(counters, key))
            yield family
        depth = GaugeMetricFamily(
            "actorbus_mailbox_depth", "Deliveries waiting in the mailbox.", labels=("actor",)
        )
        busy = GaugeMetricFamily(
            "actorbus_actor_busy", "1 while the actor handles a message.", labels=("actor",)
        )
        state = GaugeMetricFamily(
            "actorbus_actor_state",
            "1 for the actor's current lifecycle state.",
            labels=("actor", "state"),
        )
        for actor, counters in actors.items():
            depth.add_metric((actor,), counters.mailbox)
            busy.add_metric((actor,), 1.0 if counters.busy else 0.0)
            for name in _STATES:
                state.add_metric((actor, name), 1.0 if counters.state == name else 0.0)
        yield from (depth, busy, state)

    def _broker_metrics(self) -> Iterator[Metric]:
        if self.bus.broker is None:
            return
        status = broker_status(self.bus)
        connected = GaugeMetricFamily(
            "actorbus_broker_connected",
            "1 while the broker is connected.",
            labels=("mode", "node"),
        )
        connected.add_metric((status["mode"], status["node"]), 1.0 if status["connected"] else 0.0)
        yield connected
        if status["mode"] != "in_memory":
            yield CounterMetricFamily(
                "actorbus_broker_reconnects",
                "Connections made after the first one.",
                value=status["reconnects"],
            )
            yield GaugeMetricFamily(
                "actorbus_broker_outbox_depth",
                "Publishes waiting for the connection to come back.",
                value=status["outbox"],
            )
            yield GaugeMetricFamily(
                "actorbus_broker_unconfirmed",
                "Publishes sent and waiting for the broker's confirm.",
                value=status["unconfirmed"],
            )
        depth = self._dead_letter_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "actorbus_dead_letter_queue_depth",
                "Entries in the dead-letter queue.",
                value=depth,
            )

    def _dead_letter_depth(self) -> int | None:
        """Ask the broker on the bus's loop; ``None`` when it cannot answer in time."""
        loop, broker = self.bus.loop, self.bus.broker
        if loop is None or broker is None or loop.is_closed() or self.bus.closed:
            return None
        try:
            return asyncio.run_coroutine_threadsafe(broker.dead_letter_count(), loop).result(
                SCRAPE_TIMEOUT
            )
        except Exception as exc:
            logger.debug("dead-letter depth unavailable: %s", exc)
            return None


def instrument(bus: AsyncMessageBus, registry: CollectorRegistry = REGISTRY) -> MetricsHooks:
    """Register ``bus``'s metrics in ``registry`` and install the timing hooks on it."""
    hooks = MetricsHooks(bus)
    registry.register(BusCollector(bus, hooks))
    bus.add_hooks(hooks)
    return hooks


def start_metrics_server(
    bus: AsyncMessageBus,
    port: int,
    *,
    addr: str = "0.0.0.0",
    registry: CollectorRegistry | None = None,
) -> Any:
    """Instrument ``bus`` and serve its metrics over HTTP on ``addr:port``; return the server.

    The server runs in a daemon thread; ``server.shutdown()`` stops it. ``port`` 0
    picks a free port (``server.server_port``). A private registry is made unless one
    is given, so two buses in one process each get their own endpoint.
    """
    registry = registry if registry is not None else CollectorRegistry()
    instrument(bus, registry)
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
