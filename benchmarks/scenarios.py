"""The fixed set ``python -m benchmarks`` runs, in table order, with their baselines."""

from __future__ import annotations

from . import ceiling, demo, latency, local, memory, peers, rabbit, raw_pika, remote, telemetry
from .harness import Scenario, Target

__all__ = ["scenarios"]

RAW_TELL = "tell: raw asyncio.Queue(1000)"
RAW_FANOUT = "fan-out x4: raw 4 x asyncio.Queue(1000)"
RAW_ASK = "ask: raw future round trip"
RAW_THREADS = "4 threads: raw run_coroutine_threadsafe(put)"
RAW_MEMORY = "idle actor: raw task + asyncio.Queue"
RAW_PIKA = "rabbitmq: raw aio-pika, 1 process"
RAW_PIKA_2 = "rabbitmq: raw aio-pika, 2 processes"
RAW_PIKA_ASK = "rabbitmq ask: raw aio-pika rpc"
CEILING = "rabbitmq: broker ceiling, Node.js amqplib"

LATENCY_RATES = (1_000, 5_000)
"""Fixed rates of the latency scenarios, in msgs/s."""
LATENCY_SECONDS = 4
"""Seconds of publishing per latency run (size = rate x this)."""


def _latency(*, rabbitmq: bool) -> list[Scenario]:
    """actorbus against its raw baseline at each fixed rate, in memory or over RabbitMQ."""
    down = rabbit.rabbitmq_down
    selected: list[Scenario] = []
    for rate in LATENCY_RATES:
        size = rate * LATENCY_SECONDS
        if rabbitmq:
            raw = f"rabbitmq latency @{rate // 1000}k/s: raw aio-pika"
            selected += [
                Scenario(raw, latency.raw_aio_pika_at(rate), size, 100, skip=down),
                Scenario(
                    f"rabbitmq latency @{rate // 1000}k/s: actorbus",
                    latency.actorbus_at("rabbitmq", rate),
                    size,
                    100,
                    raw,
                    skip=remote.actorbus_missing,
                    note="publish to the end of the handler, fixed schedule (absolute deadlines)"
                    ", persistent, confirms, ack after the handler, prefetch 1000; rate = "
                    "msgs/s achieved; HdrHistogram percentiles",
                ),
            ]
        else:
            raw = f"latency @{rate // 1000}k/s: raw asyncio.Queue(1000)"
            selected += [
                Scenario(raw, latency.raw_queue_at(rate), size, 100),
                Scenario(
                    f"latency @{rate // 1000}k/s: actorbus in memory",
                    latency.actorbus_at("in_memory", rate),
                    size,
                    100,
                    raw,
                ),
            ]
    return selected


