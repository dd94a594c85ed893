"""The ``actorbus`` command: run the trading system, look at it, manage its dead letters.

Commands::

    actorbus run     run the trading system (in memory by default), live view, summary
    actorbus stats   counters of trading systems running over RabbitMQ, dead letters per actor
    actorbus dlq     list | replay | purge dead letters, filtered by --actor / --type

Exit codes, so scripts can act on them:

====  =============================================================
0     done, and (for ``run``) the audit found the book consistent
1     the run failed: the audit found problems, the tree gave up, the feed failed
2     bad usage: unknown option, actor name, unreadable feed file
3     the broker cannot be reached
130   interrupted (Ctrl-C); ``run`` still winds down and prints its summary
====  =============================================================

Ctrl-C during ``run`` stops the feed and winds down cleanly (a second Ctrl-C
quits at once). The trading logic is in the ``actorbus_trading`` package; this module
only parses options, shows progress and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from . import __version__
from .bus import AsyncMessageBus
from .config import MODE_VARIABLE, URL_VARIABLE, resolve_mode, resolve_url
from .errors import ActorbusError, BrokerRefused, BrokerUnavailable, ConfigurationError
from .messages import MessageTypes

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

HEARTBEAT_COMPONENT = "trading_system"
"""``component`` of the COMPONENT_STATUS heartbeats a running system publishes."""


class UsageError(Exception):
    """A problem with the command line that the user can fix."""


# -- argument parsing ------------------------------------------------------------------------


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _non_negative_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _add_bus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=["in_memory", "rabbitmq"],
        default=None,
        help=f"message bus mode (default: ${MODE_VARIABLE}, else in_memory)",
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"AMQP URL in rabbitmq mode (default: ${URL_VARIABLE}, else localhost)",
    )
    parser.add_argument(
        "--prefix",
        default="trading",
        help="prefix of exchange and queue names (default: trading)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable result on stdout"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v: warnings, -vv: info)",
    )


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

    _demo_command().add_parser(commands)

    stats = commands.add_parser(
        "stats",
        help="show running trading systems (over RabbitMQ) and dead letters per actor",
        description=(
            "Listen for the heartbeats that `actorbus run` processes publish every second "
            "and show each one's actors, plus the dead letters waiting per actor."
        ),
    )
    _add_bus_options(stats)
    stats.add_argument(
        "--wait",
        type=_non_negative_seconds,
        default=2.5,
        help="seconds to listen for heartbeats (default: 2.5)",
    )

    dlq = commands.add_parser(
        "dlq",
        help="list, replay or purge dead letters",
        description="Dead letters: messages a handler failed on for good, kept with the reason.",
    )
    dlq.add_argument("action", choices=["list", "replay", "purge"], help="what to do")
    _add_bus_options(dlq)
    dlq.add_argument("--actor", default=None, help="only dead letters of this actor")
    dlq.add_argument(
        "--type", dest="message_type", default=None, help="only dead letters of this type"
    )
    dlq.add_argument(
        "--limit",
        type=_non_negative_count,
        default=50,
        help="most entries to list in text (default: 50)",
    )
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _configure_logging(verbose: int) -> None:
    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


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
    url = _redact(resolve_url(args.url))
    if isinstance(exc, BrokerRefused):
        print(
            f"actorbus: {exc}\n  Fix the credentials or virtual host in --url or ${URL_VARIABLE}.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    print(
        f"actorbus: cannot reach RabbitMQ at {url}: {exc}\n"
        f"  Start a broker there (for example: docker run -d -p 5672:5672 rabbitmq:3), "
        f"point --url or ${URL_VARIABLE} at yours, or run in memory with --mode in_memory.",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE


# -- run -------------------------------------------------------------------------------------


class _DemoCommand(Protocol):
    """What the demo's command module offers the ``actorbus`` command."""

    def add_parser(self, commands: Any) -> None:
        """Register ``actorbus run`` with its options."""

    async def run_command(self, args: argparse.Namespace) -> int:
        """Run the demo; return the exit code."""


def _demo_command() -> _DemoCommand:
    """The demo's command module, found by name.

    The demo is built on the library, not the other way round: the library never
    imports it statically, and its type checks stand on this protocol.
    """
    return cast(_DemoCommand, importlib.import_module("actorbus_trading.command"))


async def _run(args: argparse.Namespace) -> int:
    return await _demo_command().run_command(args)


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


# -- stats -----------------------------------------------------------------------------------


