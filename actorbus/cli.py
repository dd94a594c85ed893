"""The ``actorbus`` command: run the trading system, look at it, manage its dead letters.

Commands::

    actorbus run     run the trading system (in memory by default), live view, summary
    actorbus stats   counters of trading systems running over RabbitMQ, dead letters per actor
    actorbus dlq     list | replay | purge dead letters, filtered by --actor / --type
    actorbus topology  the RabbitMQ definitions (exchanges, queues, bindings) of a system

Exit codes, so scripts can act on them:

====  =============================================================
0     done, and (for ``run``) the audit found the book consistent
1     the run failed: the audit found problems, the tree gave up, the feed failed
2     bad usage: unknown option, actor name, unreadable feed file
3     the broker cannot be reached
130   interrupted (Ctrl-C); ``run`` still winds down and prints its summary
====  =============================================================

Ctrl-C during ``run`` stops the feed and winds down cleanly (a second Ctrl-C
quits at once). The trading logic is in the ``actors`` package; this module
only parses options, shows progress and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__
from .bus import AsyncMessageBus
from .commands import dlq, stats, topology
from .commands._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    unreachable,
)
from .commands._common import add_bus_options as _add_bus_options
from .config import resolve_mode, resolve_url
from .errors import ActorbusError, BrokerUnavailable, ConfigurationError
from .messages import MessageTypes

__all__ = ["main"]

# -- argument parsing ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line parser."""
    parser = argparse.ArgumentParser(
        prog="actorbus",
        description="Supervised actors and a typed message bus for trading systems.",
        epilog=(
            "Start with `actorbus run`: the trading system, in memory, for 10 seconds.\n"
            "Exit codes: 0 ok; 1 run failed (audit problems, supervisor gave up); "
            "2 bad usage;\n3 broker unreachable or refused; 130 interrupted (Ctrl-C)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"actorbus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the trading system with a live view, then print a summary",
        description=(
            "Run the trading system (market data, strategy, risk, execution, exchange, "
            "position) as a supervised actor tree. Shows live progress on stderr and ends "
            "with a summary and an audit of the book."
        ),
    )
    _add_bus_options(run)
    run.add_argument(
        "--declare",
        choices=["create", "passive"],
        default="create",
        help="over RabbitMQ: declare the topology, or only check it exists (a user without "
        "configure permission; `actorbus topology` prints it) (default: create)",
    )
    run.add_argument(
        "--duration", type=float, default=10.0, help="seconds to run the feed (default: 10)"
    )
    run.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default: BTC/USDT,ETH/USDT,SOL/USDT; all in a CSV feed)",
    )
    run.add_argument(
        "--feed",
        nargs="+",
        metavar=("KIND", "PATH"),
        default=["simulated"],
        help="'simulated' (default: seeded random walk) or 'csv PATH' (ticks or OHLCV bars)",
    )
    run.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    run.add_argument(
        "--rate",
        type=float,
        default=5000.0,
        help="ticks per second in all; 0 for as fast as the system goes (default: 5000)",
    )
    run.add_argument(
        "--only",
        default=None,
        help=(
            "run only these actors here (comma-separated: market_data, strategy, risk, "
            "execution, exchange, position); run the rest in another process"
        ),
    )
    run.add_argument(
        "--chaos",
        type=float,
        default=0.0,
        metavar="RATE",
        help="make handlers fail at random with this probability (e.g. 0.02)",
    )
    run.add_argument(
        "--flatten",
        action="store_true",
        help="close every position (POSITION_CLOSE) when the feed stops",
    )
    run.add_argument(
        "--quiet", action="store_true", help="no live view (the summary is still printed)"
    )

    stats.add_parser(commands)
    dlq.add_parser(commands)
    topology.add_parser(commands)
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _configure_logging(verbose: int) -> None:
    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose == 0:  # the libraries (aiormq...) speak through actorbus's own messages
        for handler in logging.getLogger().handlers:
            handler.addFilter(logging.Filter("actorbus"))


