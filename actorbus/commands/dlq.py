"""``actorbus dlq list|replay|purge``: the dead letters of a prefix on RabbitMQ.

No action creates a broker object: the dead-letter queue is checked passively
(a prefix without one has no dead letters, and is left as it was), replays go
to queues that exist, and ``list`` gives every entry back to the store.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..brokers.base import DeadLetterFilter
from ._common import EXIT_OK, UsageError, add_bus_options, inspected_mode, open_inspector

__all__ = ["add_parser", "dlq"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``dlq``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "dlq",
        help="list, replay or purge dead letters",
        description="Dead letters: messages a handler failed on for good, kept with the reason.",
    )
    parser.add_argument("action", choices=["list", "replay", "purge"], help="what to do")
    add_bus_options(parser, inspecting=True)
    parser.add_argument("--actor", default=None, help="only dead letters of this actor")
    parser.add_argument(
        "--type", dest="message_type", default=None, help="only dead letters of this type"
    )
    parser.add_argument(
        "--limit", type=int, default=50, help="most entries to list in text (default: 50)"
    )
    return parser


async def dlq(args: argparse.Namespace) -> int:
    """Run ``actorbus dlq``; return the exit code."""
    if args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    inspected_mode(args, f"dlq {args.action}")
    selection = DeadLetterFilter(actor=args.actor, type=args.message_type)
    broker = await open_inspector(args)
    try:
        if args.action == "list":
            letters = [] if broker is None else await broker.dead_letters(selection)
            _print_list(args, letters)
        elif args.action == "replay":
            count = 0 if broker is None else await broker.replay_dead_letters(selection)
            print(json.dumps({"replayed": count}) if args.json else f"replayed {count}")
        else:
            count = 0 if broker is None else await broker.purge_dead_letters(selection)
            print(json.dumps({"purged": count}) if args.json else f"purged {count}")
    finally:
        if broker is not None:
            await broker.close()
    return EXIT_OK


def _print_list(args: argparse.Namespace, letters: list[Any]) -> None:
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
        return
    print(f"{len(letters)} dead letter(s)")
    for e in letters[: args.limit]:
        when = time.strftime("%H:%M:%S", time.localtime(e.last_failure))
        print(
            f"  {when} {e.actor:<14} {e.envelope.type:<24} {e.envelope.id} "
            f"attempts {e.attempts} replays {e.replays}: {e.error_type}: {e.reason}"
        )
    if len(letters) > args.limit:
        print(f"  ... {len(letters) - args.limit} more (--limit, or --json)")
