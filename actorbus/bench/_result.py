"""What a benchmark run measured, and the latency histogram behind its percentiles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BenchResult", "Latency", "histogram_class", "summarise"]

HIGHEST_US = 3_600_000_000
"""Longest latency the histogram holds, in microseconds (an hour); longer ones are clamped."""
SIGNIFICANT_DIGITS = 3
"""Precision of the histogram: values are kept to 3 significant digits."""


@dataclass(frozen=True)
class Latency:
    """Publish-to-handled latency percentiles, in microseconds."""

    p50: float
    p99: float
    p999: float
    max: float
    mean: float
    count: int
    """Deliveries timed."""


@dataclass(frozen=True)
class BenchResult:
    """The outcome of one benchmark run."""

    target: str
    """What was benchmarked (the tree's name)."""
    message_type: str
    mode: str
    messages: int
    """Messages published."""
    deliveries: int
    """Deliveries handled (a message reaching two actors makes two)."""
    failed: int
    """Deliveries whose handler still raised on the last attempt (dead-lettered)."""
    unfinished: int
    """Deliveries neither handled nor given up when the run ended (0 on a clean run)."""
    errors: int
    """Handler calls that raised, retries included."""
    rate: float
    """Requested messages per second; 0 means as fast as it goes."""
    seconds: float
    """Wall time from the first publish to the last completion."""
    throughput: float
    """Messages per second over ``seconds``."""
    cpu_us_per_message: float
    """CPU time of this process (every thread) per message, in microseconds."""
    latency_us: Latency
    first_error: str | None = None
    """The first exception a handler raised (``Type: message``), if any did."""

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (what ``--json`` prints)."""
        return asdict(self)


def histogram_class() -> Any:
    """The HdrHistogram class (the ``bench`` extra); ``BenchError`` when it is missing."""
    try:
        from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]
    except ImportError:
        from ._target import BenchError

        raise BenchError(
            "the benchmark needs HdrHistogram: pip install 'actorbus[bench]'"
        ) from None
    return HdrHistogram


def summarise(latencies_us: Iterable[int]) -> Latency:
    """Percentiles of ``latencies_us`` through an HdrHistogram (the ``bench`` extra)."""
    histogram = histogram_class()(1, HIGHEST_US, SIGNIFICANT_DIGITS)
    record = histogram.record_value
    for value in latencies_us:
        record(min(max(value, 1), HIGHEST_US))
    count = histogram.get_total_count()
    if not count:
        return Latency(p50=0.0, p99=0.0, p999=0.0, max=0.0, mean=0.0, count=0)
    return Latency(
        p50=float(histogram.get_value_at_percentile(50.0)),
        p99=float(histogram.get_value_at_percentile(99.0)),
        p999=float(histogram.get_value_at_percentile(99.9)),
        max=float(histogram.get_max_value()),
        mean=float(histogram.get_mean_value()),
        count=count,
    )
