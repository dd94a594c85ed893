"""What ``actorbus run`` shows: the live view while the system runs, the summary after.

:class:`LiveView` is the run's progress callback. On a terminal, with rich
installed, it is the view of ``actorbus top`` (:class:`~actorbus.telemetry.view.SystemView`
in a ``rich.live.Live``): the supervisor tree with every actor's counters, the
broker link, the system's counts with their rates, and the positions with their
P&L; its last frame stays above the summary. Otherwise (not a terminal, or no
rich) it prints one line a second. Either way the last update carries the
feed's true rate: ticks over the feed's own time, not over the wind-down.
:func:`print_summary` turns the report of
:func:`~actorbus_trading.runner.run_trading_system` into the text summary. Every count
shown is read from the report (or the live numbers) and nowhere else, so the live
view, the summary and ``--json`` agree.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TextIO

from actorbus.commands._common import actor_table

__all__ = ["RULES", "LiveView", "fmt", "print_summary"]


def fmt(value: float, digits: int = 2) -> str:
    """A number with thousands separators and ``digits`` decimals."""
    return f"{value:,.{digits}f}"


class LiveView:
    """Shows the live progress of a run: ``actorbus top``'s view on a terminal, else log lines.

    ``source`` and ``broker`` (a callable returning
    :func:`~actorbus.telemetry.status.broker_status`) name the process and its
    broker link in the view. :meth:`close` ends the live display (the last
    update does too); call it when a run ends early.
    """

    def __init__(
        self,
        stream: TextIO,
        args: argparse.Namespace,
        mode: str,
        *,
        source: str = "this process",
        broker: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.stream = stream
        self.args = args
        self.mode = mode
        self.source = source
        self.broker = broker
        self._last: tuple[float, dict[str, int]] | None = None
        self._last_line = 0.0
        self._view: Any = None
        self._live: Any = None
        if stream.isatty():
            try:
                from rich.console import Console
                from rich.live import Live

                from actorbus.telemetry.view import SystemView
            except ImportError:  # a bare install: the log lines
                return
            self._view = SystemView()
            self._view.footer = "Ctrl-C stops and winds down cleanly"
            console = Console(file=stream)
            self._live = Live(
                self._view, console=console, auto_refresh=False, redirect_stdout=False
            )

    @property
    def live(self) -> bool:
        """Whether the run is shown in the live view (else as log lines)."""
        return self._view is not None

    def __call__(self, numbers: dict[str, Any]) -> None:
        """Show ``numbers`` (see :func:`~actorbus_trading.status.live_numbers`).

        ``final`` marks the last call, whose rates are over the whole feed.
        """
        elapsed: float = numbers["elapsed"]
        counts: dict[str, int] = numbers["counts"]
        rates = dict.fromkeys(counts, 0.0)
        if numbers.get("final"):  # the rate of the whole feed, not of the wind-down
            span = numbers.get("feed_seconds") or elapsed
            rates = {k: v / span for k, v in counts.items()} if span > 0 else rates
        elif self._last is not None and elapsed > self._last[0]:
            span = elapsed - self._last[0]
            rates = {k: (v - self._last[1].get(k, 0)) / span for k, v in counts.items()}
        self._last = (elapsed, dict(counts))
        if self._view is not None:
            self._draw(numbers, rates)
        elif elapsed - self._last_line >= 1.0 or numbers.get("final"):
            self._last_line = elapsed
            print(
                f"[{elapsed:5.1f}s] ticks {counts['ticks']:,} ({rates['ticks']:,.0f}/s) "
                f"signals {counts['signals']:,} orders {counts['orders']:,} "
                f"fills {counts['fills']:,} breaches {counts['breaches']:,} "
                f"restarts {sum(a['restarts'] for a in numbers['actors'].values())} "
                f"dead letters {sum(a['dead_lettered'] for a in numbers['actors'].values())}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        """End the live display, leaving its last frame on the terminal."""
        if self._live is not None and self._live.is_started:
            self._live.stop()

    def _draw(self, numbers: dict[str, Any], rates: dict[str, float]) -> None:
        args = self.args
        of = "" if args.duration is None else f" of {args.duration:g}s"
        self._view.title = (
            f"actorbus run · {self.mode} · {numbers['elapsed']:.1f}s{of} · seed {args.seed}"
            + (f" · chaos {args.chaos:g}" if args.chaos else "")
        )
        snapshot = {"source": self.source, "count_rates": rates, **numbers}
        if self.broker is not None:
            snapshot["broker"] = self.broker()
        self._view.update(snapshot)
        if not self._live.is_started:
            self._live.start()
        final = bool(numbers.get("final"))
        if final:
            self._view.footer = f"ended after {numbers['elapsed']:.1f}s"
        self._live.refresh()
        if final:
            self.close()


RULES = {
    "price_band": "signal price too far from the market",
    "max_order_rate": "order rate limit",
    "max_position": "position limit per symbol",
    "max_notional": "gross exposure limit",
}
"""What each risk rule means, in the summary's words."""


