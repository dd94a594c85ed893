"""What becomes of a message no queue is bound to, the same in both brokers.

Every such publish is counted by the broker (``unroutable``, shown by the bus's
``stats()``). A ``mandatory`` publish raises ``Unroutable``. Any other is logged
as a rate-limited WARNING per type (at most one per type every 10 s, with the
count since the last) and then, by the bus's ``unroutable`` option, dropped
(``"drop"``, the default) or kept (``"keep"``) in the durable queue
``<prefix>.unroutable``, which holds at most ``UNROUTABLE_MAX_LENGTH`` messages
and drops the oldest past that (``x-overflow=drop-head``). Read it with any AMQP
client, or by consuming it from a bus.

Messages of the ``system`` subsystem (the bus's own announcements: startup,
shutdown, errors) that nobody subscribes to are expected: they are neither
counted, nor logged, nor kept (a ``mandatory`` one still raises).
"""

from __future__ import annotations

import logging
from typing import Literal

from .._ratelimit import RateLimitedWarning
from ..messages import Envelope
from .base import QueueSpec

__all__ = [
    "UNROUTABLE_MAX_LENGTH",
    "UnroutablePolicy",
    "announcement",
    "note_unroutable",
    "unroutable_spec",
]

logger = logging.getLogger("actorbus.unroutable")

UNROUTABLE_MAX_LENGTH = 10_000
"""Messages the ``<prefix>.unroutable`` queue keeps (both brokers) before dropping the oldest."""

UnroutablePolicy = Literal["drop", "keep"]
"""What becomes of a message no queue is bound to: dropped (counted, logged) or kept."""

_warnings = RateLimitedWarning(logger)


def unroutable_spec(prefix: str) -> QueueSpec:
    """The queue that keeps unroutable messages under ``unroutable="keep"``."""
    return QueueSpec(
        name=f"{prefix}.unroutable",
        patterns=(),
        max_length=UNROUTABLE_MAX_LENGTH,
        overflow="drop-head",
    )


def announcement(envelope: Envelope) -> bool:
    """Whether ``envelope`` is of the ``system`` subsystem (nobody listening is expected)."""
    return envelope.type.startswith("system.")


def note_unroutable(envelope: Envelope, kept_in: str | None) -> None:
    """Log (rate-limited, per type) that ``envelope`` reached no queue."""
    fate = f"kept in {kept_in!r}" if kept_in else "dropped"
    _warnings.note(
        f"unroutable {envelope.type}",
        f"no queue is bound to {envelope.type!r}: message {envelope.id} {fate}",
    )
