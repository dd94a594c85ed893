"""``--metrics-port``/``--metrics-addr``: serve a command's bus metrics to Prometheus."""

from __future__ import annotations

import argparse

from ..bus import AsyncMessageBus
from ._common import UsageError

__all__ = ["add_metrics_options", "serve_metrics"]


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics-port N`` and ``--metrics-addr ADDR`` to a command."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="N",
        help="serve Prometheus metrics on http://ADDR:N/metrics (extra: actorbus[metrics])",
    )
    parser.add_argument(
        "--metrics-addr",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the metrics endpoint listens on (default: 0.0.0.0, every interface)",
    )


def serve_metrics(bus: AsyncMessageBus, args: argparse.Namespace) -> None:
    """Start the metrics endpoint of ``bus`` when ``--metrics-port`` was given."""
    if args.metrics_port is None:
        return
    try:
        from ..telemetry.prometheus import start_metrics_server
    except ImportError:
        needs = "--metrics-port needs prometheus-client: pip install 'actorbus[metrics]'"
        raise UsageError(needs) from None
    try:
        start_metrics_server(bus, args.metrics_port, addr=args.metrics_addr)
    except OSError as exc:
        raise UsageError(f"--metrics-port {args.metrics_port}: {exc.strerror or exc}") from None
