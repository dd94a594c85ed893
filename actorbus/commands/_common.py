"""What the commands share: exit codes, bus options, the read-only view of a prefix."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ..config import MODE_VARIABLE, URL_VARIABLE, redact_url, resolve_mode, resolve_url
from ..errors import BrokerRefused, TopologyMissing

if TYPE_CHECKING:
    from ..brokers.rabbitmq import AsyncRabbitMQBroker

__all__ = [
    "DEFAULT_PREFIX",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "UsageError",
    "actor_table",
    "add_bus_options",
    "inspected_mode",
    "open_inspector",
    "unreachable",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_PREFIX = "trading"


class UsageError(Exception):
    """A problem with the command line that the user can fix."""


def add_bus_options(parser: argparse.ArgumentParser, *, inspecting: bool = False) -> None:
    """``--mode``, ``--url``, ``--prefix``, ``--json`` and ``-v``.

    ``inspecting`` (``stats``, ``dlq``): with no ``--mode``, a ``--url`` or
    ``--prefix`` means RabbitMQ, since in memory there is nothing to look at.
    """
    parser.add_argument(
        "--mode",
        choices=["in_memory", "rabbitmq"],
        default=None,
        help=f"message bus mode (default: ${MODE_VARIABLE}, else "
        + ("rabbitmq when --url or --prefix is given)" if inspecting else "in_memory)"),
    )
    parser.add_argument(
        "--url",
        default=None,
        help=(
            f"AMQP URL in rabbitmq mode, or several separated by commas (one per node of a "
            f"cluster; default: ${URL_VARIABLE}, else localhost)"
        ),
    )
    parser.add_argument(
        "--prefix",
        default=None if inspecting else DEFAULT_PREFIX,
        help=f"prefix of exchange and queue names (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable result on stdout"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v: warnings and the libraries' own logs, -vv: info)",
    )


def unreachable(url: str | None, exc: BaseException) -> int:
    """Explain a broker that cannot be reached, or that refused; return the exit code."""
    if isinstance(exc, BrokerRefused):
        print(f"actorbus: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(
        f"actorbus: cannot reach RabbitMQ at {redact_url(resolve_url(url))}: {exc}\n"
        f"  Start a broker there (for example: docker run -d -p 5672:5672 rabbitmq:3), "
        f"point --url or ${URL_VARIABLE} at yours, or run in memory with --mode in_memory.",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE


def inspected_mode(args: argparse.Namespace, command: str) -> None:
    """Settle ``args.mode`` and ``args.prefix`` for a command that looks at a broker.

    In memory nothing outlives a process, so there is nothing to look at: that is
    a ``UsageError`` (exit 2), never an empty answer.
    """
    if args.mode is None and not os.environ.get(MODE_VARIABLE):
        meant = args.url or args.prefix or os.environ.get(URL_VARIABLE)
        args.mode = "rabbitmq" if meant else "in_memory"
    args.mode = resolve_mode(args.mode)
    if args.mode == "in_memory":
        raise UsageError(
            f"in memory, nothing outlives a process, so `actorbus {command}` has nothing to "
            "look at (`actorbus run` shows its counters and dead letters live). To look at a "
            "RabbitMQ broker, give --mode rabbitmq, --url or --prefix."
        )
    args.prefix = args.prefix or DEFAULT_PREFIX


async def open_inspector(args: argparse.Namespace) -> AsyncRabbitMQBroker | None:
    """A connected broker on ``args.prefix`` that creates nothing; ``None`` if there is nothing.

    It declares passively: only the dead-letter queue is checked at connect, and
    no exchange or queue is ever created. When the prefix's dead-letter queue does
    not exist, no system ran there: that is said on stderr and ``None`` returned.
    """
    from ..brokers.factory import BrokerFactory

    broker = BrokerFactory(
        prefix=args.prefix,
        url=resolve_url(args.url),
        declare="passive",
        rabbitmq_options={"subsystems": ()},
    ).rabbitmq()
    try:
        await broker.connect()
    except TopologyMissing:
        await broker.close()
        print(
            f"actorbus: nothing under prefix {args.prefix!r} at {broker.settings}: its "
            f"dead-letter queue {broker.dead_letter_queue} does not exist, so no actorbus "
            "system has run there (nothing was created to look).",
            file=sys.stderr,
        )
        return None
    except BaseException:
        await broker.close()
        raise
    return broker


def actor_table(actors: dict[str, dict[str, Any]]) -> list[str]:
    """Lines of a table of actors' counters, as ``stats()`` gives them, one row per actor.

    ``role`` is ``active`` or ``standby`` for ``single_active`` actors, ``-`` for others.
    """
    lines = [
        f"  {'actor':<12} {'state':<9} {'processed':>10} {'failed':>7} {'retried':>8} "
        f"{'dead':>5} {'restarts':>8} {'mailbox':>8} {'conflated':>10} role"
    ]
    for name, a in actors.items():
        lines.append(
            f"  {name:<12} {a['state']:<9} {a['processed']:>10,} {a['failed']:>7,} "
            f"{a['retried']:>8,} {a['dead_lettered']:>5,} {a['restarts']:>8,} "
            f"{a['mailbox']:>8,} {a['conflated']:>10,} {a.get('role') or '-'}"
        )
    return lines
