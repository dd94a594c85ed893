"""Where the time (or the memory) of a path goes: the evidence behind a missed target.

``python -m benchmarks.profile tell|rabbitmq|batched [N]`` runs the scenario of
the timed table once under cProfile and prints the functions with the most own
time (``tottime``), with their share of the total; ``idle [N]`` spawns N idle
actors under tracemalloc and prints the allocation sites holding the most
memory per actor. cProfile counts every resumption of a coroutine as a call
(``calls/msg`` 2.00 for a publish that awaited once). Profiling slows every
Python call alike, so read the shares, not the absolute times.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tracemalloc
from collections.abc import Callable

from . import local, memory, remote
from .harness import run_async

__all__ = ["profile_calls", "profile_memory"]

PATHS: dict[str, tuple[Callable[[int], object], int]] = {
    "tell": (local.actorbus_tell, 100_000),
    "rabbitmq": (remote.actorbus_rabbitmq, 3_000),
    "batched": (remote.actorbus_rabbitmq_batched, 50_000),
}


def _short(filename: str) -> str:
    """A file name without the machine's own folders."""
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1]
    for package in ("/actorbus/", "/benchmarks/"):
        if package in filename:
            return package[1:] + filename.rsplit(package, 1)[1]
    if "/lib/python3." in filename:  # the standard library: from the version folder on
        return filename.split("/lib/", 1)[1].split("/", 1)[1]
    return filename


def _package(short: str, name: str) -> str:
    if short == "~":
        return "builtins"
    head = short.split("/", 1)[0]
    return head if "/" in short else "stdlib"


def profile_calls(run: Callable[[int], object], n: int, top: int = 18) -> str:
    """The ``top`` functions by own time while ``run(n)`` runs, as text."""
    profiler = cProfile.Profile()
    profiler.enable()
    run(n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values()) or 1e-9
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    shares: dict[str, float] = {}
    for (filename, _, name), entry in entries.items():
        package = _package(_short(filename), name)
        shares[package] = shares.get(package, 0.0) + entry[2]
    lines = [
        "own time by package: "
        + ", ".join(
            f"{package} {100 * seconds / total:.0f}%"
            for package, seconds in sorted(shares.items(), key=lambda item: -item[1])
            if seconds >= total / 100
        ),
        f"{'own %':>6} {'calls/msg':>9}  function",
    ]
    for (filename, line, name), (_, calls, tottime, _, _) in ranked:
        lines.append(
            f"{100 * tottime / total:6.1f} {calls / n:9.2f}  {name} ({_short(filename)}:{line})"
        )
    return "\n".join(lines)


def profile_memory(count: int, top: int = 12) -> str:
    """Allocation sites holding the most memory per idle actor, as text."""
    snapshots: list[tracemalloc.Snapshot] = []
    tracemalloc.start(1)
    run_async(
        lambda: memory._actorbus(count, lambda: snapshots.append(tracemalloc.take_snapshot()))
    )
    tracemalloc.stop()
    before, after = snapshots
    differences = after.compare_to(before, "lineno")
    grown = sorted((d for d in differences if d.size_diff > 0), key=lambda d: -d.size_diff)
    total = sum(d.size_diff for d in grown)
    lines = [f"{total / count:,.0f} bytes per actor traced (RSS adds allocator overhead)"]
    lines.append(f"{'bytes/actor':>11} {'blocks/actor':>12}  where")
    for diff in grown[:top]:
        frame = diff.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        lines.append(f"{diff.size_diff / count:11,.0f} {diff.count_diff / count:12.2f}  {where}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Print the profile of one path."""
    kind = argv[0] if argv else "tell"
    if kind == "idle":
        print(profile_memory(int(argv[1]) if len(argv) > 1 else 5_000))
        return
    run, size = PATHS[kind]
    print(profile_calls(run, int(argv[1]) if len(argv) > 1 else size))


if __name__ == "__main__":
    main(sys.argv[1:])
