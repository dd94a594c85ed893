"""Scenario 8: topology recovery after a broker restart, and a consumer lost in place.

Several actors (classic and quorum queues, exact and wildcard bindings) run on
one bus while the broker restarts. Pass: the bindings are the same before and
after (``rabbitmqctl list_bindings``), every queue has its consumer again, and
every actor receives a message published after the broker is ready within 2 s.

Then a queue is deleted under its running consumer (the broker cancels the
consumer; the connection stays up, which is the case where aio-pika's consumers
were known not to come back). Pass: the runtime notices, declares the queue and
its bindings again and consumes from it, and the actor receives again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import TICK, Publisher, counting_actor, poll_sync, rabbit_bus, slack

from actorbus.messages import register_message_type

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

OTHER = register_message_type("faults.other")
RECEIVE_WITHIN = 2.0
CHECK_INTERVAL = 5.0
"""How often the broker checks that every consumer is still registered."""


def ours(prefix: str, rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """This test's actors' bindings, comparable: (source, destination, routing key), sorted.

    The bus's own control queue (``<prefix>.control.*``, bound to ``system.stop``) is left out.
    """
    return sorted(
        (row["source_name"], row["destination_name"], row["routing_key"])
        for row in rows
        if row["destination_name"].startswith(f"{prefix}.actor.") and row["source_name"]
    )


async def test_topology_and_consumers_come_back(node: RabbitNode, prefix: str) -> None:
    checkers = {
        "exact": LossChecker("8. topology: exact binding"),
        "wildcard": LossChecker("8. topology: wildcard binding"),
        "quorum": LossChecker("8. topology: quorum queue"),
    }
    actors = [
        counting_actor(checkers["exact"], "exact", types=(TICK, OTHER)),
        counting_actor(checkers["wildcard"], "wildcard", types=("faults.*",)),
        counting_actor(checkers["quorum"], "quorum", types=(TICK,), quorum=True),
    ]
    queues = [f"{prefix}.actor.{name}" for name in checkers]

    def consumed() -> bool:
        with_consumer = {row["queue_name"] for row in node.list_consumers()}
        return all(queue in with_consumer for queue in queues)

    async with rabbit_bus(node.url, prefix) as bus:
        for actor in actors:
            await bus.spawn(actor)
        before = ours(prefix, await node.alist_bindings())
        assert len(before) == 4, before
        assert await asyncio.to_thread(poll_sync, consumed, 5.0)

        await node.arestart()
        ready = time.monotonic()
        for checker in checkers.values():
            checker.mark_recovery_point(ready)
        publisher = Publisher(bus, list(checkers.values()), interval=0.01)
        await publisher.run(200)
        for checker in checkers.values():
            await checker.wait_for(200, timeout=10)
        after = ours(prefix, await node.alist_bindings())
        consumers_back = await asyncio.to_thread(poll_sync, consumed, 5.0)
        results = {name: checker.result() for name, checker in checkers.items()}

        # A consumer lost while the connection stays up: delete its queue under it.
        lost = LossChecker("8. consumer lost in place (queue deleted)")
        actors[0].checker = lost
        reconnects = bus.broker.link.reconnects  # type: ignore[union-attr]
        await asyncio.to_thread(node.delete_queue, queues[0])
        deleted_at = time.monotonic()
        repaired = await asyncio.to_thread(poll_sync, consumed, CHECK_INTERVAL + 5.0)
        repaired_after = time.monotonic() - deleted_at
        lost.mark_recovery_point()
        await Publisher(bus, [lost], interval=0.005).run(100)
        await lost.wait_for(100, timeout=10)
        rebound = ours(prefix, await node.alist_bindings())
        same_connection = bus.broker.link.reconnects == reconnects  # type: ignore[union-attr]
    slowest = max(r.max_recovery or float("inf") for r in results.values())
    record_row(
        "8. Topology recovery after a restart (3 actors)",
        messages=sum(r.sent for r in results.values()),
        lost=sum(r.lost for r in results.values()),
        duplicates=sum(r.duplicated for r in results.values()),
        recovery=slowest,
        note="bindings equal before/after; recovery = slowest first delivery after ready",
    )
    lost_result = lost.result()
    record_row(
        "8. Consumer lost without a reconnect (queue deleted)",
        messages=lost_result.sent,
        lost=lost_result.lost,
        duplicates=lost_result.duplicated,
        recovery=repaired_after,
        note="recovery = queue, bindings and consumer back",
        result=lost_result,
    )
    assert after == before
    assert consumers_back
    for result in results.values():
        assert result.lost == 0, result.summary()
        assert result.recovered_within(slack(RECEIVE_WITHIN)), result.summary()
    assert same_connection, "the repair should not need a reconnect"
    assert repaired, "the deleted queue's consumer was not restored"
    assert rebound == before
    assert lost_result.lost == 0, lost_result.summary()
    assert lost_result.received == 100, lost_result.summary()
