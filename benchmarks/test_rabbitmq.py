"""pytest-benchmark suite of the RabbitMQ scenarios (the broker on 127.0.0.1:5672)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.harness import Scenario
from benchmarks.scenarios import scenarios
from benchmarks.test_local import run_scenario

REMOTE = [s for s in scenarios(rabbitmq=True) if s.name.startswith("rabbitmq")]


@pytest.mark.rabbitmq
@pytest.mark.parametrize("scenario", REMOTE, ids=[s.name for s in REMOTE])
def test_rabbitmq(benchmark: Any, scenario: Scenario) -> None:
    run_scenario(benchmark, scenario, rounds=2)
