"""The event loops of actorbus: which kind it starts, and which one is running.

Which kind: uvloop when it is installed (:func:`loop_factory`). Every loop
actorbus starts itself (the sync face's loop thread, the ``actorbus`` command,
``run_bench``) takes it from here. Why uvloop: it runs the same asyncio code
faster (callbacks, timers, sockets), and a message through the bus is mostly
such loop work; the figures in the README are measured on it, and it is a
dependency on Linux and macOS. Without it (Windows, or not installed) the same
code runs on asyncio's own loop, unchanged but slower: nothing depends on
uvloop beyond speed (its timers tick in whole milliseconds, which the bench's
pacer allows for). Loops the application starts itself are its own choice.

Which one is running, without a system call per question:
``asyncio.get_running_loop()`` calls ``getpid()`` on every call (its fork
check): a system call that, on some machines, costs more than the rest of a
local publish. The hot paths (publish, ask, a mailbox waiting for a message)
ask it once per message, so they use :func:`running_loop` instead.

Why the cache is right: a thread runs at most one event loop at a time, so a
loop this thread saw running, if it is still running, is the one running here.
Not covered: a loop that stops, is then run by another thread, while this
thread runs a loop of its own; actorbus never moves a loop between threads.
A forked child forgets the cache (it inherits the parent's loop objects,
which are not its running loops).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["anyio_backend_options", "loop_factory", "run", "running_loop"]

T = TypeVar("T")

_seen = threading.local()


def _forget() -> None:
    global _seen
    _seen = threading.local()


os.register_at_fork(after_in_child=_forget)


def running_loop() -> asyncio.AbstractEventLoop:
    """Same as ``asyncio.get_running_loop()`` (``RuntimeError`` when none), cached per thread."""
    loop: asyncio.AbstractEventLoop | None = getattr(_seen, "loop", None)
    if loop is not None and loop.is_running():
        return loop
    loop = asyncio.get_running_loop()
    _seen.loop = loop
    return loop


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop.new_event_loop`` when uvloop is installed, else ``None`` (asyncio's own loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return None
    return uvloop.new_event_loop


def anyio_backend_options() -> dict[str, Any]:
    """The asyncio backend options of anyio for a loop of :func:`loop_factory`'s kind."""
    factory = loop_factory()
    return {} if factory is None else {"loop_factory": factory}


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a fresh event loop of :func:`loop_factory`'s kind; return its result."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
