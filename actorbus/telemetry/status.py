"""What a running bus can say about itself: its broker link and its supervisor trees.

Plain dicts, JSON-ready, so they travel in a heartbeat (``COMPONENT_STATUS``) as
well as feed a local view: :func:`broker_status` (mode, node in use, connected,
reconnects, outbox, unconfirmed publishes) and :func:`describe_tree` (a
supervisor tree with each actor's state).
"""

from __future__ import annotations

from typing import Any

from ..bus import AsyncMessageBus
from ..supervisor import ChildSpec, Supervisor

__all__ = ["broker_status", "describe_tree", "node_of"]


def node_of(link: Any) -> str:
    """``host:port`` of the broker node a RabbitMQ link uses (or is trying)."""
    node = getattr(link, "node", None)  # a link over several nodes names the one in use
    if node is not None:
        return str(node)
    settings = link.settings
    return f"{settings.host}:{settings.port}"


def broker_status(bus: AsyncMessageBus) -> dict[str, Any]:
    """The broker's state: ``mode``, ``node``, ``connected``, ``reconnects``, ``outbox``...

    ``outbox``: publishes waiting for the connection to come back; ``unconfirmed``:
    publishes sent and waiting for the broker's confirm. In memory the broker is
    always connected and both are 0.
    """
    broker = bus.broker
    if broker is None:
        return {"mode": bus.mode, "node": "", "connected": False, "reconnects": 0}
    link = getattr(broker, "link", None)
    if link is None:
        return {
            "mode": broker.name,
            "node": "in_memory",
            "connected": True,
            "reconnects": 0,
            "outbox": 0,
            "unconfirmed": 0,
        }
    return {
        "mode": broker.name,
        "node": node_of(link),
        "connected": link.ready.is_set(),
        "reconnects": link.reconnects,
        "outbox": getattr(broker, "outbox", 0),
        "unconfirmed": getattr(broker, "unconfirmed", 0),
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
