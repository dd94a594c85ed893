"""The counters of a bus (``AsyncMessageBus.stats()``): its mode, broker and actors."""

from __future__ import annotations

from typing import Any

from .brokers.memory import InMemoryBroker
from .router import Router

__all__ = ["bus_stats"]


def bus_stats(router: Router | None, mode: str, closed: bool) -> dict[str, Any]:
    """The ``stats()`` of a bus whose router is ``router`` (``None``: not started)."""
    actors: dict[str, dict[str, Any]] = {}
    for cell in router.cells if router is not None else []:
        counters = cell.stats
        key, number = cell.name, 1
        while key in actors:
            number += 1
            key = f"{cell.name}#{number}"
        entry = actors[key] = {
            "state": str(cell.state),
            "processed": counters.processed,
            "failed": counters.failed,
            "retried": counters.retried,
            "dead_lettered": counters.dead_lettered,
            "restarts": counters.restarts,
            "mailbox": len(cell.mailbox),
            "conflated": getattr(cell.mailbox, "conflated", 0),
            "busy": cell.busy,
        }
        if cell.actor_class.queue_options.single_active:
            consumer = cell.consumer
            entry["role"] = "active" if consumer is not None and consumer.active else "standby"
    broker = router.broker if router is not None else None
    describe = getattr(broker, "describe", None)
    stats: dict[str, Any] = {
        "mode": mode,
        "closed": closed,
        "unroutable": broker.unroutable if broker is not None else 0,
        "broker": describe() if describe is not None else {},
        "actors": actors,
    }
    if isinstance(broker, InMemoryBroker):  # what the in-memory bounds dropped
        stats["dropped"] = broker.server.dropped
        stats["dead_letters_dropped"] = broker.server.dead_letters_dropped
    return stats
