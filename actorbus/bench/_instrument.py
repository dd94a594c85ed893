"""Timing a user's actors without touching the runtime: a subclass per actor class.

Each actor class of the tree is replaced by a subclass whose handlers call the
original and then note the completion of every message the benchmark sent
(recognised by its source): publish-to-handled latency is the time from the
envelope's timestamp, set when it was published, to the end of the handler.
Over RabbitMQ the start is a header the benchmark adds (:data:`SENT_HEADER`, the
publish time as text): the AMQP table encoding of the broker's own float
timestamp header keeps only single precision, tens of seconds at today's epoch.
The subclass keeps the actor's name, queue and settings, so the tree runs
exactly as it would without the benchmark.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from typing import Any

from ..actor import Actor
from ..children import ChildSpec
from ..messages import Envelope
from ..supervisor import Supervisor
from ._target import BenchError, Target

__all__ = ["SENT_HEADER", "SOURCE", "Recorder", "build_tree"]

SOURCE = "actorbus-bench"
"""Source of the messages the benchmark publishes; only those are timed."""
SENT_HEADER = "x-bench-sent"
"""Header holding ``repr(time.time())`` at publish, when the benchmark sets it."""


class Recorder:
    """Collects the completions of the benchmark's messages."""

    def __init__(self) -> None:
        self.latencies_us = array("q")
        """Publish-to-handled latency of each handled delivery, in microseconds."""
        self.failed = 0
        """Deliveries whose handler raised on their last attempt."""
        self.errors = 0
        """Handler calls that raised (each retry counts)."""
        self.first_error: str | None = None
        """The first exception a handler raised, as ``Type: message``."""
        self.last_done = 0.0
        """``time.perf_counter()`` of the latest completion."""
        self.expected: float = float("inf")
        """Deliveries to wait for; set once publishing has ended."""
        self.finished = asyncio.Event()
        """Set when ``expected`` deliveries have completed."""

    @property
    def completed(self) -> int:
        """Deliveries handled or given up so far."""
        return len(self.latencies_us) + self.failed

    def expect(self, deliveries: int) -> None:
        """Publishing is over: wait for ``deliveries`` completions in all."""
        self.expected = deliveries
        if self.completed >= deliveries:
            self.finished.set()

    def done(self, envelope: Envelope) -> None:
        """A handler finished a benchmark message."""
        sent = envelope.headers.get(SENT_HEADER)
        start = envelope.timestamp if sent is None else float(sent)
        self.latencies_us.append(int((time.time() - start) * 1_000_000))
        self._tick()

    def gave_up(self) -> None:
        """A handler raised on the last attempt of a benchmark message."""
        self.failed += 1
        self._tick()

    def _tick(self) -> None:
        self.last_done = time.perf_counter()
        if self.completed >= self.expected:
            self.finished.set()


def _timed_handler(
    function: Callable[..., Any], is_async: bool, recorder: Recorder, attempts: int
) -> Callable[..., Any]:
    def failed(envelope: Envelope, error: Exception) -> None:
        recorder.errors += 1
        if recorder.first_error is None:
            recorder.first_error = f"{type(error).__name__}: {error}"
        if envelope.attempt >= attempts:
            recorder.gave_up()

    if is_async:

        async def async_handler(self: Actor, envelope: Envelope) -> Any:
            if envelope.source != SOURCE:
                return await function(self, envelope)
            try:
                result = await function(self, envelope)
            except Exception as error:
                failed(envelope, error)
                raise
            recorder.done(envelope)
            return result

        return async_handler

    def handler(self: Actor, envelope: Envelope) -> Any:
        if envelope.source != SOURCE:
            return function(self, envelope)
        try:
            result = function(self, envelope)
        except Exception as error:
            failed(envelope, error)
            raise
        recorder.done(envelope)
        return result

    return handler


def timed_class(cls: type[Actor], message_type: str, recorder: Recorder) -> type[Actor] | None:
    """A subclass of ``cls`` timing its handler of ``message_type``; ``None`` if it has none."""
    probe = cls.__new__(cls)
    resolved = probe.handler_for(message_type)
    if resolved is None:
        return None
    function, is_async = resolved
    attribute = next(
        name for name in dict.fromkeys(cls._handlers.values()) if getattr(cls, name) is function
    )
    namespace = {
        attribute: _timed_handler(function, is_async, recorder, cls.retry.max_attempts),
        "name": cls.default_name(),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    return type(cls.__name__, (cls,), namespace)


def _retype(factory: Callable[[], Actor], timed: type[Actor]) -> Callable[[], Actor]:
    def build() -> Actor:
        actor = factory()
        actor.__class__ = timed
        return actor

    return build


def _copy(tree: Supervisor, message_type: str, recorder: Recorder, queues: set[str]) -> Supervisor:
    children: list[ChildSpec | Supervisor] = []
    for child in tree.children:
        if isinstance(child, Supervisor):
            children.append(_copy(child, message_type, recorder, queues))
            continue
        timed = timed_class(child.actor, message_type, recorder)
        if timed is None:
            children.append(child)
            continue
        queues.add(child.actor.queue_options.name or child.actor_name)
        factory = _retype(child.factory, timed) if child.factory is not None else None
        children.append(
            ChildSpec(actor=timed, factory=factory, name=child.actor_name, restart=child.restart)
        )
    return Supervisor(
        children,
        strategy=tree.strategy,
        max_restarts=tree.max_restarts,
        within=tree.within,
        max_replays=tree.max_replays,
        name=tree.name,
    )


def build_tree(target: Target, message_type: str, recorder: Recorder) -> tuple[Supervisor, int]:
    """A fresh, timed copy of the target's tree and the deliveries each message makes.

    A message makes one delivery per queue it reaches: actors sharing a queue compete
    for its messages. Raises :class:`BenchError` when no actor handles the type.
    """
    value = target() if callable(target) and not isinstance(target, type) else target
    if isinstance(value, type) and issubclass(value, Actor):
        value = Supervisor([ChildSpec(actor=value)], name=value.default_name())
    if not isinstance(value, Supervisor):
        raise BenchError(
            f"the target's factory returned {type(value).__name__}, "
            "not an Actor subclass or a Supervisor"
        )
    queues: set[str] = set()
    tree = _copy(value, message_type, recorder, queues)
    if not queues:
        raise BenchError(f"no actor of the target handles message type {message_type!r}")
    return tree, len(queues)
