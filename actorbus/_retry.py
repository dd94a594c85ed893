"""One way to wait between tries: exponential backoff with jitter, bounded.

Every loop in actorbus that tries something again (a connection, a declaration
refused during an outage, a publish the broker nacked, a broker that is down at
start-up, an actor whose start failed) takes its waits from a :class:`Backoff`:
``first`` seconds, then ``factor`` times longer each time up to ``longest``, each
wait moved by up to ``jitter`` of itself at random so that many clients retrying
the same broker do not retry in step. A backoff with ``first=0`` retries at once
(what tests want).

Loops that wait for something to *happen* (a link coming back, a consumer going
idle) wait on an event instead; a backoff is only for trying again.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import msgspec

__all__ = ["Backoff"]


class Backoff(msgspec.Struct, frozen=True):
    """Waits between tries: ``first``, growing by ``factor`` up to ``longest``, jittered."""

    first: float
    """Seconds before the second try."""
    longest: float
    """Longest wait between two tries."""
    factor: float = 2.0
    """Growth of the wait from one try to the next."""
    jitter: float = 0.1
    """Each wait is moved by up to this fraction of itself, at random."""

    def delays(self) -> Iterator[float]:
        """The waits, one per failed try, without end (the caller bounds the tries)."""
        wait = self.first
        while True:
            spread = wait * self.jitter
            yield max(0.0, wait + random.uniform(-spread, spread))
            wait = min(wait * self.factor, self.longest)

    def nth(self, failures: int) -> float:
        """The wait after ``failures`` failed tries, before jitter."""
        return float(min(self.first * self.factor ** (failures - 1), self.longest))

    def total(self, tries: int) -> float:
        """Seconds the first ``tries`` waits add up to, without jitter (to state a bound)."""
        total, wait = 0.0, self.first
        for _ in range(tries):
            total += wait
            wait = min(wait * self.factor, self.longest)
        return total
