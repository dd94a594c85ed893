"""The RabbitMQ topology of a system, as definitions ``rabbitmqctl import_definitions`` takes.

For operations teams that declare exchanges and queues themselves and give
services a user without ``configure`` permission: :func:`topology_definitions`
lists what a bus on ``prefix`` declares with the given actor queues (the
exchanges of every known subsystem, the dead-letter queue (and the unroutable
queue under ``unroutable="keep"``), each queue with its arguments, and every
binding), named and shaped exactly as the broker declares them; a bus with
``declare="passive"`` then runs on them. The queues of actor trees are
:func:`actorbus.runtime.tree_queue_specs`.

Queues of ``bus.subscribe`` are not part of a tree and are not listed: give a
subscription an explicit ``queue=`` and declare it alongside, or run it as an
actor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...messages import subsystem_of
from .._unroutable import UnroutablePolicy, unroutable_spec
from ..base import QueueSpec
from ._topology import Topology, expected_subsystems, leading_wildcard

__all__ = ["topology_definitions"]


def topology_definitions(
    prefix: str,
    actor_queues: Iterable[QueueSpec] = (),
    *,
    vhost: str = "/",
    idle_queue_expiry: float = 300.0,
    unroutable: UnroutablePolicy = "drop",
) -> dict[str, Any]:
    """The definitions (exchanges, queues, bindings) of a bus on ``prefix`` with ``actor_queues``.

    ``unroutable="keep"`` adds the queue that bus option keeps unroutable messages in.
    """
    topology = Topology(prefix, idle_queue_expiry=idle_queue_expiry, timeout=0.0)
    specs = [QueueSpec(name=f"{prefix}.dead_letters", patterns=())]
    if unroutable == "keep":
        specs.append(unroutable_spec(prefix))
    specs.extend(actor_queues)
    subsystems = expected_subsystems()
    for spec in specs:
        subsystems.update(subsystem_of(p) for p in spec.patterns if not leading_wildcard(p))
    topology.subsystems = subsystems
    exchanges = [
        {
            "name": topology.exchange(subsystem),
            "vhost": vhost,
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for subsystem in sorted(subsystems)
    ]
    queues: dict[str, dict[str, Any]] = {}
    bindings: list[dict[str, Any]] = []
    for spec in specs:
        queues.setdefault(
            spec.name,
            {
                "name": spec.name,
                "vhost": vhost,
                "durable": spec.durable or topology.defaults.type_of(spec) == "quorum",
                "auto_delete": False,
                "arguments": topology.arguments(spec),
            },
        )
        for pattern in spec.patterns:
            for exchange in topology.exchanges_for(pattern):
                bindings.append(
                    {
                        "source": exchange,
                        "vhost": vhost,
                        "destination": spec.name,
                        "destination_type": "queue",
                        "routing_key": pattern,
                        "arguments": {},
                    }
                )
    return {"exchanges": exchanges, "queues": list(queues.values()), "bindings": bindings}
