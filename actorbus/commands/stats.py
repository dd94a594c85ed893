"""``actorbus stats``: running trading systems (over RabbitMQ) and dead letters per actor.

Read-only: it never creates an exchange or a queue (passive declarations, and a
temporary queue that dies with its channel to hear heartbeats), so looking at
an unused prefix leaves the broker as it was.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import msgspec

from ..brokers.base import DeadLetterFilter
from ..messages import MessageTypes
from ..telemetry.status import HEARTBEAT_COMPONENT
from ._common import (
    EXIT_OK,
    UsageError,
    actor_table,
    add_bus_options,
    inspected_mode,
    open_inspector,
)

__all__ = ["add_parser", "stats"]
"""``component`` of the COMPONENT_STATUS heartbeats a running system publishes."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``stats``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "stats",
        help="show running trading systems (over RabbitMQ) and dead letters per actor",
        description=(
            "Listen for the heartbeats that `actorbus run` processes publish every second "
            "and show each one's actors, plus the dead letters waiting per actor. "
            "Creates nothing on the broker."
        ),
    )
    add_bus_options(parser, inspecting=True)
    parser.add_argument(
        "--wait", type=float, default=2.5, help="seconds to listen for heartbeats (default: 2.5)"
    )
    return parser


async def stats(args: argparse.Namespace) -> int:
    """Run ``actorbus stats``; return the exit code."""
    from ..brokers.rabbitmq._listen import overhear

    if not (math.isfinite(args.wait) and args.wait >= 0):
        raise UsageError("--wait must be a finite number of seconds, 0 or more")
    inspected_mode(args, "stats")
    heartbeats: dict[str, dict[str, Any]] = {}
    by_actor: dict[str, int] = {}
    node: dict[str, Any] = {}
    broker = await open_inspector(args)
    if broker is not None:
        node = msgspec.structs.asdict(broker.stats())
        try:

            def on_status(envelope: Any) -> None:
                data = envelope.data
                if isinstance(data, dict) and data.get("component") == HEARTBEAT_COMPONENT:
                    heartbeats[str(data.get("source", "?"))] = data

            await overhear(
                broker.link, args.prefix, MessageTypes.COMPONENT_STATUS, on_status, args.wait
            )
            for entry in await broker.dead_letters(DeadLetterFilter()):
                by_actor[entry.actor] = by_actor.get(entry.actor, 0) + 1
        finally:
            await broker.close()
    if args.json:
        report = {
            "mode": args.mode,
            "prefix": args.prefix,
            "exists": broker is not None,
            "broker": node,
            "systems": heartbeats,
            "dead_letters": by_actor,
        }
        print(json.dumps(report, default=str))
        return EXIT_OK
    _print(args, node, heartbeats, by_actor)
    return EXIT_OK


def _node(beat: dict[str, Any]) -> str:
    """The broker node a heartbeat's process uses, if it says."""
    broker = beat.get("broker")
    return str(broker.get("node") or "") if isinstance(broker, dict) else ""


def _print(
    args: argparse.Namespace,
    node: dict[str, Any],
    heartbeats: dict[str, dict[str, Any]],
    by_actor: dict[str, int],
) -> None:
    if node.get("node"):
        print(f"RabbitMQ node {node['node_index']} of {node['nodes']}: {node['node']}")
    if not heartbeats:
        print(f"no running trading system heard on prefix {args.prefix!r} in {args.wait:g}s")
    for source, beat in sorted(heartbeats.items()):
        counts = beat.get("counts", {})
        print(
            f"{source}: {beat.get('state', '?')}, running {', '.join(beat.get('placed', []))}; "
            f"uptime {beat.get('elapsed', 0):.0f}s; ticks {counts.get('ticks', 0):,}, "
            f"orders {counts.get('orders', 0):,}, fills {counts.get('fills', 0):,}"
            + (f"; on {node_of_beat}" if (node_of_beat := _node(beat)) else "")
        )
        for line in actor_table(beat.get("actors", {})):
            print(line)
    total = sum(by_actor.values())
    print(
        f"dead letters: {total}"
        + "".join(f"\n  {a:<24} {n:>6}" for a, n in sorted(by_actor.items()))
    )
