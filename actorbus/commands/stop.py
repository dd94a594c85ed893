"""``actorbus stop``: make every process of a running system wind down gracefully.

Publishes one ``system.stop`` on the prefix (see :mod:`actorbus.control`): every
bus of that prefix, in every process, receives it once; ``actorbus run`` then
winds down as on Ctrl-C (feed stopped, in-flight messages handled and
acknowledged, summary printed) and exits 0 (or 1 if its audit failed). The
command listens for the ``system.shutdown`` each bus announces as it goes, for
``--wait`` seconds, and lists who went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from ..bus import AsyncMessageBus
from ..config import MODE_VARIABLE, URL_VARIABLE
from ..messages import MessageTypes

__all__ = ["add_parser", "run_stop", "stop_system"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``stop`` to the ``actorbus`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stop",
        help="make every process of a running system (one prefix) wind down gracefully",
        description=(
            "Send system.stop on the prefix: every process of the system finishes what it "
            "handles, acknowledges it, prints its summary and exits. Lists the processes "
            "that announced their shutdown within --wait seconds."
        ),
    )
    parser.add_argument(
        "--mode",
        choices=["in_memory", "rabbitmq"],
        default=None,
        help=f"message bus mode (default: ${MODE_VARIABLE}, else in_memory)",
    )
    parser.add_argument(
        "--url", default=None, help=f"AMQP URL (default: ${URL_VARIABLE}, else localhost)"
    )
    parser.add_argument(
        "--prefix", default="trading", help="the system's prefix (default: trading)"
    )
    parser.add_argument(
        "--wait", type=float, default=5.0, help="seconds to listen for shutdowns (default: 5)"
    )
    parser.add_argument(
        "--expect",
        type=int,
        default=None,
        metavar="N",
        help="return as soon as N processes shut down (default: listen the whole --wait)",
    )
    parser.add_argument("--reason", default="actorbus stop", help="told to every process")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    return parser


async def stop_system(
    bus: AsyncMessageBus,
    *,
    reason: str = "stop requested",
    wait: float = 5.0,
    expect: int | None = None,
) -> list[str]:
    """Ask every other process on ``bus``'s prefix to wind down; return who shut down in time.

    The sources (``host.pid``) that announced ``system.shutdown`` within ``wait``
    seconds of the request, in the order they did; with ``expect``, it returns as
    soon as that many did.
    """
    gone: list[str] = []
    enough = asyncio.Event()

    def on_shutdown(message_type: str, data: Any) -> None:
        source = data.get("source") if isinstance(data, dict) else None
        if source and source != bus.source and source not in gone:
            gone.append(str(source))
            if expect is not None and len(gone) >= expect:
                enough.set()

    await bus.subscribe(MessageTypes.SYSTEM_SHUTDOWN, on_shutdown)
    await bus.request_stop(reason)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), wait)
    return gone


async def run_stop(args: argparse.Namespace) -> int:
    """Run ``actorbus stop``; return the exit code (errors are raised for the CLI to report)."""
    bus = AsyncMessageBus(args.mode, url=args.url, prefix=args.prefix, fallback=False)
    await bus.start()
    try:
        if bus.mode == "in_memory":
            print(
                "actorbus: in memory, no other process shares this bus: nothing to stop. "
                "Use --mode rabbitmq for a system running over RabbitMQ.",
                file=sys.stderr,
            )
            gone: list[str] = []
        else:
            gone = await stop_system(bus, reason=args.reason, wait=args.wait, expect=args.expect)
    finally:
        await bus.shutdown()
    if args.json:
        print(json.dumps({"prefix": args.prefix, "stopped": gone}))
    else:
        print(
            f"stop sent on prefix {args.prefix!r}; {len(gone)} process(es) shut down "
            f"within {args.wait:g}s" + "".join(f"\n  {source}" for source in gone)
        )
    return 0
