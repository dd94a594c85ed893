"""The trading demo end to end: ``actorbus run`` with the feed as fast as it goes.

Runs ``python -m actorbus.cli run --rate 0 --duration <size> --json --quiet`` in
a fresh process (market data, strategy, risk, execution, exchange and position
actors under their supervisor, in memory) and reports the ticks per second of
the feed, as the command itself measures them (``--duration`` is feed time:
100,000 ticks per second of it with ``--rate 0``; the strategy takes every tick,
so its mailbox paces the feed).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from .harness import Metrics

__all__ = ["demo_missing", "ticks_in_memory"]


def demo_missing() -> str | None:
    """Why the demo cannot run, or ``None``."""
    if (
        importlib.util.find_spec("actorbus.cli") is None
        or importlib.util.find_spec("actorbus_trading") is None
    ):
        return "the trading demo (actorbus_trading, actorbus run) is not there"
    return None


def ticks_in_memory(seconds: int) -> Metrics:
    """Ticks per second of ``actorbus run`` in memory, feeding for ``seconds``."""
    command = [
        sys.executable,
        "-m",
        "actorbus.cli",
        "run",
        "--mode",
        "in_memory",
        "--rate",
        "0",
        "--duration",
        str(seconds),
        "--json",
        "--quiet",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=60 + 2 * seconds, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"actorbus run exited with {completed.returncode}: {completed.stderr.strip()[-1000:]}"
        )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"ticks": float(report["throughput"]["ticks_per_second"])}
