"""The ``actorbus run`` command: options, checks, the run itself, exit code.

:func:`add_parser` adds ``run`` to the ``actorbus`` command line and
:func:`run_command` runs it. Every option value is checked before anything
starts (exit code 2 with the reason): durations and rates must be finite, lists
must name something, simulated symbols must have a start price (the three
defaults have one; give others as ``SYMBOL=PRICE``), and a CSV file is read
through once (see :class:`~actorbus_trading.feeds.CsvFeed`).

Ctrl-C: the first stops the feed and winds down; one during the wind-down
(a second, when the first stopped the feed) cuts the wind-down short and still
prints the summary (exit code 130); another one quits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from actorbus import AsyncMessageBus, BrokerUnavailable, MessageTypes
from actorbus.brokers.factory import BrokerFactory
from actorbus.commands._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_bus_options,
    unreachable,
)
from actorbus.commands.metrics import add_metrics_options, serve_metrics
from actorbus.config import resolve_mode, resolve_url
from actorbus.telemetry.status import broker_status

from .feeds import FeedError
from .runner import run_trading_system
from .schemas import check_price, register_schemas
from .system import ACTOR_NAMES, TradingConfig, TradingSystem
from .view import LiveView, print_summary
from .wind_down import WIND_DOWN

__all__ = ["add_parser", "run_command"]

DEFAULT_DURATION = 10.0
"""Seconds of feed time a simulated run lasts unless ``--duration`` says otherwise."""


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
        broker = BrokerFactory(
            prefix=args.prefix,
            url=resolve_url(args.url),
            connect_timeout=connect_timeout,
            declare=args.declare,
            rabbitmq_options={"batch_types": [MessageTypes.MARKET_DATA_UPDATE]},
        ).rabbitmq()
        return AsyncMessageBus(broker=broker, prefix=args.prefix, fallback=False)
    return AsyncMessageBus(
        mode,
        url=args.url,
        prefix=args.prefix,
        fallback=False,
        connect_timeout=connect_timeout,
    )


def _positive(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or positive, not {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``run`` command to the ``actorbus`` subcommands; return its parser."""
    run: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run the trading system with a live view, then print a summary",
        description=(
            "Run the trading system (market data, strategy, risk, execution, exchange, "
            "position) as a supervised actor tree. Shows live progress on stderr and ends "
            "with a summary and an audit of the book. The actors run on the feed's time: "
            "with a CSV feed, or --rate 0, the same input and seed give the same book."
        ),
    )
    add_bus_options(run)
    run.add_argument(
        "--declare",
        choices=["create", "passive"],
        default="create",
        help="over RabbitMQ: declare the topology, or only check it exists (a user without "
        "configure permission; `actorbus topology` prints it) (default: create)",
    )
    run.add_argument(
        "--duration",
        type=_positive,
        default=None,
        help=(
            "seconds of feed time to run (default: 10 for the simulated feed, "
            "the whole file for a CSV feed)"
        ),
    )
    run.add_argument(
        "--symbols",
        default=None,
        help=(
            "comma-separated symbols (default: BTC/USDT,ETH/USDT,SOL/USDT; all in a CSV feed); "
            "a simulated symbol other than these needs its start price: SYMBOL=PRICE"
        ),
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
        type=_non_negative,
        default=5000.0,
        help="simulated ticks per second; 0 for as fast as the system goes (default: 5000)",
    )
    run.add_argument(
        "--speed",
        type=_non_negative,
        default=0.0,
        help="CSV feed: replay the file's timestamps this many times faster than real time; "
        "0 for as fast as the system goes (default: 0)",
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
        type=_finite,
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
    add_metrics_options(run)
    return run


def _install_stop(
    stop: asyncio.Event, abort: asyncio.Event, view: LiveView | None = None
) -> Callable[[], None]:
    """Make SIGINT/SIGTERM set ``stop``, then ``abort``; a third SIGINT quits at once."""
    loop = asyncio.get_running_loop()
    installed: list[int] = []

    def on_signal(signum: int) -> None:
        if abort.is_set() and signum == signal.SIGINT:
            if view is not None:
                view.close()  # give the terminal its cursor back
            os._exit(EXIT_INTERRUPTED)
        if stop.is_set():
            abort.set()
            print("\nactorbus: cutting the wind-down short...", file=sys.stderr)
        else:
            stop.set()
            print(
                "\nactorbus: stopping (Ctrl-C again to cut the wind-down short)...",
                file=sys.stderr,
            )

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass

    def undo() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return undo


def _symbols(text: str | None, csv: bool) -> tuple[tuple[str, ...], dict[str, float]]:
    """``--symbols``: the names, and the start prices given as ``SYMBOL=PRICE``."""
    if text is None:
        return (() if csv else TradingConfig().symbols), {}
    names: list[str] = []
    prices: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, price = item.partition("=")
        name = name.strip()
        if not name:
            raise UsageError(f"--symbols: {item!r} has no symbol name")
        if price:
            if csv:
                raise UsageError("--symbols: a CSV feed has its own prices; give names only")
            try:
                prices[name] = float(price)
                check_price(prices[name], f"start price of {name}")
            except ValueError as exc:
                raise UsageError(f"--symbols: {exc}") from None
        names.append(name)
    if not names:
        raise UsageError("--symbols needs at least one symbol")
    return tuple(dict.fromkeys(names)), prices


def _config(args: argparse.Namespace) -> tuple[TradingConfig, list[str] | None]:
    if not 0.0 <= args.chaos <= 1.0:
        raise UsageError("--chaos is a probability between 0 and 1")
    feed = list(args.feed)
    csv_path: str | None = None
    if feed[0] == "csv" and len(feed) == 2:
        csv_path = feed[1]
    elif feed != ["simulated"]:
        raise UsageError("--feed takes 'simulated' or 'csv PATH'")
    symbols, prices = _symbols(args.symbols, csv_path is not None)
    only: list[str] | None = None
    if args.only is not None:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        if not only:
            raise UsageError(f"--only needs at least one actor name: {', '.join(ACTOR_NAMES)}")
    duration = args.duration
    if duration is None and csv_path is None:
        duration = DEFAULT_DURATION
    config = TradingConfig(
        symbols=symbols,
        seed=args.seed,
        rate=args.rate,
        prices=prices,
        csv_path=csv_path,
        speed=args.speed,
        chaos=args.chaos,
        duration=duration,
    )
    return config, only


async def run_command(args: argparse.Namespace) -> int:
    """Run ``actorbus run`` with parsed ``args``; return the exit code."""
    config, only = _config(args)
    system = TradingSystem(config)
    try:
        system.tree(only)  # validates names and opens the feed before anything connects
    except FeedError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"--only: {exc}") from None
    register_schemas()
    stop, abort = asyncio.Event(), asyncio.Event()
    view = None if args.quiet else LiveView(sys.stderr, args, resolve_mode(args.mode))
    undo = _install_stop(stop, abort, view)
    try:
        bus = _make_bus(args, batch_ticks=True)
        if view is not None:
            view.source, view.broker = bus.source, partial(broker_status, bus)
        serve_metrics(bus, args)
        try:
            await bus.start()
        except BrokerUnavailable as exc:
            return unreachable(args.url, exc)
        stopped_by: list[str] = []

        def on_stop_request(reason: str) -> None:  # `actorbus stop`: wind down as on Ctrl-C
            print(f"\nactorbus: stop requested ({reason}); stopping...", file=sys.stderr)
            stopped_by.append(reason)
            stop.set()

        bus.add_stop_listener(on_stop_request)
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
                duration=config.duration,
                only=only,
                flatten=args.flatten,
                progress=view,
                stop=stop,
                abort=abort,
                wind_down=WIND_DOWN,
            )
        finally:
            await bus.shutdown()
    finally:
        undo()
        if view is not None:
            view.close()
    if stopped_by and report["ended_by"] == "interrupted":
        report["ended_by"] = "stopped"
    report["only"] = only
    report["seed"] = args.seed
    report["symbols"] = list(config.symbols)
    report["prefix"] = args.prefix
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print_summary(report, sys.stdout)
    if report["ended_by"] == "interrupted" or report["interrupted_wind_down"]:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report["problems"] else EXIT_OK
