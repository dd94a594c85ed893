"""Every benchmark runs at a tiny size, so none of them rots (no timing is asserted)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.__main__ import main
from benchmarks.harness import Scenario, dump_json, format_table, run_all
from benchmarks.scenarios import scenarios

LOCAL = scenarios(rabbitmq=False)
REMOTE = [s for s in scenarios(rabbitmq=True) if s not in LOCAL and s.name.startswith("rabbitmq")]


def _check(scenario: Scenario) -> None:
    reason = scenario.skip()
    if reason is not None:
        pytest.skip(reason)
    metrics = scenario.run(scenario.quick_size)
    assert metrics
    for name, value in metrics.items():
        assert math.isfinite(value), name
        assert value > 0, name


@pytest.mark.parametrize("scenario", LOCAL, ids=[s.name for s in LOCAL])
def test_local_scenario_runs(scenario: Scenario) -> None:
    _check(scenario)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("scenario", REMOTE, ids=[s.name for s in REMOTE])
def test_rabbitmq_scenario_runs(scenario: Scenario, rabbitmq_url: str) -> None:
    _check(scenario)


def test_every_baseline_is_a_scenario() -> None:
    names = {s.name for s in scenarios(rabbitmq=True)}
    assert all(s.baseline in names for s in scenarios(rabbitmq=True) if s.baseline)


def test_report_has_ratios_against_the_baseline() -> None:
    def base(n: int) -> dict[str, float]:
        return {"rate": 100.0}

    def subject(n: int) -> dict[str, float]:
        return {"rate": 50.0}

    report = run_all(
        [Scenario("base", base, 1, 1), Scenario("subject", subject, 1, 1, "base")], repeats=3
    )
    row = next(r for r in report.rows if r.scenario == "subject")
    assert row.ratio == 0.5
    assert row.median == 50.0
    assert row.runs == [50.0] * 3
    assert "0.50x" in format_table(report)
    assert json.loads(dump_json(report))["rows"][1]["ratio"] == 0.5


def test_a_failing_scenario_is_reported_not_raised() -> None:
    def broken(n: int) -> dict[str, float]:
        raise RuntimeError("boom")

    report = run_all([Scenario("broken", broken, 1, 1)], repeats=2)
    assert report.failed == {"broken": "RuntimeError: boom"}
    assert not report.rows


def test_command_line_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json", "--quiet", "--no-rabbitmq", "--only", "tell: actorbus"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {row["scenario"] for row in report["rows"]} >= {"tell: actorbus"}
    assert report["machine"]["cpus"] >= 1
