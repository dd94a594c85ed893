"""CPU instructions per message of the in-process paths, counted by valgrind's callgrind.

Timings on a shared machine move by tens of percent from run to run; an
instruction count moves by well under one, so a regression of a few percent
shows in one run. Each path runs in a fresh interpreter under
``valgrind --tool=callgrind`` at two sizes, and the count per message is the
difference of the two totals over the difference of the sizes: start-up,
imports and shutdown cancel out. ``PYTHONHASHSEED`` is fixed so that both runs
hash alike. The paths and their raw baselines are those of the timed table
(:mod:`benchmarks.local`, :mod:`benchmarks.memory`); for the idle actor a
"message" is one actor spawned.

``python -m benchmarks --instructions`` prints the table;
``python -m benchmarks.instructions <path> <n>`` is the measured child.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import local, memory
from .harness import Metrics, Scenario, run_async

__all__ = ["PATHS", "instruction_scenarios", "valgrind_missing"]

PATHS: dict[str, Callable[[int], object]] = {
    "tell-raw": local.raw_queue_tell,
    "tell": local.actorbus_tell,
    "fanout-raw": local.raw_fanout,
    "fanout": local.actorbus_fanout,
    "ask-raw": local.raw_ask,
    "ask": local.actorbus_ask,
    "idle-raw": lambda n: run_async(lambda: memory._raw(n)),
    "idle": lambda n: run_async(lambda: memory._actorbus(n)),
}
"""What the child can run, by name."""

_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def valgrind_missing() -> str | None:
    """Why instructions cannot be counted here, or ``None`` when valgrind is installed."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (apt-get install valgrind)"
    return None


def count(path: str, n: int) -> int:
    """Instructions of a whole child process running ``path`` at size ``n``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.instructions",
                path,
                str(n),
            ],
            capture_output=True,
            timeout=1800,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"callgrind run of {path} failed: {done.stderr[-1500:]!r}")
        found = _TOTAL.search(out.read_bytes())
        if found is None:
            raise RuntimeError(f"no instruction total in the callgrind output of {path}")
        return int(found.group(1))


def per_message(path: str, small: int, large: int) -> Metrics:
    """Instructions per message of ``path``: the difference of two sizes."""
    return {"instructions": (count(path, large) - count(path, small)) / (large - small)}


def instruction_scenarios(*, quick: bool = False) -> list[Scenario]:
    """The counted paths as scenarios (size = the larger run; the smaller is a quarter)."""
    rows = [
        ("tell: raw asyncio.Queue(1000)", "tell-raw", None, 4_000),
        ("tell: actorbus", "tell", "tell: raw asyncio.Queue(1000)", 4_000),
        ("fan-out x4: raw 4 x asyncio.Queue(1000)", "fanout-raw", None, 2_000),
        ("fan-out x4: actorbus", "fanout", "fan-out x4: raw 4 x asyncio.Queue(1000)", 2_000),
        ("ask: raw future round trip", "ask-raw", None, 2_000),
        ("ask: actorbus", "ask", "ask: raw future round trip", 2_000),
        ("idle actor: raw task + asyncio.Queue", "idle-raw", None, 1_000),
        ("idle actor: actorbus", "idle", "idle actor: raw task + asyncio.Queue", 1_000),
    ]

    def scenario(name: str, path: str, baseline: str | None, size: int) -> Scenario:
        def run(n: int) -> Metrics:
            return per_message(path, max(1, n // 4), n)

        return Scenario(
            f"{name} [callgrind]",
            run,
            size,
            40 if quick else size,
            f"{baseline} [callgrind]" if baseline else None,
            skip=valgrind_missing,
        )

    return [scenario(*row) for row in rows]


def main(argv: list[str]) -> None:
    """Entry point of the counted child: run one path once."""
    PATHS[argv[0]](int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