def _make_bus(
    args: argparse.Namespace, connect_timeout: float = 5.0, *, batch_ticks: bool = False
) -> AsyncMessageBus:
    """The bus a command asked for; never falls back to memory when RabbitMQ was asked for.

    With ``batch_ticks`` (``run`` over RabbitMQ), market data ticks travel many to
    one AMQP message: the feed is by far the largest stream, and batching it is
    what lets RabbitMQ mode keep up with the tick rates of in-memory mode.
    """
    mode = resolve_mode(args.mode)
    if mode == "rabbitmq" and batch_ticks:
        from .brokers.rabbitmq import AsyncRabbitMQBroker

        broker = AsyncRabbitMQBroker(
            resolve_url(args.url),
            prefix=args.prefix,
            connect_timeout=connect_timeout,
            batch_types=[MessageTypes.MARKET_DATA_UPDATE],
            declare=args.declare,
        )
        return AsyncMessageBus(broker=broker, prefix=args.prefix, fallback=False)
    return AsyncMessageBus(
        mode,
        url=args.url,
        prefix=args.prefix,
        fallback=False,
        connect_timeout=connect_timeout,
    )


def _unreachable(args: argparse.Namespace, exc: BaseException) -> int:
    return unreachable(args.url, exc)


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


# -- run -------------------------------------------------------------------------------------


class LiveView:
    """Draws the live progress of a run on a terminal (redrawn) or as log lines."""

    def __init__(self, stream: TextIO, args: argparse.Namespace, mode: str) -> None:
        self.stream = stream
        self.args = args
        self.mode = mode
        self.tty = stream.isatty()
        self._lines = 0
        self._last: tuple[float, dict[str, int]] | None = None
        self._last_line = 0.0

    def below(self) -> None:
        """Draw the next block below what was printed since the last one, not over it."""
        self._lines = 0

    def __call__(self, numbers: dict[str, Any]) -> None:
        elapsed: float = numbers["elapsed"]
        counts: dict[str, int] = numbers["counts"]
        rates = dict.fromkeys(counts, 0.0)
        if self._last is not None and elapsed > self._last[0]:
            span = elapsed - self._last[0]
            rates = {k: (v - self._last[1].get(k, 0)) / span for k, v in counts.items()}
        self._last = (elapsed, dict(counts))
        if self.tty:
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

    def _draw(self, numbers: dict[str, Any], rates: dict[str, float]) -> None:
        args, counts = self.args, numbers["counts"]
        lines = [
            f"actorbus run · {self.mode} · {numbers['elapsed']:.1f}s of {args.duration:g}s · "
            f"seed {args.seed}"
            + (f" · chaos {args.chaos:g}" if args.chaos else "")
            + f" · tree {numbers['state']}",
            "  ".join(
                f"{label} {counts[key]:,} ({rates[key]:,.0f}/s)"
                for key, label in (
                    ("ticks", "ticks"),
                    ("signals", "signals"),
                    ("orders", "orders"),
                    ("fills", "fills"),
                )
            )
            + f"  breaches {counts['breaches']:,}",
        ]
        positions: dict[str, dict[str, Any]] = numbers["positions"]
        if positions:
            lines.append(
                f"  {'symbol':<10} {'qty':>8} {'avg price':>12} {'mark':>12} "
                f"{'realised':>12} {'unrealised':>12}"
            )
            for symbol, p in positions.items():
                lines.append(
                    f"  {symbol:<10} {p['quantity']:>8,} {_fmt(p['avg_price']):>12} "
                    f"{_fmt(p['mark']):>12} {_fmt(p['realised_pnl']):>12} "
                    f"{_fmt(p['unrealised_pnl']):>12}"
                )
            total = sum(p["realised_pnl"] + p["unrealised_pnl"] for p in positions.values())
            lines.append(
                f"  {'':<10} {'':>8} {'':>12} {'':>12} {'P&L total':>12} {_fmt(total):>12}"
            )
        lines.extend(_actor_table(numbers["actors"]))
        dead = sum(a["dead_lettered"] for a in numbers["actors"].values())
        lines.append(f"dead letters so far: {dead}   (Ctrl-C stops and winds down cleanly)")
        out = []
        if self._lines:
            out.append(f"\x1b[{self._lines}F")
        out.extend(f"\x1b[2K{line}\n" for line in lines)
        if self._lines > len(lines):
            out.append("\x1b[J")
        self._lines = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()


