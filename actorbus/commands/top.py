"""``actorbus top``: a live terminal view of the trading systems running over RabbitMQ.

It listens for the heartbeats (``COMPONENT_STATUS``) every running system
publishes each second under a prefix, and shows every process it hears: its
actors (in their supervisor tree when the heartbeat carries one) with state,
role, rate, mailbox depth, failures, retries, dead letters and restarts, and the
broker node and outbox when the heartbeat carries them. Actors' own status
messages (restarted, down) show as events. ``q`` (or Ctrl-C) quits.

``--demo`` runs the trading system here, in memory, and shows it the same way.
``--once`` listens ``--wait`` seconds and prints one frame (for scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

from ..bus import AsyncMessageBus
from ..config import URL_VARIABLE
from ..errors import BrokerUnavailable
from ..messages import MessageTypes
from ..telemetry.status import HEARTBEAT_COMPONENT
from ._common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["add_parser", "top"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``top`` on the ``actorbus`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "top",
        help="live view of running trading systems (over RabbitMQ), or of a demo here",
        description=(
            "Show every process of a trading system running over RabbitMQ under a prefix, "
            "live: actors, states, rates, mailboxes, failures, restarts, dead letters. "
            "Needs actorbus[tools]. Press q to quit."
        ),
    )
    parser.add_argument(
        "--url", default=None, help=f"AMQP URL (default: ${URL_VARIABLE}, else localhost)"
    )
    parser.add_argument(
        "--prefix", default="trading", help="prefix of exchange and queue names (default: trading)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between redraws (default: 0.5)"
    )
    parser.add_argument(
        "--once", action="store_true", help="print one frame after --wait seconds, then exit"
    )
    parser.add_argument(
        "--wait", type=float, default=2.5, help="seconds to listen with --once (default: 2.5)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: warnings, -vv: info)"
    )
    parser.add_argument(
        "--demo",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the trading system here, in memory, for SECONDS and watch it",
    )
    return parser


async def top(args: argparse.Namespace) -> int:
    """Run the view until ``q`` or Ctrl-C (or one frame with ``--once``); return the exit code."""
    try:
        from rich.console import Console
        from rich.live import Live

        from ..telemetry.view import SystemView
    except ImportError:
        print("actorbus top needs rich: pip install 'actorbus[tools]'", file=sys.stderr)
        return EXIT_USAGE
    view = SystemView(f"actorbus top  prefix {args.prefix}")
    stop = asyncio.Event()
    if args.demo is not None:
        return await _demo(args, view, stop, Console(), Live)
    bus = AsyncMessageBus(mode="rabbitmq", url=args.url, prefix=args.prefix, fallback=False)
    try:
        await bus.start()
    except BrokerUnavailable as exc:
        print(f"actorbus top: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        await bus.subscribe(MessageTypes.COMPONENT_STATUS, _listener(view))
        if args.once:
            await asyncio.sleep(args.wait)
            Console().print(view)
            return EXIT_OK
        with _keys(stop), Live(view, screen=True, auto_refresh=False) as live:
            while not stop.is_set():
                live.refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.interval)
    finally:
        await bus.shutdown()
    return EXIT_OK


def _listener(view: Any) -> Callable[[str, Any], None]:

    def on_status(message_type: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        component = data.get("component")
        if component == HEARTBEAT_COMPONENT:
            view.update(data)
        elif component and data.get("state") not in (None, "running"):
            restarts = f" (restarts {data['restarts']})" if "restarts" in data else ""
            view.event(f"{data.get('source', '?')}: {component} {data['state']}{restarts}")

    return on_status


async def _demo(
    args: argparse.Namespace, view: Any, stop: asyncio.Event, console: Any, live: Any
) -> int:
    from actorbus_trading import TradingConfig, TradingSystem, register_schemas, run_trading_system

    from ..telemetry.status import broker_status

    register_schemas()
    system = TradingSystem(TradingConfig())
    started = time.monotonic()
    async with AsyncMessageBus(mode="in_memory", prefix=args.prefix) as bus:

        def progress(numbers: dict[str, Any]) -> None:
            view.update({"source": bus.source, "broker": broker_status(bus), **numbers})

        with _keys(stop), live(view, console=console, screen=True, refresh_per_second=4):
            await run_trading_system(
                bus,
                system,
                duration=args.demo,
                progress=progress,
                interval=args.interval,
                stop=stop,
            )
    view.footer = f"ran {time.monotonic() - started:.1f}s"
    console.print(view)
    return EXIT_OK


@contextlib.contextmanager
def _keys(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` when ``q`` is pressed (stdin a terminal) or on Ctrl-C."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None

    def on_key() -> None:
        assert fd is not None
        if b"q" in os.read(fd, 32).lower():
            stop.set()

    if fd is not None:
        tty.setcbreak(fd)
        loop.add_reader(fd, on_key)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        yield
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if fd is not None and saved is not None:
            loop.remove_reader(fd)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
