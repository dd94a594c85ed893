"""The in-memory server: the broker's state that every in-memory bus of a process shares.

:class:`InMemoryServer` plays the broker server: queues (see ``_memory_queue``),
topic bindings with the shared matcher and a route cache per routing key, the
dead-letter store, and the reply addresses. Every bus of a process shares
:meth:`InMemoryServer.default` unless given its own, so buses in one process see
each other the way buses sharing a RabbitMQ server do.

Bounds: the dead-letter store keeps at most ``max_dead_letters`` entries
(default 10,000); past it the oldest entry is dropped, counted in
``dead_letters_dropped`` and logged (a rate-limited warning), as RabbitMQ's
``x-max-length`` with ``drop-head`` would. Routing tables are changed under a
lock and read without one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import ClassVar

from .._ratelimit import RateLimitedWarning
from ..messages import log_fields
from ..topic import topic_matches
from ._memory_queue import MemoryQueue
from .base import DeadLetter, DeadLetterFilter, QueueSpec, ReplyHandler

__all__ = ["DEFAULT_MAX_DEAD_LETTERS", "InMemoryServer"]

logger = logging.getLogger("actorbus.brokers.memory")

DEFAULT_MAX_DEAD_LETTERS = 10_000
"""Entries the in-memory dead-letter store keeps before dropping the oldest."""


class InMemoryServer:
    """The state an in-memory broker serves: queues, bindings, dead letters, replies."""

    _default: ClassVar[InMemoryServer | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS) -> None:
        self.queues: dict[str, MemoryQueue] = {}
        """Queues by name."""
        self.max_dead_letters = max_dead_letters
        """Most dead letters kept; past it the oldest is dropped."""
        self.dead_letters_dropped = 0
        """Dead letters dropped at ``max_dead_letters``."""
        self.dropped = 0
        """Messages queues dropped at their length limit (drop-head)."""
        self._bindings: list[tuple[str, str]] = []
        self._routes: dict[str, tuple[MemoryQueue, ...]] = {}
        self._dead: deque[DeadLetter] = deque()
        self._replies: dict[str, tuple[asyncio.AbstractEventLoop, int, ReplyHandler]] = {}
        self._lock = threading.Lock()
        self._queues_lock = threading.Lock()  # (every queue's backlog, under one lock)
        self._warnings = RateLimitedWarning(logger)

    @classmethod
    def default(cls) -> InMemoryServer:
        """The process-wide server every in-memory bus uses unless given another."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def declare_queue(self, spec: QueueSpec) -> None:
        """Create ``spec.name`` if missing and add its bindings."""
        with self._lock:
            if spec.name not in self.queues:
                self.queues[spec.name] = MemoryQueue(spec, self, self._queues_lock)
            for pattern in spec.patterns:
                if (pattern, spec.name) not in self._bindings:
                    self._bindings.append((pattern, spec.name))
            self._routes = {}

    def delete_queue(self, name: str) -> None:
        """Drop a queue, its backlog and its bindings."""
        with self._lock:
            self.queues.pop(name, None)
            self._bindings = [b for b in self._bindings if b[1] != name]
            self._routes = {}

    def expire_queue(self, name: str) -> None:
        """Delete a queue that had no consumer for its ``expires`` (if still unconsumed)."""
        queue = self.queues.get(name)
        if queue is not None and not queue.consumers:
            logger.info("queue %r expired: no consumer for %ss", name, queue.spec.expires)
            self.delete_queue(name)

    def count_drop(self) -> None:
        """A queue dropped a message at its length limit (counted in ``dropped``)."""
        self.dropped += 1

    def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove the binding of ``pattern`` to queue ``name``."""
        with self._lock:
            self._bindings = [b for b in self._bindings if b != (pattern, name)]
            self._routes = {}

    def bindings(self) -> list[tuple[str, str]]:
        """Every (pattern, queue) binding, in declaration order."""
        with self._lock:
            return list(self._bindings)

    def route(self, routing_key: str) -> tuple[MemoryQueue, ...]:
        """The queues a message with ``routing_key`` goes to (cached until bindings change)."""
        routes = self._routes
        queues = routes.get(routing_key)
        if queues is None:
            with self._lock:
                seen: dict[str, MemoryQueue] = {}
                for pattern, name in self._bindings:
                    if name not in seen and topic_matches(pattern, routing_key):
                        seen[name] = self.queues[name]
                queues = tuple(seen.values())
                self._routes[routing_key] = queues
        return queues

    def add_dead_letter(self, entry: DeadLetter) -> None:
        """Store a dead letter; past ``max_dead_letters`` the oldest one is dropped."""
        with self._lock:
            self._dead.append(entry)
            dropped = self._trim_dead()
        logger.warning(
            "dead letter: %s %s from %s after %d attempt(s): %s: %s",
            entry.envelope.type,
            entry.envelope.id,
            entry.actor,
            entry.attempts,
            entry.error_type,
            entry.reason,
            extra=log_fields(entry.envelope, entry.actor),
        )
        if dropped:
            self._warnings.note(
                "dead letters full",
                f"the dead-letter store holds {self.max_dead_letters} entries, its limit: "
                f"the oldest was dropped ({self.dead_letters_dropped} dropped in all)",
            )

    def _trim_dead(self) -> int:
        dropped = 0
        while len(self._dead) > self.max_dead_letters:
            self._dead.popleft()
            dropped += 1
        self.dead_letters_dropped += dropped
        return dropped

    def take_dead_letters(
        self, selection: DeadLetterFilter, *, max_replays: int | None = None
    ) -> list[DeadLetter]:
        """Remove and return the selected dead letters (those under the replay cap)."""
        with self._lock:
            taken: list[DeadLetter] = []
            kept: deque[DeadLetter] = deque()
            for entry in self._dead:
                eligible = selection(entry) and (max_replays is None or entry.replays < max_replays)
                (taken if eligible else kept).append(entry)
            self._dead = kept
            return taken

    def list_dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        """The selected dead letters, oldest first."""
        with self._lock:
            return [entry for entry in self._dead if selection(entry)]

    def restore_dead_letters(self, entries: list[DeadLetter]) -> None:
        """Put entries back at the front of the dead-letter store (the oldest go past the cap)."""
        with self._lock:
            self._dead.extendleft(reversed(entries))
            self._trim_dead()
