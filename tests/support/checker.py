"""The loss checker every fault scenario shares, and the reliability table's rows.

A scenario tells the checker what happened to each message id:

- :meth:`LossChecker.sent`: a publish was attempted;
- :meth:`LossChecker.confirmed`: the publish returned (the broker has it);
- :meth:`LossChecker.handled`: an actor's handler ran for it (every call counts);
- :meth:`LossChecker.drained`: it was found in a queue afterwards (persistence tests).

:meth:`LossChecker.result` then counts: **lost** = confirmed but never handled
nor drained; **duplicated** = extra handler calls for an id already handled (what
an actor would see twice after the runtime's own deduplication); the **longest
gap** between two consecutive handled messages; and, per fault, the recovery
time (first handled message after the fault or after the broker was ready).

:func:`record_row` writes a scenario's row of the reliability table as JSON in
the report directory (``ACTORBUS_FAULT_REPORT_DIR``, default
``<tmp>/actorbus-fault-report``); ``python tests/faults/report.py`` prints them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

__all__ = ["CheckResult", "LossChecker", "record_row", "report_dir"]

REPORT_DIR_VARIABLE = "ACTORBUS_FAULT_REPORT_DIR"


@dataclass
class CheckResult:
    """What happened to the messages of one run."""

    name: str
    sent: int
    confirmed: int
    failed_publishes: int
    """Publishes that raised (the publisher knew: not a loss)."""
    received: int
    """Distinct ids handled."""
    handled_calls: int
    """Handler calls, duplicates included."""
    drained: int
    """Distinct ids found in queues after the run."""
    lost: int
    """Confirmed but never handled nor drained."""
    duplicated: int
    """Handler calls beyond the first per id."""
    unexpected: int
    """Ids handled that were never sent (must be 0)."""
    longest_gap: float
    """Longest wait between two consecutive handled messages, in seconds."""
    recoveries: list[float] = field(default_factory=list)
    """Per fault: seconds from the fault (or from broker ready) to the next handled message."""
    lost_ids: list[str] = field(default_factory=list)
    """Up to 20 lost ids, for the failure message."""

    @property
    def max_recovery(self) -> float | None:
        """The slowest recovery, or ``None`` when there was no fault."""
        return max(self.recoveries) if self.recoveries else None

    def recovered_within(self, limit: float) -> bool:
        """Whether there was a recovery, and every one took at most ``limit`` seconds."""
        return bool(self.recoveries) and max(self.recoveries) <= limit

    def summary(self) -> str:
        """One readable paragraph."""
        recovery = (
            ", ".join(f"{r:.3f}s" for r in self.recoveries) if self.recoveries else "no fault"
        )
        text = (
            f"[{self.name}] sent={self.sent} confirmed={self.confirmed} "
            f"failed_publishes={self.failed_publishes} received={self.received} "
            f"handled_calls={self.handled_calls} drained={self.drained} lost={self.lost} "
            f"duplicated={self.duplicated} unexpected={self.unexpected} "
            f"longest_gap={self.longest_gap:.3f}s recovery=[{recovery}]"
        )
        if self.lost_ids:
            text += f" lost_ids(first 20)={self.lost_ids}"
        return text


class LossChecker:
    """Counts what happened to every message id; see the module docs."""

    def __init__(self, name: str) -> None:
        self.name = name
        """Scenario name, in summaries."""
        self._sent: list[str] = []
        self._confirmed: dict[str, float] = {}
        self._failed: set[str] = set()
        self._handled: Counter[str] = Counter()
        self._handled_at: list[float] = []
        self._first_handled: dict[str, float] = {}
        self._drained: set[str] = set()
        self._marks: list[tuple[float, bool]] = []

    # -- recording ---------------------------------------------------------------------------

    def sent(self, message_id: str) -> None:
        """A publish of ``message_id`` was attempted."""
        self._sent.append(message_id)

    def confirmed(self, message_id: str) -> None:
        """The publish of ``message_id`` returned: the broker confirmed it."""
        self._confirmed.setdefault(message_id, time.monotonic())
        self._failed.discard(message_id)

    def failed(self, message_id: str) -> None:
        """The publish of ``message_id`` raised (and was not retried successfully)."""
        if message_id not in self._confirmed:
            self._failed.add(message_id)

    def handled(self, message_id: str) -> int:
        """A handler ran for ``message_id``; return how many times it has now."""
        now = time.monotonic()
        self._handled[message_id] += 1
        self._handled_at.append(now)
        self._first_handled.setdefault(message_id, now)
        return self._handled[message_id]

    def drained(self, message_id: str) -> None:
        """``message_id`` was found in a queue after the run."""
        self._drained.add(message_id)

    def mark_recovery_point(self, at: float | None = None, *, fresh: bool = True) -> float:
        """Note a moment (a fault, or the broker being ready) to measure recovery from.

        The recovery is the wait from ``at`` (default: now) to the first message
        handled after it; with ``fresh`` (the default) only messages confirmed after
        it count, so deliveries still sitting in a mailbox from before the fault
        cannot pass for a recovered consumer.
        """
        moment = time.monotonic() if at is None else at
        self._marks.append((moment, fresh))
        return moment

    # -- reading -----------------------------------------------------------------------------

    @property
    def handled_count(self) -> int:
        """Distinct ids handled so far."""
        return len(self._handled)

    @property
    def confirmed_count(self) -> int:
        """Ids confirmed so far."""
        return len(self._confirmed)

    def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` was handled at least once."""
        return message_id in self._handled

    def first_handled_after(self, moment: float, *, fresh: bool = False) -> float | None:
        """Monotonic time of the first message handled at or after ``moment``.

        With ``fresh``, only messages confirmed at or after ``moment`` count.
        """
        if not fresh:
            return next((t for t in self._handled_at if t >= moment), None)
        times = [
            first
            for message_id, first in self._first_handled.items()
            if first >= moment and self._confirmed.get(message_id, -1.0) >= moment
        ]
        return min(times, default=None)

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait (bounded) until ``count`` distinct ids were handled; return whether they were."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self._handled) >= count:
                break
            await asyncio.sleep(0.01)
        return len(self._handled) >= count

    async def wait_quiet(self, quiet: float = 0.5, timeout: float = 10.0) -> None:
        """Wait until no message was handled for ``quiet`` seconds (late duplicates show up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self._handled_at[-1] if self._handled_at else 0.0
            if time.monotonic() - last >= quiet:
                return
            await asyncio.sleep(0.05)

    def result(self) -> CheckResult:
        """Count everything; see :class:`CheckResult`."""
        sent = set(self._sent)
        received = set(self._handled)
        lost = sorted(set(self._confirmed) - received - self._drained)
        times = self._handled_at
        gaps = [later - earlier for earlier, later in pairwise(times)]
        recoveries = []
        for mark, fresh in self._marks:
            first = self.first_handled_after(mark, fresh=fresh)
            recoveries.append(first - mark if first is not None else float("inf"))
        return CheckResult(
            name=self.name,
            sent=len(sent),
            confirmed=len(self._confirmed),
            failed_publishes=len(self._failed - set(self._confirmed)),
            received=len(received),
            handled_calls=sum(self._handled.values()),
            drained=len(self._drained),
            lost=len(lost),
            duplicated=sum(count - 1 for count in self._handled.values()),
            unexpected=len(received - sent),
            longest_gap=max(gaps, default=0.0),
            recoveries=recoveries,
            lost_ids=lost[:20],
        )


def report_dir() -> Path:
    """Where scenario rows are written (created if missing)."""
    path = Path(
        os.environ.get(REPORT_DIR_VARIABLE) or Path(tempfile.gettempdir()) / "actorbus-fault-report"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_row(
    scenario: str,
    *,
    messages: int,
    lost: int,
    duplicates: int,
    recovery: float | None,
    note: str = "",
    result: CheckResult | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one row of the reliability table (``scenario`` starts with its number)."""
    slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")
    row: dict[str, Any] = {
        "scenario": scenario,
        "messages": messages,
        "lost": lost,
        "duplicates": duplicates,
        "recovery_s": None if recovery is None else round(recovery, 3),
        "note": note,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if result is not None:
        row["detail"] = asdict(result)
    if extra:
        row["extra"] = extra
    path = report_dir() / f"{slug}.json"
    path.write_text(json.dumps(row, indent=2, default=str))
    return path
