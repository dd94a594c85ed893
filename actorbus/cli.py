"""The ``actorbus`` command: run the trading system, look at it, manage its dead letters.

Commands::

    actorbus run     run the trading system (in memory by default), live view, summary
    actorbus stats   counters of trading systems running over RabbitMQ, dead letters per actor
    actorbus dlq     list | replay | purge dead letters, filtered by --actor / --type
    actorbus topology  the RabbitMQ definitions (exchanges, queues, bindings) of a system
    actorbus asyncapi  the AsyncAPI 3.0 document of the wire (JSON or YAML)
    actorbus top     live view of running systems (over RabbitMQ), or of a demo here
    actorbus bench   benchmark your own actors (see ``actorbus.commands.bench``)
    actorbus queue   migrate a deployed queue to new arguments, keeping its messages
    actorbus stop    make every process of a system (one prefix) wind down gracefully

Exit codes, so scripts can act on them:

====  =============================================================
0     done, and (for ``run``) the audit found the book consistent
1     the run failed: the audit found problems, the tree gave up, the feed failed
2     bad usage: unknown option, actor name, unreadable feed file
3     the broker cannot be reached
130   interrupted (Ctrl-C); ``run`` still winds down and prints its summary
====  =============================================================

Ctrl-C during ``run`` stops the feed and winds down cleanly (a second Ctrl-C
quits at once). The trading demo (``actorbus_trading``, from the repository's ``actors/``
folder) brings ``run`` with its live view and summary; this module only
registers the commands and maps errors to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from . import __version__
from ._loops import run as run_on_fresh_loop
from .commands import asyncapi as asyncapi_command
from .commands import bench, dlq, stats, topology
from .commands import queue as queue_command
from .commands import stop as stop_command
from .commands import top as top_command
from .commands._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    unreachable,
)
from .errors import ActorbusError, BrokerUnavailable, ConfigurationError

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

    _demo_command().add_parser(commands)
    stats.add_parser(commands)
    dlq.add_parser(commands)
    topology.add_parser(commands)
    asyncapi_command.add_parser(commands)
    top_command.add_parser(commands)
    bench.add_parser(commands)
    queue_command.add_parser(commands)
    stop_command.add_parser(commands)
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _configure_logging(verbose: int) -> None:
    level = {0: logging.ERROR, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose == 0:  # the libraries (aiormq...) speak through actorbus's own messages
        for handler in logging.getLogger().handlers:
            handler.addFilter(logging.Filter("actorbus"))


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


# -- entry point -----------------------------------------------------------------------------


def _runner() -> Callable[[Any], Any]:
    return run_on_fresh_loop


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``actorbus`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "asyncapi":
        return asyncapi_command.asyncapi(args)
    _configure_logging(args.verbose)
    command = {
        "run": _run,
        "stats": stats.stats,
        "dlq": dlq.dlq,
        "topology": topology.topology,
        "top": top_command.top,
        "bench": bench.command,
        "queue": queue_command.run_queue,
        "stop": stop_command.run_stop,
    }[args.command]
    try:
        code: int = _runner()(command(args))
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"actorbus {args.command}: error: {exc}\n")
    except ConfigurationError as exc:
        print(f"actorbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnavailable as exc:
        return unreachable(args.url, exc)
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
