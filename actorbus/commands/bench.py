"""``actorbus bench``: throughput, CPU per message and latency of a user's own actors.

Exit codes: 0 every delivery handled; 1 some were dead-lettered or never
finished; 2 bad usage (target, payload, type, numbers); 3 broker unreachable.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..bench import BenchError, BenchResult, Progress, bench, load_payload, load_target

__all__ = ["add_parser", "command"]


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _number(minimum_exclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (minimum_exclusive and value == 0):
            bound = "> 0" if minimum_exclusive else ">= 0"
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, not {text}")
        return value

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``actorbus`` subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="benchmark your own actor (or tree): throughput, CPU per message, latency",
        description=(
            "Spawn a timed copy of TARGET on a fresh bus, publish MESSAGE_TYPE messages to it "
            "and report throughput, CPU per message and publish-to-handled latency "
            "(p50, p99, p99.9, max). Over RabbitMQ it uses a fresh prefix and deletes what "
            "it declared."
        ),
    )
    parser.add_argument(
        "target",
        help="module:ActorClass, module:supervisor or module:function returning either",
    )
    parser.add_argument("message_type", help="the message type to publish (e.g. orders.new)")
    parser.add_argument(
        "--payload",
        default=None,
        help="message data: JSON text, @file.json, or module:function called per message",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--count", type=_count, default=None, help="messages (default: 10000)")
    size.add_argument("--duration", type=_number(True), default=None, help="seconds to publish for")
    parser.add_argument(
        "--rate",
        type=_number(False),
        default=0.0,
        help="messages per second on a fixed schedule; 0: as fast as it goes (default)",
    )
    parser.add_argument("--mode", choices=["in_memory", "rabbitmq"], default="in_memory")
    parser.add_argument("--url", default=None, help="AMQP URL in rabbitmq mode")
    parser.add_argument(
        "--prefix", default=None, help="exchange and queue prefix (default: a fresh bench-*)"
    )
    parser.add_argument(
        "--window", type=_count, default=None, help="publishes in flight (1 in memory, 1000 AMQP)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more")
    return parser


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar on a terminal's standard error (the ``bench`` extra)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import Progress as Bar
    except ImportError:  # pragma: no cover - rich comes with the bench extra
        yield None
        return
    # Redrawn from the benchmark's own ticker, not by rich's refresh thread: a thread
    # redrawing 10 times a second would take the GIL from the run it measures.
    with Bar(console=Console(stderr=True), transient=True, auto_refresh=False) as bar:
        task = bar.add_task("deliveries", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, refresh=True)

        yield update


def _text(result: BenchResult) -> str:
    latency = result.latency_us
    pace = f"at {result.rate:,.0f} msgs/s" if result.rate else "flat out"
    lines = [
        f"{result.target}: {result.message_type}, {result.mode}, {pace}: "
        f"{result.messages:,} messages, {result.deliveries:,} deliveries in {result.seconds:.2f} s",
        f"  throughput  {result.throughput:,.0f} msgs/s",
        f"  CPU         {result.cpu_us_per_message:,.1f} us per message (this process)",
        f"  latency     p50 {latency.p50:,.0f} us   p99 {latency.p99:,.0f} us   "
        f"p99.9 {latency.p999:,.0f} us   max {latency.max:,.0f} us",
    ]
    if result.failed or result.unfinished or result.errors:
        lines.append(
            f"  problems    {result.failed} dead-lettered, {result.unfinished} unfinished, "
            f"{result.errors} handler errors"
        )
    if result.first_error:
        lines.append(f"  first error {result.first_error}")
    return "\n".join(lines)


async def command(args: argparse.Namespace) -> int:
    """Run ``actorbus bench``; return its exit code."""
    try:
        target = load_target(args.target)
        payload = load_payload(args.payload)
        with _progress_bar(not args.quiet and not args.json) as progress:
            result = await bench(
                target,
                args.message_type,
                payload,
                count=args.count or (None if args.duration is not None else 10_000),
                duration=args.duration,
                rate=args.rate,
                mode=args.mode,
                url=args.url,
                prefix=args.prefix,
                window=args.window,
                progress=progress,
            )
    except BenchError as exc:
        print(f"actorbus bench: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict(), indent=2) if args.json else _text(result))
    return 1 if result.failed or result.unfinished else 0
