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
from typing import Any

from ..bus import AsyncMessageBus
from ..messages import MessageTypes
from ._common import EXIT_OK, add_bus_options, inspected_mode, open_inspector

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
    add_bus_options(parser, inspecting=True)
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
    inspected_mode(args, "stop")
    inspector = await open_inspector(args)  # a prefix where no system ran: nothing created
    if inspector is None:
        return EXIT_OK  # as `actorbus stats`: said on stderr, nothing to stop
    await inspector.close()
    bus = AsyncMessageBus(args.mode, url=args.url, prefix=args.prefix, fallback=False)
    await bus.start()
    try:
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
    return EXIT_OK