async def _stats(args: argparse.Namespace) -> int:
    bus = _make_bus(args)
    try:
        await bus.start()
    except BrokerUnavailable as exc:
        return _unreachable(args, exc)
    heartbeats: dict[str, dict[str, Any]] = {}
    try:
        if bus.mode == "in_memory":
            print(
                "actorbus: in memory, nothing outlives a process, so there is no running "
                "system to show; `actorbus run` shows these counters live. "
                "Use --mode rabbitmq to watch systems running over RabbitMQ.",
                file=sys.stderr,
            )
        else:

            def on_status(message_type: str, data: Any) -> None:
                if isinstance(data, dict) and data.get("component") == HEARTBEAT_COMPONENT:
                    heartbeats[str(data.get("source", "?"))] = data

            await bus.subscribe(MessageTypes.COMPONENT_STATUS, on_status)
            await asyncio.sleep(args.wait)
        letters = await bus.dead_letters()
    finally:
        await bus.shutdown()
    by_actor: dict[str, int] = {}
    for entry in letters:
        by_actor[entry.actor] = by_actor.get(entry.actor, 0) + 1
    if args.json:
        print(
            json.dumps(
                {
                    "mode": bus.mode,
                    "prefix": args.prefix,
                    "systems": heartbeats,
                    "dead_letters": by_actor,
                },
                default=str,
            )
        )
        return EXIT_OK
    if bus.mode != "in_memory":
        if not heartbeats:
            print(f"no running trading system heard on prefix {args.prefix!r} in {args.wait:g}s")
        for source, beat in sorted(heartbeats.items()):
            counts = beat.get("counts", {})
            print(
                f"{source}: {beat.get('state', '?')}, running {', '.join(beat.get('placed', []))}; "
                f"uptime {beat.get('elapsed', 0):.0f}s; ticks {counts.get('ticks', 0):,}, "
                f"orders {counts.get('orders', 0):,}, fills {counts.get('fills', 0):,}"
            )
            for line in _actor_table(beat.get("actors", {})):
                print(line)
    total = sum(by_actor.values())
    print(
        f"dead letters: {total}"
        + "".join(f"\n  {a:<24} {n:>6}" for a, n in sorted(by_actor.items()))
    )
    return EXIT_OK


# -- dlq -------------------------------------------------------------------------------------


async def _dlq(args: argparse.Namespace) -> int:
    bus = _make_bus(args)
    try:
        await bus.start()
    except BrokerUnavailable as exc:
        return _unreachable(args, exc)
    try:
        if bus.mode == "in_memory":
            print(
                "actorbus: in memory, dead letters live only inside the process that made "
                "them (this one has none); use --mode rabbitmq for a shared broker.",
                file=sys.stderr,
            )
        selection = {"actor": args.actor, "type": args.message_type}
        if args.action == "list":
            letters = await bus.dead_letters(**selection)
            if args.json:
                entries = [
                    {
                        "id": e.envelope.id,
                        "type": e.envelope.type,
                        "actor": e.actor,
                        "queue": e.queue,
                        "error_type": e.error_type,
                        "reason": e.reason,
                        "attempts": e.attempts,
                        "replays": e.replays,
                        "first_failure": e.first_failure,
                        "last_failure": e.last_failure,
                        "data": e.envelope.data,
                    }
                    for e in letters
                ]
                print(json.dumps({"count": len(entries), "dead_letters": entries}, default=str))
            else:
                print(f"{len(letters)} dead letter(s)")
                for e in letters[: args.limit]:
                    when = time.strftime("%H:%M:%S", time.localtime(e.last_failure))
                    print(
                        f"  {when} {e.actor:<14} {e.envelope.type:<24} {e.envelope.id} "
                        f"attempts {e.attempts} replays {e.replays}: {e.error_type}: {e.reason}"
                    )
                if len(letters) > args.limit:
                    print(f"  ... {len(letters) - args.limit} more (--limit, or --json)")
        elif args.action == "replay":
            count = await bus.replay_dead_letters(**selection)
            print(json.dumps({"replayed": count}) if args.json else f"replayed {count}")
        else:
            count = await bus.purge_dead_letters(**selection)
            print(json.dumps({"purged": count}) if args.json else f"purged {count}")
    finally:
        await bus.shutdown()
    return EXIT_OK


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
    command = {"run": _run, "stats": _stats, "dlq": _dlq}[args.command]
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
