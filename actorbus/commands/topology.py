"""``actorbus topology``: print the RabbitMQ topology of a system as definitions JSON.

For operations teams that declare exchanges and queues themselves and give
services a user without ``configure`` permission::

    actorbus topology --mode rabbitmq --prefix desk-eu > definitions.json
    rabbitmqctl import_definitions definitions.json

then run the services with ``declare="passive"`` (``--declare passive`` for
``actorbus run``). ``--tree module:attribute`` names the user's own tree (a
``Supervisor``, or a function returning one); the default is the trading demo's.
Nothing connects to a broker.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from ..config import check_prefix
from ..supervisor import Supervisor
from ._common import DEFAULT_PREFIX, EXIT_OK, UsageError

__all__ = ["add_parser", "load_tree", "topology"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``topology``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "topology",
        help="print a system's exchanges, queues and bindings as RabbitMQ definitions",
        description=(
            "Print the exchanges, queues (with their arguments) and bindings a bus on "
            "--prefix running the tree declares, as JSON for `rabbitmqctl "
            "import_definitions`. Connects to nothing."
        ),
    )
    parser.add_argument(
        "--mode",
        choices=["rabbitmq"],
        default="rabbitmq",
        help="the only mode with a topology to declare (default: rabbitmq)",
    )
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"prefix of exchange and queue names (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--tree",
        default=None,
        metavar="MODULE:ATTRIBUTE",
        help="the actor tree: a Supervisor or a function returning one (default: the demo's)",
    )
    parser.add_argument("--vhost", default="/", help="virtual host of every object (default: /)")
    parser.add_argument(
        "--unroutable",
        choices=["drop", "keep"],
        default="drop",
        help="the bus's unroutable option: 'keep' adds the queue it keeps them in",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v, -vv)")
    return parser


def load_tree(spec: str) -> Supervisor:
    """The tree named ``module:attribute``: a ``Supervisor``, or a callable returning one."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"--tree takes MODULE:ATTRIBUTE, not {spec!r}")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--tree: cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"--tree: {module_name!r} has no {attribute!r}") from None
    tree = found if isinstance(found, Supervisor) else found() if callable(found) else None
    if not isinstance(tree, Supervisor):
        raise UsageError(f"--tree: {spec} is neither a Supervisor nor returns one")
    return tree


def _demo_tree() -> Supervisor:
    from actorbus_trading import TradingConfig, TradingSystem, register_schemas

    register_schemas()
    tree: Supervisor = TradingSystem(TradingConfig()).tree()
    return tree


async def topology(args: argparse.Namespace) -> int:
    """Run ``actorbus topology``; return the exit code."""
    from ..brokers.rabbitmq import topology_definitions
    from ..runtime import tree_queue_specs

    check_prefix(args.prefix)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --tree may name a module of the current directory
    tree = load_tree(args.tree) if args.tree else _demo_tree()
    definitions = topology_definitions(
        args.prefix,
        tree_queue_specs(args.prefix, tree),
        vhost=args.vhost,
        unroutable=args.unroutable,
    )
    print(json.dumps(definitions, indent=2))
    return EXIT_OK
