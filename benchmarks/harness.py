"""Repetition, statistics and the table: what ``python -m benchmarks`` is built on.

A :class:`Scenario` is a plain callable taking a size and returning named
metrics (``rate``, ``p50_us``, ``p99_us``, ``bytes_per_actor``, ...). The
runner repeats every scenario, interleaving them (baseline, subject, baseline,
subject, ...) so that the load of a shared machine spreads evenly, and reports
the median, min and max of each metric with its ratio to the same metric of the
scenario's baseline, measured in the same run.

A ratio is ``value / baseline`` taken per repeat (the subject's run against the
baseline's run of the same round, minutes or seconds apart at most), and the
table shows the median of those: a slow spell of the machine then slows both
sides of a pair instead of skewing one median. Above 1 is better for rates,
below 1 for latencies and memory (the ``better`` column says which).
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")

Metrics = dict[str, float]
"""What one run of a scenario measures, by metric name."""

UNITS: dict[str, str] = {
    "rate": "msgs/s",
    "rate_cpu": "msgs/CPU-s",
    "deliveries": "deliveries/s",
    "deliveries_cpu": "deliveries/CPU-s",
    "round_trips": "round-trips/s",
    "round_trips_cpu": "round-trips/CPU-s",
    "p50_us": "us",
    "p99_us": "us",
    "p999_us": "us",
    "max_us": "us",
    "instructions": "instr/msg",
    "bytes_per_actor": "bytes",
    "ticks": "ticks/s",
}
"""Unit of each metric name."""

LOWER_IS_BETTER = frozenset(
    {"p50_us", "p99_us", "p999_us", "max_us", "instructions", "bytes_per_actor"}
)
"""Metrics where a smaller value is the better one."""


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on a fresh event loop, uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def latency_metrics(samples_ns: Sequence[int], elapsed: float) -> Metrics:
    """Round trips per second and p50/p99 in microseconds from per-call latencies."""
    return {
        "round_trips": len(samples_ns) / elapsed,
        "p50_us": percentile(samples_ns, 0.50) / 1000,
        "p99_us": percentile(samples_ns, 0.99) / 1000,
    }


@dataclass(frozen=True)
class Target:
    """A figure a scenario should reach: its ratio to the baseline, or its own value."""

    metric: str
    bound: float
    of: str = "ratio"
    """``"ratio"`` (to the baseline) or ``"value"`` (the median itself)."""

    def check(self, row: Row) -> dict[str, Any]:
        """Whether ``row`` meets this target, as plain data for the report."""
        measured = row.ratio if self.of == "ratio" else row.median
        lower = row.metric in LOWER_IS_BETTER
        met = (
            None
            if measured is None
            else (measured <= self.bound if lower else measured >= self.bound)
        )
        return {
            "scenario": row.scenario,
            "metric": row.metric,
            "of": self.of,
            "target": f"{'<=' if lower else '>='} {self.bound:g}",
            "measured": measured,
            "met": met,
        }


@dataclass
class Scenario:
    """One measured thing: a callable, its sizes, and the baseline it is compared to."""

    name: str
    """Row label, e.g. ``"tell: actorbus"``."""
    run: Callable[[int], Metrics]
    """Measures once at the given size and returns its metrics."""
    size: int
    """Size of a full run (messages, round trips, actors)."""
    quick_size: int
    """Size of a ``--quick`` smoke run."""
    baseline: str | None = None
    """Name of the scenario whose medians this one is divided by."""
    skip: Callable[[], str | None] = lambda: None
    """Returns why the scenario cannot run here, or ``None`` when it can."""
    note: str = ""
    """Shown under the table (what is compared, what guarantees hold)."""
    ceiling: str | None = None
    """Name of a scenario whose ``rate`` is a hard limit (the broker's own ceiling):
    the rows get this one's ``rate`` as a fraction of it, paired per repeat."""
    target: Target | None = None
    """What this scenario should reach; the report says whether it did."""


@dataclass
class Row:
    """One line of the table: a metric of a scenario over the repeated runs."""

    scenario: str
    metric: str
    median: float
    min: float
    max: float
    baseline: str | None = None
    ratio: float | None = None
    runs: list[float] = field(default_factory=list)
    of_ceiling: float | None = None
    """``rate`` as a fraction of the ceiling scenario's, when the scenario names one."""

    def as_dict(self) -> dict[str, Any]:
        """The row as plain data, for ``--json``."""
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": UNITS.get(self.metric, ""),
            "better": "lower" if self.metric in LOWER_IS_BETTER else "higher",
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "runs": self.runs,
            "of_ceiling": self.of_ceiling,
        }


