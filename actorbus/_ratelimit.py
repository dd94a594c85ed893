"""A warning that says what happened without flooding the log.

:class:`RateLimitedWarning` logs at most one WARNING per key per ``interval``
seconds; each line carries how many times the event happened since the last
line for that key, so nothing is hidden, only summed.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["RateLimitedWarning"]


class RateLimitedWarning:
    """At most one warning per key per ``interval`` seconds, with the count since the last."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        """Where the warnings go."""
        self.interval = interval
        """Seconds between two warnings of one key."""
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def note(self, key: str, message: str) -> None:
        """Count one event of ``key``; log ``message`` with the count if the interval passed."""
        now = time.monotonic()
        with self._lock:
            last, unlogged = self._last.get(key, (-self.interval, 0))
            if now - last < self.interval:
                self._last[key] = (last, unlogged + 1)
                return
            self._last[key] = (now, 0)
        suffix = f" ({unlogged + 1} since the last warning of this kind)" if unlogged else ""
        self.logger.warning("%s%s", message, suffix)
