"""Which event loop runs this code, without a system call per question.

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

__all__ = ["running_loop"]

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