@dataclass
class Report:
    """Everything one run of the benchmark set produced."""

    rows: list[Row]
    skipped: dict[str, str]
    failed: dict[str, str]
    notes: dict[str, str]
    targets: list[dict[str, Any]]
    repeats: int
    started: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data, for ``--json``."""
        return {
            "started": self.started,
            "seconds": round(self.seconds, 1),
            "repeats": self.repeats,
            "machine": machine(),
            "rows": [row.as_dict() for row in self.rows],
            "skipped": self.skipped,
            "failed": self.failed,
            "notes": self.notes,
            "targets": self.targets,
        }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def run_all(
    scenarios: Sequence[Scenario],
    *,
    repeats: int,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run every available scenario ``repeats`` times, interleaved, and build the rows."""
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    begin = time.perf_counter()
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    active: list[Scenario] = []
    for scenario in scenarios:
        reason = scenario.skip()
        if reason is None:
            active.append(scenario)
        else:
            skipped[scenario.name] = reason
    samples: dict[str, list[Metrics]] = {scenario.name: [] for scenario in active}
    for repeat in range(repeats):
        for scenario in active:
            if scenario.name in failed:
                continue
            if progress is not None:
                progress(f"[{repeat + 1}/{repeats}] {scenario.name}")
            try:
                samples[scenario.name].append(
                    scenario.run(scenario.quick_size if quick else scenario.size)
                )
            except Exception as exc:
                failed[scenario.name] = f"{type(exc).__name__}: {exc}"
                if progress is not None:
                    progress(traceback.format_exc())
    medians: dict[str, dict[str, float]] = {}
    rows: list[Row] = []
    for scenario in active:
        runs = samples[scenario.name]
        if scenario.name in failed or not runs:
            continue
        medians[scenario.name] = {
            metric: statistics.median(run[metric] for run in runs) for metric in runs[0]
        }
    for scenario in active:
        if scenario.name not in medians:
            continue
        for metric, median in medians[scenario.name].items():
            values = [run[metric] for run in samples[scenario.name]]
            ratio = _paired_ratio(values, metric, scenario.baseline, medians, samples)
            of_ceiling = (
                _paired_ratio(values, metric, scenario.ceiling, medians, samples)
                if metric == "rate"
                else None
            )
            rows.append(
                Row(
                    scenario=scenario.name,
                    metric=metric,
                    median=median,
                    min=min(values),
                    max=max(values),
                    baseline=scenario.baseline if ratio is not None else None,
                    ratio=ratio,
                    runs=values,
                    of_ceiling=of_ceiling,
                )
            )
    notes = {scenario.name: scenario.note for scenario in active if scenario.note}
    targets = [
        scenario.target.check(row)
        for scenario in active
        if scenario.target is not None
        for row in rows
        if row.scenario == scenario.name and row.metric == scenario.target.metric
    ]
    return Report(
        rows=rows,
        skipped=skipped,
        failed=failed,
        notes=notes,
        targets=targets,
        repeats=repeats,
        started=started,
        seconds=time.perf_counter() - begin,
    )


def _paired_ratio(
    values: list[float],
    metric: str,
    reference: str | None,
    medians: dict[str, dict[str, float]],
    samples: dict[str, list[Metrics]],
) -> float | None:
    """Median of ``value / reference`` over the repeats (``None`` without a reference)."""
    base = medians.get(reference or "")
    if base is None or not base.get(metric):
        return None
    pairs = [
        value / run[metric]
        for value, run in zip(values, samples.get(reference or "", []), strict=False)
        if run.get(metric)
    ]
    return statistics.median(pairs) if pairs else statistics.median(values) / base[metric]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(report: Report) -> str:
    """The report as a Markdown table, with skipped and failed scenarios below it."""
    header = ["scenario", "metric", "unit", "median", "min", "max", "ratio", "better", "baseline"]
    ceilings = any(row.of_ceiling is not None for row in report.rows)
    if ceilings:
        header.append("of ceiling")
    lines = [[*header], ["---"] * len(header)]
    for row in report.rows:
        better = "lower" if row.metric in LOWER_IS_BETTER else "higher"
        line = [
            row.scenario,
            row.metric,
            UNITS.get(row.metric, ""),
            _fmt(row.median),
            _fmt(row.min),
            _fmt(row.max),
            f"{row.ratio:.2f}x" if row.ratio is not None else "",
            better if row.ratio is not None else "",
            row.baseline or "",
        ]
        if ceilings:
            line.append(f"{row.of_ceiling:.2f}" if row.of_ceiling is not None else "")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |"
        for line in lines
    ]
    info = machine()
    out.insert(
        0,
        f"{report.started}; {info.get('cpu', info['machine'])}, {info['cpus']} CPUs, "
        f"{info['implementation']} {info['python']}; median/min/max of {report.repeats} "
        f"run(s); {report.seconds:.0f}s\n",
    )
    for name, reason in report.skipped.items():
        out.append(f"skipped {name}: {reason}")
    for name, reason in report.failed.items():
        out.append(f"FAILED {name}: {reason}")
    if report.targets:
        out.append("")
        for target in report.targets:
            measured = target["measured"]
            shown = "n/a" if measured is None else _fmt(measured)
            verdict = {True: "met", False: "MISSED", None: "no figure"}[target["met"]]
            suffix = "x" if target["of"] == "ratio" else ""
            out.append(
                f"target {target['scenario']}: {target['metric']} {target['of']} {shown}{suffix}, "
                f"wanted {target['target']}{suffix}: {verdict}"
            )
    if report.notes:
        out.append("")
        out.extend(f"- {name}: {note}" for name, note in report.notes.items())
    return "\n".join(out)


def dump_json(report: Report) -> str:
    """The report as JSON."""
    return json.dumps(report.as_dict(), indent=2)


def log(message: str) -> None:
    """Progress on standard error, so standard output stays the table (or the JSON)."""
    print(message, file=sys.stderr, flush=True)
