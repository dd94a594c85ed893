"""The benchmark engine inside a pytest-benchmark test, so a suite can track its actors."""

from __future__ import annotations

from typing import Any

from ._engine import run_bench
from ._result import BenchResult
from ._target import Payload, Target

__all__ = ["bench_actor"]


def bench_actor(
    benchmark: Any,
    target: Target,
    message_type: str,
    payload: Payload | None = None,
    *,
    rounds: int = 3,
    **options: Any,
) -> BenchResult:
    """Time ``rounds`` runs of :func:`run_bench` with pytest-benchmark's ``benchmark`` fixture.

    Each round is one whole run (fresh bus, fresh tree); pytest-benchmark keeps
    the wall time of each, and the last round's figures (throughput, CPU per
    message, latency percentiles in microseconds) go to ``benchmark.extra_info``,
    which ``--benchmark-json`` saves. Returns the last round's result::

        def test_my_actor(benchmark):
            result = bench_actor(benchmark, MyActor, "orders.new", lambda: {"qty": 1},
                                 count=10_000)
            assert result.unfinished == 0
    """
    results: list[BenchResult] = []

    def once() -> None:
        results.append(run_bench(target, message_type, payload, **options))

    benchmark.pedantic(once, rounds=rounds, iterations=1)
    result = results[-1]
    latency = result.latency_us
    benchmark.extra_info.update(
        {
            "mode": result.mode,
            "messages": result.messages,
            "throughput": result.throughput,
            "cpu_us_per_message": result.cpu_us_per_message,
            "p50_us": latency.p50,
            "p99_us": latency.p99,
            "p999_us": latency.p999,
            "max_us": latency.max,
        }
    )
    return result
