"""Cluster scenarios C4-C5: every node goes away, one at a time or all at once.

C4. A rolling restart of all three nodes, one after the other, under load;
    actor on a quorum queue. Pass: the bus follows the live nodes, 0 lost.
C5. Every node killed (-9), then all booted again, under load. Publishes wait
    in the outbox while no node answers, the bus goes around the list until
    one does, and everything confirmed before or after is handled: 0 lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from cluster_scenario import Load, broker_of, cluster_actor, now, record, settle, wait_cluster
from support.checker import LossChecker
from support.rabbit_cluster import RabbitCluster
from support.scenario import probe, queues_consumed

from actorbus import AsyncMessageBus

pytestmark = [pytest.mark.cluster, pytest.mark.anyio]


async def test_c4_a_rolling_restart_of_all_three_nodes_loses_nothing(
    cluster: RabbitCluster, prefix: str, make_bus: Callable[..., AsyncMessageBus]
) -> None:
    checker = LossChecker("C4. rolling restart")
    async with make_bus() as bus:
        await bus.spawn(cluster_actor(checker, "ticks"))
        broker = broker_of(bus)
        load = Load(bus, [checker], interval=0.01)
        load.start()
        await asyncio.sleep(1.0)
        path = [broker.link.index + 1]
        for node in cluster.nodes:
            # as an operator would: the next node goes down only once every quorum
            # queue has a majority without it (the members on the node that just came
            # back have caught up); else its queue has no leader and refuses publishes
            await asyncio.to_thread(node.await_quorum_plus_one)
            checker.mark_recovery_point()
            await node.astop()
            await probe(bus, [checker])
            await node.astart()
            await wait_cluster(cluster)
            path.append(broker.link.index + 1)
        await asyncio.sleep(1.0)
        sent = await load.stop()
        await settle(checker, sent + len(cluster.nodes))
        consumed = await queues_consumed(cluster.any_ready(), [f"{prefix}.actor.ticks"])
        reconnects = broker.link.reconnects
        nacks = broker.publish_nacks
    result = checker.result()
    record(
        "C4. rolling restart of all three nodes, quorum queue",
        result,
        recovery=result.longest_gap,
        note=(
            f"graceful stop and start of nodes 1, 2, 3 in turn; the bus moved "
            f"{reconnects} times (nodes {' -> '.join(map(str, path))}); {nacks} publish "
            f"nacks sent again; "
            f"recovery = longest pause between two handled messages"
        ),
    )
    assert reconnects >= 1
    assert consumed, "the consumer did not come back"
    assert result.lost == 0, result.summary()
    assert result.failed_publishes == 0, result.summary()
    assert result.unexpected == 0, result.summary()


async def test_c5_every_node_down_then_back_loses_nothing(
    cluster: RabbitCluster, prefix: str, make_bus: Callable[..., AsyncMessageBus]
) -> None:
    checker = LossChecker("C5. every node down, then back")
    async with make_bus() as bus:
        await bus.spawn(cluster_actor(checker, "ticks"))
        broker = broker_of(bus)
        load = Load(bus, [checker], interval=0.005, concurrency=256)
        load.start()
        await asyncio.sleep(1.0)
        killed_at = now()
        await asyncio.gather(*(node.akill() for node in cluster.nodes))
        await asyncio.sleep(1.0)
        waiting = broker.outbox  # publishes held while no node answers
        await asyncio.to_thread(cluster.start_nodes, range(len(cluster.nodes)))
        ready_at = checker.mark_recovery_point()
        await probe(bus, [checker])
        await asyncio.sleep(1.0)
        sent = await load.stop()
        await settle(checker, sent + 1)
        consumed = await queues_consumed(cluster.any_ready(), [f"{prefix}.actor.ticks"])
        outage = broker.link.outages[-1] if broker.link.outages else None
    result = checker.result()
    record(
        "C5. every node down (kill -9), then back",
        result,
        recovery=result.max_recovery,
        note=(
            f"cluster down {ready_at - killed_at:.1f}s; {waiting} publishes held in the "
            f"outbox meanwhile; link back {outage or 0:.1f}s after the loss; recovery "
            f"from the first node ready"
        ),
    )
    assert waiting > 0, "no publish waited for the cluster: the scenario proves nothing"
    assert outage is not None
    assert consumed, "the consumer did not come back"
    assert result.lost == 0, result.summary()
    assert result.failed_publishes == 0, result.summary()
    assert result.unexpected == 0, result.summary()
