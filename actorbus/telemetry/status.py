"""What a running bus can say about itself: its broker link and its supervisor trees.

Plain dicts, JSON-ready, so they travel in a heartbeat (``COMPONENT_STATUS``) as
well as feed a local view: :func:`broker_status` (mode, node in use, connected,
reconnects, outbox, unconfirmed publishes) and :func:`describe_tree` (a
supervisor tree with each actor's state).
"""

from __future__ import annotations

from typing import Any

from ..bus import AsyncMessageBus
from ..children import ChildSpec
from ..supervisor import Supervisor

__all__ = ["HEARTBEAT_COMPONENT", "broker_status", "describe_tree"]

HEARTBEAT_COMPONENT = "trading_system"
"""``component`` of the ``COMPONENT_STATUS`` heartbeat a running system publishes with
these dicts (the demo's runner does, every second): ``actorbus stats`` and ``actorbus
top`` listen for it."""


def broker_status(bus: AsyncMessageBus) -> dict[str, Any]:
    """The broker's state: ``mode``, ``node``, ``connected``, ``reconnects``, ``outbox``...

    ``outbox``: publishes waiting for the connection to come back; ``unconfirmed``:
    publishes sent and waiting for the broker's confirm. In memory the broker is
    always connected and both are 0. (The fields of ``BrokerStats`` every broker has.)
    """
    broker = bus.broker
    if broker is None:
        return {"mode": bus.mode, "node": "", "connected": False, "reconnects": 0}
    stats = broker.stats()
    return {
        "mode": stats.mode,
        "node": stats.node,
        "connected": stats.connected,
        "reconnects": stats.reconnects,
        "outbox": stats.outbox,
        "unconfirmed": stats.unconfirmed,
    }


def describe_tree(supervisor: Supervisor) -> dict[str, Any]:
    """A supervisor tree as nested dicts: name, strategy, state, children (actor names).

    Actors appear by name (``{"actor": name}``); their counters are in ``bus.stats()``.
    """
    children: list[dict[str, Any]] = []
    for child in supervisor.children:
        if isinstance(child, Supervisor):
            children.append(describe_tree(child))
        elif isinstance(child, ChildSpec):
            children.append({"actor": child.actor_name})
    return {
        "supervisor": supervisor.name,
        "strategy": str(supervisor.strategy),
        "state": str(supervisor.state),
        "children": children,
    }
