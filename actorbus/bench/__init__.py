"""Benchmark a user's own actors: throughput, CPU per message, publish-to-handled latency.

The engine behind ``actorbus bench`` and :func:`bench_actor` (for
pytest-benchmark). It spawns a timed copy of the actor tree (each actor class
subclassed so its handler notes when it finishes; the runtime itself is
untouched) on a fresh bus, in memory or over RabbitMQ under a fresh prefix,
publishes ``count`` messages (or for ``duration`` seconds) at a fixed rate or
flat out, waits for every delivery, and deletes what it declared. Latency
percentiles come from an HdrHistogram (the ``bench`` extra).
"""

from ._engine import Progress as Progress
from ._engine import bench as bench
from ._engine import run_bench as run_bench
from ._instrument import SOURCE as SOURCE
from ._pacing import paced as paced
from ._pytest import bench_actor as bench_actor
from ._result import BenchResult as BenchResult
from ._result import Latency as Latency
from ._result import summarise as summarise
from ._target import BenchError as BenchError
from ._target import Payload as Payload
from ._target import Target as Target
from ._target import load_payload as load_payload
from ._target import load_target as load_target

__all__ = [
    "SOURCE",
    "BenchError",
    "BenchResult",
    "Latency",
    "Payload",
    "Progress",
    "Target",
    "bench",
    "bench_actor",
    "load_payload",
    "load_target",
    "paced",
    "run_bench",
    "summarise",
]
