"""pytest-benchmark suite of the in-process scenarios.

``pytest benchmarks --benchmark-enable`` times each scenario at its full size
(several rounds); the measured figures (msgs/s, p50/p99, bytes per actor) are
in each benchmark's ``extra_info`` (``--benchmark-json`` keeps them). The
side-by-side table with ratios comes from ``python -m benchmarks``.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.harness import Scenario
from benchmarks.scenarios import scenarios

LOCAL = scenarios(rabbitmq=False)


def run_scenario(benchmark: Any, scenario: Scenario, rounds: int = 3) -> None:
    """Time ``scenario`` at full size and keep its metrics of the last round."""
    reason = scenario.skip()
    if reason is not None:
        pytest.skip(reason)
    metrics = benchmark.pedantic(scenario.run, args=(scenario.size,), rounds=rounds, iterations=1)
    benchmark.extra_info.update(metrics)
    benchmark.extra_info["baseline"] = scenario.baseline


@pytest.mark.parametrize("scenario", LOCAL, ids=[s.name for s in LOCAL])
def test_local(benchmark: Any, scenario: Scenario) -> None:
    run_scenario(benchmark, scenario)
