"""Every benchmark runs at a tiny size, so none of them rots (no timing is asserted)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from support.rabbit_cleanup import list_names

from benchmarks.__main__ import main
from benchmarks.harness import Scenario, Target, dump_json, format_table, run_all
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
    before = _bench_queues()
    _check(scenario)
    left = _bench_queues() - before
    assert not left, f"the scenario left queues on the shared broker: {sorted(left)}"


def _bench_queues() -> set[str]:
    return {name for name in list_names("queues") if name.startswith("bench.")}


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


def test_rates_are_given_as_a_fraction_of_the_ceiling() -> None:
    def ceiling(n: int) -> dict[str, float]:
        return {"rate": 400.0}

    def subject(n: int) -> dict[str, float]:
        return {"rate": 100.0, "p50_us": 5.0}

    report = run_all(
        [Scenario("ceiling", ceiling, 1, 1), Scenario("subject", subject, 1, 1, ceiling="ceiling")],
        repeats=2,
    )
    rows = {(r.scenario, r.metric): r for r in report.rows}
    assert rows["subject", "rate"].of_ceiling == 0.25
    assert rows["subject", "p50_us"].of_ceiling is None
    assert "of ceiling" in format_table(report)
    assert json.loads(dump_json(report))["rows"][1]["of_ceiling"] == 0.25


def test_the_latency_scenarios_cover_both_rates_and_both_modes() -> None:
    names = {s.name: s for s in scenarios(rabbitmq=True)}
    for rate in ("1k", "5k"):
        assert names[f"latency @{rate}/s: actorbus in memory"].baseline == (
            f"latency @{rate}/s: raw asyncio.Queue(1000)"
        )
        assert names[f"rabbitmq latency @{rate}/s: actorbus"].baseline == (
            f"rabbitmq latency @{rate}/s: raw aio-pika"
        )


def _valgrind_or_skip() -> None:
    if shutil.which("valgrind") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("valgrind is missing: scripts/test.sh installs it")
        pytest.skip("valgrind is not installed")


@pytest.mark.timeout(900)
def test_instruction_counts_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    _valgrind_or_skip()
    args = ["--instructions", "--quick", "--json", "--quiet", "--only", "tell: actorbus"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["scenario"]: row for row in report["rows"]}
    assert set(rows) == {"tell: raw asyncio.Queue(1000) [callgrind]", "tell: actorbus [callgrind]"}
    for row in rows.values():
        assert row["metric"] == "instructions"
        assert row["median"] > 0
    assert rows["tell: actorbus [callgrind]"]["ratio"] > 0


def test_instruction_mode_says_when_valgrind_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["--instructions", "--quick"]) == 2
    assert "valgrind is not installed" in capsys.readouterr().err


def test_targets_are_checked_against_ratios_and_values() -> None:
    def base(n: int) -> dict[str, float]:
        return {"rate": 100.0, "bytes_per_actor": 4000.0}

    def subject(n: int) -> dict[str, float]:
        return {"rate": 40.0, "bytes_per_actor": 1500.0}

    scenarios_ = [
        Scenario("base", base, 1, 1),
        Scenario("slow", subject, 1, 1, "base", target=Target("rate", 0.5)),
        Scenario("small", subject, 1, 1, "base", target=Target("bytes_per_actor", 2048, "value")),
    ]
    report = run_all(scenarios_, repeats=1)
    verdicts = {(t["scenario"], t["metric"]): t["met"] for t in report.targets}
    assert verdicts == {("slow", "rate"): False, ("small", "bytes_per_actor"): True}
    table = format_table(report)
    assert "target slow: rate ratio 0.40x, wanted >= 0.5x: MISSED" in table
    assert "target small: bytes_per_actor value 1,500, wanted <= 2048: met" in table
