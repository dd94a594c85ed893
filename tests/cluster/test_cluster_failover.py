"""Cluster scenarios C1-C3: a node dies under load.

C1. kill -9 of the node the bus is connected to; actor on a quorum queue.
    Pass: the bus moves to another node by itself, 0 confirmed messages lost.
C2. The same with a classic queue that lived on the dead node (negative
    control): its messages are out of reach while the node is down, and the
    bus says so (``stats().broker.unavailable_queues``, an error log);
    a quorum actor beside it loses nothing. What the classic queue lost is
    recorded, not asserted away.
C3. kill -9 of the node holding the quorum queue's leader, the bus connected
    elsewhere. Pass: no reconnect needed, 0 lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import msgspec
import pytest
from cluster_scenario import Load, broker_of, cluster_actor, now, record, settle
from support.checker import LossChecker
from support.rabbit_cluster import RabbitCluster
from support.scenario import poll_sync, probe, queues_consumed, wait_until

from actorbus import AsyncMessageBus

pytestmark = [pytest.mark.cluster, pytest.mark.anyio]


async def test_c1_kill_9_of_the_connected_node_loses_nothing_on_a_quorum_queue(
    cluster: RabbitCluster, prefix: str, make_bus: Callable[..., AsyncMessageBus]
) -> None:
    checker = LossChecker("C1. kill -9 of the connected node (quorum)")
    async with make_bus() as bus:
        await bus.spawn(cluster_actor(checker, "ticks"))
        broker = broker_of(bus)
        connected = broker.link.index
        assert await asyncio.to_thread(cluster.connected_node) == connected
        load = Load(bus, [checker])
        load.start()
        await asyncio.sleep(1.0)
        checker.mark_recovery_point()
        await cluster.nodes[connected].akill()
        await probe(bus, [checker])
        await asyncio.sleep(1.0)
        sent = await load.stop()
        await settle(checker, sent + 1)
        moved_to = broker.stats()
        consumed = await queues_consumed(cluster.any_ready(), [f"{prefix}.actor.ticks"])
    result = checker.result()
    outage = broker.link.outages[-1] if broker.link.outages else None
    record(
        "C1. kill -9 of the connected node, quorum queue",
        result,
        recovery=result.longest_gap,
        note=(
            f"moved from node {connected + 1} to node {moved_to.node_index}, link back "
            f"{outage:.2f}s after the loss; recovery = longest pause between two handled "
            f"messages"
            if outage is not None
            else "did not move"
        ),
    )
    assert moved_to.node_index != connected + 1
    assert consumed, "the consumer did not come back on the new node"
    assert result.lost == 0, result.summary()
    assert result.failed_publishes == 0, result.summary()
    assert result.unexpected == 0, result.summary()


async def test_c2_a_classic_queue_on_the_dead_node_is_reported_unavailable(
    cluster: RabbitCluster,
    prefix: str,
    make_bus: Callable[..., AsyncMessageBus],
    caplog: pytest.LogCaptureFixture,
) -> None:
    classic = LossChecker("C2. classic queue on the dead node")
    quorum = LossChecker("C2. quorum queue beside it")
    caplog.set_level(logging.ERROR, logger="actorbus")
    async with make_bus() as bus:
        await bus.spawn(cluster_actor(classic, "classic", queue_type="classic"))
        await bus.spawn(cluster_actor(quorum, "quorum"))
        broker = broker_of(bus)
        connected = broker.link.index
        home = await asyncio.to_thread(cluster.home_of, f"{prefix}.actor.classic")
        assert home == connected, "a classic queue lives on the node that declared it"
        load = Load(bus, [classic, quorum])
        load.start()
        await asyncio.sleep(1.0)
        killed_at = now()
        await cluster.nodes[connected].akill()
        reported = await wait_until(
            lambda: f"{prefix}.actor.classic" in broker.stats().unavailable_queues, 30
        )
        await asyncio.sleep(2.0)  # the load goes on while the classic queue is gone
        during = bus.stats().broker
        sent_while_down = load.sent
        await asyncio.to_thread(cluster.nodes[connected].start)
        back_at = classic.mark_recovery_point(fresh=False)
        await asyncio.sleep(1.0)
        sent = await load.stop()
        refused = Counter(type(error).__name__ for error in load.publisher.errors)
        await settle(quorum, sent)
        # The classic queue's consumer comes back with the next consumer check.
        resumed = await wait_until(
            lambda: f"{prefix}.actor.classic" not in broker.stats().unavailable_queues, 30
        )
        home_node = cluster.nodes[connected]
        drained = await asyncio.to_thread(
            poll_sync, lambda: home_node.queue_info(f"{prefix}.actor.classic")["messages"] == 0, 30
        )
        await classic.wait_quiet(0.5)
    classic_result, quorum_result = classic.result(), quorum.result()
    confirmed_at = classic._confirmed  # when each publish was confirmed
    lost_ids = [i for i in confirmed_at if not classic.seen(i)]
    lost_while_down = sum(killed_at <= confirmed_at[i] <= back_at for i in lost_ids)
    record(
        "C2. kill -9 of the connected node, classic queue on it (negative control)",
        classic_result,
        recovery=classic_result.max_recovery,
        note=(
            f"queue unavailable while its node was down ({back_at - killed_at:.1f}s), reported in "
            f"stats and logs; {classic_result.lost} confirmed messages lost, "
            f"{lost_while_down} of them confirmed while its node was down; "
            f"{classic_result.failed_publishes} publishes refused to the publisher "
            f"({', '.join(f'{n} {k}' for k, n in sorted(refused.items())) or 'none'}); "
            f"recovery from the node's return"
        ),
        extra={
            "stats_during": msgspec.to_builtins(during),
            "sent_while_down": sent_while_down,
            "lost_while_down": lost_while_down,
            "publish_errors": [str(error) for error in load.publisher.errors[:5]],
        },
    )
    record(
        "C2. quorum queue beside the classic one",
        quorum_result,
        recovery=None,
        note="same bus, same kill: the quorum queue kept serving",
    )
    assert reported, "the bus did not report the classic queue as unavailable"
    assert f"{prefix}.actor.classic" in during.unavailable_queues  # type: ignore[union-attr]
    assert "is unavailable" in caplog.text
    assert f"{prefix}.actor.classic" in caplog.text
    assert resumed, "the classic queue's consumer did not come back with its node"
    assert drained, "the classic queue was not drained after its node came back"
    assert quorum_result.lost == 0, quorum_result.summary()
    assert classic_result.received > 0


async def test_c3_kill_9_of_the_quorum_leaders_node_while_connected_elsewhere(
    cluster: RabbitCluster, prefix: str, make_bus: Callable[..., AsyncMessageBus]
) -> None:
    checker = LossChecker("C3. kill -9 of the quorum leader's node")
    queue = f"{prefix}.actor.ticks"
    actor = cluster_actor(checker, "ticks")
    # Declare the queue from node 1 (its leader starts there), then work from node 2.
    async with make_bus(cluster.urls[0]) as first:
        await first.spawn(actor)
    leader = await asyncio.to_thread(cluster.leader_of, queue)
    assert leader == 0
    elsewhere = [cluster.urls[1], cluster.urls[2], cluster.urls[0]]
    async with make_bus(elsewhere) as bus:
        await bus.spawn(actor)
        broker = broker_of(bus)
        assert broker.link.index == 0  # node 2, the first of its list
        load = Load(bus, [checker])
        load.start()
        await asyncio.sleep(1.0)
        checker.mark_recovery_point()
        await cluster.nodes[leader].akill()
        await probe(bus, [checker])
        await asyncio.sleep(1.0)
        sent = await load.stop()
        await settle(checker, sent + 1)
        new_leader = await asyncio.to_thread(cluster.leader_of, queue)
        reconnects = broker.link.reconnects
    result = checker.result()
    record(
        "C3. kill -9 of the quorum leader's node, bus connected elsewhere",
        result,
        recovery=result.longest_gap,
        note=(
            f"leader moved from node {leader + 1} to node "
            f"{(new_leader or 0) + 1}; the bus reconnected {reconnects} times; "
            f"recovery = longest pause between two handled messages"
        ),
    )
    assert new_leader is not None
    assert new_leader != leader
    assert reconnects == 0
    assert result.lost == 0, result.summary()
    assert result.failed_publishes == 0, result.summary()