def _actor_table(actors: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"  {'actor':<12} {'state':<9} {'processed':>10} {'failed':>7} {'retried':>8} "
        f"{'dead':>5} {'restarts':>8} {'mailbox':>8} {'conflated':>10}"
    ]
    for name, a in actors.items():
        lines.append(
            f"  {name:<12} {a['state']:<9} {a['processed']:>10,} {a['failed']:>7,} "
            f"{a['retried']:>8,} {a['dead_lettered']:>5,} {a['restarts']:>8,} "
            f"{a['mailbox']:>8,} {a['conflated']:>10,}"
        )
    return lines


def _print_summary(report: dict[str, Any], stream: TextIO) -> None:
    out: list[str] = []
    throughput = report["throughput"]
    out.append(
        f"\nSummary ({report['mode']}, {report['duration']:.1f}s, ended by {report['ended_by']}; "
        f"ran here: {', '.join(report['placed'])})"
    )
    if "feed" in report:
        end_to_end = throughput["strategy_ticks_per_second"] or throughput["ticks_per_second"]
        out.append(
            f"  ticks       {throughput['ticks']:,} published in {throughput['feed_seconds']:.1f}s "
            f"({throughput['ticks_per_second']:,.0f}/s); end to end {end_to_end:,.0f} ticks/s "
            "(handled by the strategy while the feed ran)"
            + (f"   feed error: {report['feed']['error']}" if report["feed"]["error"] else "")
        )
    if not report.get("drained", True):
        out.append("  WARNING     the actors here did not settle before the summary")
    if report.get("last_quotes"):
        quotes = ", ".join(f"{s} {_fmt(p)}" for s, p in report["last_quotes"].items())
        out.append(f"  last quotes {quotes}  (asked of market_data by request/reply)")
    counts = report["counts"]
    out.append(
        f"  signals     {counts['signals']:,}   orders {counts['orders']:,}   "
        f"fills {counts['fills']:,}   risk breaches {counts['breaches']:,}"
    )
    if "risk" in report and report["risk"]["breaches"]:
        rules = ", ".join(f"{rule} {n}" for rule, n in report["risk"]["breaches"].items())
        out.append(f"  breaches    {rules}")
    if "orders" in report:
        states = ", ".join(f"{state} {n}" for state, n in report["orders"]["by_state"].items())
        out.append(f"  orders      {states or 'none'}")
    if "positions" in report:
        out.append("  positions")
        for symbol, p in report["positions"].items():
            out.append(
                f"    {symbol:<10} qty {p['quantity']:>8,}  avg {_fmt(p['avg_price']):>12}  "
                f"mark {_fmt(p['mark']):>12}  realised {_fmt(p['realised_pnl']):>12}  "
                f"unrealised {_fmt(p['unrealised_pnl']):>12}"
            )
        pnl = report["pnl"]
        out.append(
            f"    P&L: realised {_fmt(pnl['realised'])}, unrealised {_fmt(pnl['unrealised'])}, "
            f"total {_fmt(pnl['total'])}"
        )
    out.append("  actors")
    out.extend("  " + line for line in _actor_table(report["actors"]))
    dead = report["dead_letters"]
    chaos = report["chaos"]
    if chaos["rate"]:
        out.append(
            f"  chaos       {chaos['injected']:,} failures injected, {chaos['crashes']} crashes"
        )
    out.append(
        f"  dead letters {dead['dead_lettered']} during the run, {dead['replayed_at_end']} "
        f"replayed at the end, {dead['remaining']} left"
    )
    accounting = report.get("accounting")
    if accounting:
        out.append(
            f"  messages    {accounting['delivered']:,} delivered to the actors = "
            f"{accounting['handled']:,} handled + {accounting['conflated']:,} conflated "
            f"(older ticks replaced) + {accounting['dead_lettered']:,} dead-lettered"
        )
    problems: list[str] = report["problems"]
    if problems:
        out.append(f"  AUDIT FAILED: {len(problems)} problem(s)")
        out.extend(f"    - {problem}" for problem in problems[:20])
    else:
        scope = "book and message counts" if report.get("only") is None else "book (this process)"
        out.append(f"  audit       OK: {scope} consistent")
    print("\n".join(out), file=stream, flush=True)


