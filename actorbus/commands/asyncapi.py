"""``actorbus asyncapi``: print the AsyncAPI 3.0 document of the trading system's wire."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "asyncapi"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``asyncapi`` on the ``actorbus`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0 document of the wire (JSON or YAML)",
        description=(
            "Describe the RabbitMQ wire of the trading system as an AsyncAPI 3.0 document: "
            "a channel per message type on its subsystem's exchange, the actor queues, "
            "headers, and the payload schema of every registered type."
        ),
    )
    parser.add_argument(
        "--prefix", default="trading", help="prefix of exchange and queue names (default: trading)"
    )
    parser.add_argument(
        "--format",
        choices=["json", "yaml"],
        default="json",
        help="output format (default: json; yaml needs actorbus[tools])",
    )
    parser.add_argument(
        "--host", default="localhost:5672", help="broker host:port for the servers section"
    )
    parser.add_argument(
        "--codec",
        choices=["msgpack", "json"],
        default="msgpack",
        help="content type publishers write (default: msgpack)",
    )
    return parser


def asyncapi(args: argparse.Namespace) -> int:
    """Print the document; return the exit code."""
    from actorbus_trading import register_schemas
    from actorbus_trading.system import ACTOR_CLASSES

    from ..asyncapi import asyncapi_document
    from ..messages import MessageTypes

    register_schemas()
    document = asyncapi_document(
        prefix=args.prefix,
        actors=ACTOR_CLASSES,
        requests=[MessageTypes.MARKET_DATA_REQUEST],
        host=args.host,
        format=args.codec,
        title="actorbus trading system",
    )
    if args.format == "yaml":
        try:
            import yaml
        except ImportError:
            needs = "actorbus: --format yaml needs PyYAML: pip install 'actorbus[tools]'"
            print(needs, file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return EXIT_OK
