"""``actorbus queue migrate``: give a deployed queue new arguments without losing messages.

RabbitMQ refuses to declare an existing queue again with other arguments
(``QueueMismatch`` says which differ). This command moves the queue's
messages to a holding queue, declares it anew, and moves them back; see
:mod:`actorbus.brokers.rabbitmq._migrate` for the steps and what they
guarantee. Stop the processes consuming the queue first (``actorbus stop``);
publishers may keep running.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..brokers.base import QueueSpec
from ..config import URL_VARIABLE

__all__ = ["add_parser", "run_queue"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``queue`` (with its ``migrate`` action) to the ``actorbus`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "queue",
        help="change a deployed RabbitMQ queue's arguments, keeping its messages",
        description=(
            "migrate: move the messages of QUEUE to a holding queue, declare QUEUE again with "
            "the options given here and its --bind patterns, and move the messages back. "
            "Nothing is lost; a message published during the move may arrive twice "
            "(same message id). Stop the consumers of QUEUE first (actorbus stop)."
        ),
    )
    parser.add_argument("action", choices=["migrate"], help="what to do")
    parser.add_argument("queue", help="queue name, e.g. trading.actor.execution")
    parser.add_argument(
        "--url", default=None, help=f"AMQP URL (default: ${URL_VARIABLE}, else localhost)"
    )
    parser.add_argument(
        "--prefix", default="trading", help="prefix of exchange names (default: trading)"
    )
    parser.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a message type or topic the queue is bound to (repeat; an actor's handled types)",
    )
    parser.add_argument(
        "--single-active", action="store_true", help="declare it with a single active consumer"
    )
    parser.add_argument("--quorum", action="store_true", help="declare it as a quorum queue")
    parser.add_argument(
        "--max-length", type=int, default=None, help="most messages kept (reject-publish past it)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    parser.set_defaults(mode="rabbitmq")
    return parser


async def run_queue(args: argparse.Namespace) -> int:
    """Run ``actorbus queue``; return the exit code (errors are raised for the CLI to report)."""
    from ..brokers.rabbitmq._migrate import migrate_queue  # needs the rabbitmq backend only

    spec = QueueSpec(
        name=args.queue,
        patterns=tuple(args.bind),
        single_active=args.single_active,
        queue_type="quorum" if args.quorum else None,
        max_length=args.max_length,
    )
    result = await migrate_queue(spec, url=args.url, prefix=args.prefix)
    if args.json:
        print(
            json.dumps(
                {
                    "queue": result.queue,
                    "moved_out": result.moved_out,
                    "moved_back": result.moved_back,
                    "arguments": result.arguments,
                }
            )
        )
    else:
        print(
            f"queue {result.queue} migrated: {result.moved_out} message(s) kept aside and "
            f"{result.moved_back} put back; arguments now {result.arguments or 'none'}"
        )
    return 0