def print_summary(report: dict[str, Any], stream: TextIO) -> None:
    """Print the text summary of a run's report."""
    out: list[str] = []
    throughput = report["throughput"]
    out.append(
        f"\nSummary ({report['mode']}, {report['duration']:.1f}s, ended by {report['ended_by']}; "
        f"ran here: {', '.join(report['placed'])})"
    )
    if "feed" in report:
        out.append(
            f"  ticks       {throughput['ticks']:,} published in {throughput['feed_seconds']:.1f}s "
            f"({throughput['ticks_per_second']:,.0f}/s)"
            + (f"   feed error: {report['feed']['error']}" if report["feed"]["error"] else "")
        )
    if not report.get("drained", True):
        out.append(
            "  NOT SETTLED the wind-down "
            + (
                "was cut short"
                if report.get("interrupted_wind_down")
                else f"did not settle within {report.get('wind_down_limit', 0):g}s"
            )
            + ": the counts below are incomplete"
        )
    if report.get("last_quotes"):
        quotes = ", ".join(f"{s} {fmt(p)}" for s, p in report["last_quotes"].items())
        out.append(f"  last quotes {quotes}  (asked of market_data by request/reply)")
    counts = report["counts"]
    out.append(
        f"  signals     {counts['signals']:,}   orders {counts['orders']:,}   "
        f"fills {counts['fills']:,}   risk breaches {counts['breaches']:,}"
    )
    if "risk" in report and report["risk"]["breaches"]:
        rules = ", ".join(
            f"{n:,} {RULES.get(rule, rule)} ({rule})"
            for rule, n in report["risk"]["breaches"].items()
        )
        out.append(f"  refused     {rules}")
    if "orders" in report:
        states = ", ".join(f"{state} {n}" for state, n in report["orders"]["by_state"].items())
        out.append(f"  orders      {states or 'none'}")
    if "positions" in report:
        out.append("  positions")
        for symbol, p in report["positions"].items():
            out.append(
                f"    {symbol:<10} qty {p['quantity']:>8,}  avg {fmt(p['avg_price']):>12}  "
                f"mark {fmt(p['mark']):>12}  realised {fmt(p['realised_pnl']):>12}  "
                f"unrealised {fmt(p['unrealised_pnl']):>12}"
            )
        if "flattened" in report:
            out.append(
                "    flattened: every position closed"
                if report["flattened"]
                else "    FLATTEN FAILED: positions are still open (see the problems below)"
            )
        pnl = report["pnl"]
        out.append(
            f"    P&L: realised {fmt(pnl['realised'])}, unrealised {fmt(pnl['unrealised'])}, "
            f"total {fmt(pnl['total'])}"
        )
    out.append("  actors")
    out.extend("  " + line for line in actor_table(report["actors"]))
    dead = report["dead_letters"]
    chaos = report["chaos"]
    if chaos["rate"]:
        out.append(
            f"  chaos       {chaos['injected']:,} failures injected, {chaos['crashes']} crashes"
        )
    out.append(
        f"  dead letters {dead['dead_lettered']} during the run; replayed: "
        f"{dead['replayed_by_supervisors']} by supervisors after restarts, "
        f"{dead['replayed_at_end']} at the end; {dead['remaining']} left"
    )
    accounting = report.get("accounting")
    if accounting:
        delivered = accounting["delivered"] + accounting["carried_over"]
        accounted = accounting["handled"] + accounting["conflated"] + accounting["dead_lettered"]
        carried = (
            f" + {accounting['carried_over']:,} waiting from before the run"
            if accounting["carried_over"]
            else ""
        )
        out.append(
            f"  messages    {accounting['delivered']:,} delivered to the actors{carried} "
            f"{'=' if delivered == accounted else '!='} "
            f"{accounting['handled']:,} handled + {accounting['conflated']:,} conflated "
            f"(older ticks replaced) + {accounting['dead_lettered']:,} dead-lettered"
            + ("" if delivered == accounted else f" = {accounted:,}")
        )
    problems: list[str] = report["problems"]
    if not report.get("drained", True):
        out.append(f"  audit       not settled: {len(problems)} problem(s)")
        out.extend(f"    - {problem}" for problem in problems[:20])
    elif problems:
        out.append(f"  AUDIT FAILED: {len(problems)} problem(s)")
        out.extend(f"    - {problem}" for problem in problems[:20])
    else:
        scope = "book and message counts" if report.get("only") is None else "book (this process)"
        out.append(f"  audit       OK: {scope} consistent")
    print("\n".join(out), file=stream, flush=True)