def _install_stop(stop: asyncio.Event, view: LiveView | None = None) -> Callable[[], None]:
    """Make SIGINT/SIGTERM set ``stop`` (a second SIGINT quits at once); return an undo."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []

    def first(signum: int) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            os._exit(EXIT_INTERRUPTED)
        print("\nactorbus: stopping (Ctrl-C again to quit at once)...", file=sys.stderr)
        if view is not None:
            view.below()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, first, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass

    def undo() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return undo


async def _run(args: argparse.Namespace) -> int:
    from actors import TradingConfig, TradingSystem, register_schemas, run_trading_system
    from actors.market_data import FeedError

    if args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.rate < 0:
        raise UsageError("--rate must be 0 (unthrottled) or positive")
    if not 0.0 <= args.chaos <= 1.0:
        raise UsageError("--chaos is a probability between 0 and 1")
    feed = list(args.feed)
    csv_path: str | None = None
    if feed[0] == "csv" and len(feed) == 2:
        csv_path = feed[1]
    elif feed != ["simulated"]:
        raise UsageError("--feed takes 'simulated' or 'csv PATH'")
    symbols: tuple[str, ...]
    if args.symbols:
        symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
        if not symbols:
            raise UsageError("--symbols needs at least one symbol")
    else:
        symbols = () if csv_path else TradingConfig().symbols
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    config = TradingConfig(
        symbols=symbols, seed=args.seed, rate=args.rate, csv_path=csv_path, chaos=args.chaos
    )
    system = TradingSystem(config)
    try:
        system.tree(only)  # validates names and opens the feed before anything connects
    except FeedError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"--only: {exc}") from None
    register_schemas()
    stop = asyncio.Event()
    view = None if args.quiet else LiveView(sys.stderr, args, resolve_mode(args.mode))
    undo = _install_stop(stop, view)
    try:
        bus = _make_bus(args, batch_ticks=True)
        try:
            await bus.start()
        except BrokerUnavailable as exc:
            return _unreachable(args, exc)
        if only is not None and bus.mode == "in_memory":
            print(
                "actorbus: --only in memory runs just these actors, alone: the others can only "
                "run in another process over RabbitMQ (--mode rabbitmq).",
                file=sys.stderr,
            )
        try:
            report = await run_trading_system(
                bus,
                system,
                duration=args.duration,
                only=only,
                flatten=args.flatten,
                progress=view,
                stop=stop,
            )
        finally:
            await bus.shutdown()
    finally:
        undo()
    report["only"] = only
    report["seed"] = args.seed
    report["symbols"] = list(symbols)
    report["prefix"] = args.prefix
    if args.json:
        print(json.dumps(report, default=str))
    else:
        _print_summary(report, sys.stdout)
    if report["ended_by"] == "interrupted":
        return EXIT_INTERRUPTED
    failed = (
        report["problems"] or report["ended_by"] == "failed" or report.get("feed", {}).get("error")
    )
    return EXIT_FAILED if failed else EXIT_OK


# -- entry point -----------------------------------------------------------------------------


def _runner() -> Callable[[Any], Any]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not on every platform
        return asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``actorbus`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    command = {
        "run": _run,
        "stats": stats.stats,
        "dlq": dlq.dlq,
        "topology": topology.topology,
    }[args.command]
    try:
        code: int = _runner()(command(args))
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"actorbus {args.command}: error: {exc}\n")
    except ConfigurationError as exc:
        print(f"actorbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnavailable as exc:
        return _unreachable(args, exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ActorbusError as exc:
        print(f"actorbus: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