def scenarios(*, rabbitmq: bool = True) -> list[Scenario]:
    """Every scenario, baselines first in each group; ``rabbitmq=False`` leaves the broker out."""
    down = rabbit.rabbitmq_down
    selected = [
        Scenario(RAW_TELL, local.raw_queue_tell, 200_000, 2_000),
        Scenario(
            "tell: actorbus",
            local.actorbus_tell,
            200_000,
            2_000,
            RAW_TELL,
            target=Target("rate", 0.5),
            note="1 producer -> 1 actor, in memory, full envelopes (id, timestamp, validation)",
        ),
        Scenario(
            "tell: actorbus + metrics",
            telemetry.tell("metrics"),
            200_000,
            2_000,
            RAW_TELL,
            skip=telemetry.telemetry_missing,
            note="Prometheus collector and histograms installed (nothing scraping)",
        ),
        Scenario(
            "tell: actorbus + tracing",
            telemetry.tell("tracing"),
            200_000,
            2_000,
            RAW_TELL,
            skip=telemetry.telemetry_missing,
            note="OpenTelemetry SDK: a recorded producer and consumer span per message, "
            "exporter dropping them",
        ),
        Scenario(
            "tell: raw asyncio.Queue(1000) + make_envelope",
            local.raw_queue_tell_envelopes,
            200_000,
            2_000,
            RAW_TELL,
            note="the raw queue carrying an actorbus envelope built per message: "
            "what the envelope alone costs",
        ),
        Scenario("tell: pykka", peers.pykka_tell, 200_000, 2_000, RAW_TELL, peers.pykka_missing),
        Scenario(RAW_FANOUT, local.raw_fanout, 100_000, 1_000),
        Scenario("fan-out x4: actorbus", local.actorbus_fanout, 100_000, 1_000, RAW_FANOUT),
        Scenario(RAW_ASK, local.raw_ask, 50_000, 500),
        Scenario("ask: actorbus", local.actorbus_ask, 50_000, 500, RAW_ASK),
        Scenario("ask: pykka", peers.pykka_ask, 10_000, 100, RAW_ASK, peers.pykka_missing),
        Scenario(RAW_THREADS, local.raw_threads_put, 20_000, 400),
        Scenario(
            "4 threads: actorbus publish_sync",
            local.actorbus_publish_sync,
            20_000,
            400,
            RAW_THREADS,
        ),
        Scenario(RAW_MEMORY, memory.raw_idle_task, 20_000, 200),
        Scenario(
            "idle actor: actorbus",
            memory.actorbus_idle_actor,
            20_000,
            200,
            RAW_MEMORY,
            target=Target("bytes_per_actor", 2048, "value"),
            note="RSS delta / actors, 20k actors under one supervisor, each in a fresh process",
        ),
        Scenario(
            "trading demo: actorbus run, in memory",
            demo.ticks_in_memory,
            3,
            1,
            skip=demo.demo_missing,
            note="`actorbus run --rate 0 --json`: simulated feed as fast as the six actors "
            "go (size = seconds of feed); no baseline",
        ),
        *_latency(rabbitmq=False),
    ]
    if rabbitmq:
        selected += [
            Scenario(
                CEILING,
                ceiling.node_ceiling,
                30_000,
                200,
                skip=ceiling.node_missing,
                note="the broker's own per-message ceiling: persistent, confirms (1000 in "
                "flight), acks batched by 100, prefetch 1000; rows with an 'of ceiling' "
                "figure give their rate as a fraction of it",
            ),
            Scenario(RAW_PIKA, raw_pika.raw_aio_pika, 3_000, 50, skip=down, ceiling=CEILING),
            Scenario(
                "rabbitmq: actorbus, 1 process",
                remote.actorbus_rabbitmq,
                3_000,
                50,
                RAW_PIKA,
                target=Target("rate", 3.0),
                skip=remote.actorbus_missing,
                ceiling=CEILING,
                note="persistent, durable queue, publisher confirms, ack after the handler, "
                f"prefetch {rabbit.PREFETCH}, up to {rabbit.WINDOW} publishes in flight "
                "(same for the raw aio-pika and FastStream runs)",
            ),
            Scenario(
                "rabbitmq: actorbus, plain basic_publish, 1 process",
                remote.actorbus_rabbitmq_plain,
                3_000,
                50,
                RAW_PIKA,
                skip=remote.actorbus_missing,
                ceiling=CEILING,
                note="as 'rabbitmq: actorbus, 1 process', each publish through aiormq's public "
                "basic_publish (coalesce_writes=False)",
            ),
            Scenario(
                "rabbitmq: actorbus, coalesced writes, 1 process",
                remote.actorbus_rabbitmq_coalesced,
                3_000,
                50,
                RAW_PIKA,
                skip=remote.actorbus_missing,
                ceiling=CEILING,
                note="as 'rabbitmq: actorbus, 1 process', one loop turn's publishes in one "
                "socket write through aiormq's channel internals (coalesce_writes=True)",
            ),
            Scenario(
                "rabbitmq: actorbus + metrics, 1 process",
                telemetry.rabbitmq("metrics"),
                3_000,
                50,
                RAW_PIKA,
                skip=lambda: telemetry.telemetry_missing() or remote.actorbus_missing(),
            ),
            Scenario(
                "rabbitmq: actorbus + tracing, 1 process",
                telemetry.rabbitmq("tracing"),
                3_000,
                50,
                RAW_PIKA,
                skip=lambda: telemetry.telemetry_missing() or remote.actorbus_missing(),
            ),
            Scenario(
                "rabbitmq: actorbus batched x100, 1 process",
                remote.actorbus_rabbitmq_batched,
                100_000,
                500,
                RAW_PIKA,
                target=Target("rate", 50.0),
                skip=remote.batching_missing,
                ceiling=CEILING,
                note="opt-in batching of the type: up to 100 envelopes per AMQP message "
                "(1 ms linger), one publish confirm and one ack per batch, at-least-once",
            ),
            Scenario(
                "rabbitmq: faststream, 1 process",
                peers.faststream_rabbit,
                3_000,
                50,
                RAW_PIKA,
                skip=lambda: peers.faststream_missing() or down(),
            ),
            Scenario(RAW_PIKA_2, raw_pika.raw_aio_pika_two_processes, 3_000, 50, skip=down),
            Scenario(
                "rabbitmq: actorbus, 2 processes",
                remote.actorbus_rabbitmq_two_processes,
                3_000,
                50,
                RAW_PIKA_2,
                skip=remote.actorbus_missing,
                ceiling=CEILING,
            ),
            Scenario(RAW_PIKA_ASK, raw_pika.raw_aio_pika_ask, 300, 10, skip=down),
            Scenario(
                "rabbitmq ask: actorbus",
                remote.actorbus_rabbitmq_ask,
                300,
                10,
                RAW_PIKA_ASK,
                skip=remote.actorbus_missing,
                note="request persistent and confirmed, acked after the reply; the raw "
                "baseline replies through an exclusive queue",
            ),
            *_latency(rabbitmq=True),
        ]
    return selected
