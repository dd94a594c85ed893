"""Memory per idle actor: the resident-set growth of spawning many actors, per actor.

Each measurement runs in a fresh interpreter (``python -m benchmarks.memory
<kind> <count>``, printing JSON), so that memory freed by an earlier scenario
cannot hide the cost of a later one. The clock here is RSS: the bytes the
process really holds, allocator overhead included.

- ``raw``: ``count`` asyncio tasks, each blocked on ``get()`` of its own
  ``asyncio.Queue()`` (the baseline: what the cheapest hand-written actor costs).
- ``actorbus``: ``count`` actors spawned under one supervisor on an in-memory
  bus, each with its own named queue, binding, mailbox and task, all idle.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from .harness import Metrics, run_async

__all__ = ["actorbus_idle_actor", "measure", "raw_idle_task"]


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle() -> int:
    gc.collect()
    return _rss()


async def _raw(count: int) -> float:
    # Warm up the loop and the allocator with a few tasks before the first reading.
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(10)]
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(queue.get()) for queue in queues]
    await asyncio.sleep(0.01)
    before = _settle()
    for _ in range(count):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queues.append(queue)
        tasks.append(loop.create_task(queue.get()))
    await asyncio.sleep(0.05)
    after = _settle()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (after - before) / count


async def _actorbus(count: int, snapshot: Callable[[], None] | None = None) -> float:
    """RSS growth per actor; ``snapshot`` is called right after each reading (profiling)."""
    from actorbus import Actor, AsyncMessageBus, ChildSpec, Envelope, Supervisor, handles
    from actorbus.brokers.memory import InMemoryServer
    from actorbus.messages import register_message_type

    idle = register_message_type("bench.idle")

    class Idle(Actor):
        @handles(idle)
        async def on_message(self, message: Envelope) -> None:
            pass

    async with AsyncMessageBus("in_memory", server=InMemoryServer()) as bus:
        warm = Supervisor([ChildSpec(actor=Idle, name=f"warm{i}") for i in range(10)], name="warm")
        await bus.spawn(warm)
        await asyncio.sleep(0.01)
        before = _settle()
        if snapshot is not None:
            snapshot()
        tree = Supervisor([ChildSpec(actor=Idle, name=f"idle{i}") for i in range(count)])
        await bus.spawn(tree)
        await asyncio.sleep(0.05)
        after = _settle()
        if snapshot is not None:
            snapshot()
        await bus.stop(tree)
    return (after - before) / count


KINDS = {"raw": _raw, "actorbus": _actorbus}


def measure(kind: str, count: int) -> Metrics:
    """Run one measurement in a fresh interpreter and return ``bytes_per_actor``."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", kind, str(count)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory/{kind} failed: {completed.stderr.strip()[-2000:]}")
    result: Metrics = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def raw_idle_task(count: int) -> Metrics:
    """Bytes per idle asyncio task blocked on its own Queue."""
    return measure("raw", count)


def actorbus_idle_actor(count: int) -> Metrics:
    """Bytes per idle actor."""
    return measure("actorbus", count)


def main(argv: list[str]) -> None:
    """Entry point of the measuring subprocess."""
    kind, count = argv[0], int(argv[1])
    per_actor = run_async(lambda: KINDS[kind](count))
    print(json.dumps({"bytes_per_actor": per_actor}))


if __name__ == "__main__":
    main(sys.argv[1:])
