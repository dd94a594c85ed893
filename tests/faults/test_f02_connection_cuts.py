"""Scenario 2: three connection cuts while 2000 messages flow.

Two cuts abort the TCP link in a proxy; the third is the broker closing the
connection (``rabbitmqctl close_connection`` on each connection it lists).
Pass: 0 lost, 0 duplicates seen by the actor, and after each cut a message
published after it is handled within 1 s.
"""

from __future__ import annotations

import asyncio

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import (
    Publisher,
    counting_actor,
    expect_no_duplicates,
    probe,
    queues_consumed,
    rabbit_bus,
)
from support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
RESUME_WITHIN = 1.0


async def test_three_cuts_lose_nothing(node: RabbitNode, proxy: TcpProxy, prefix: str) -> None:
    checker = LossChecker("2. connection cuts")
    async with rabbit_bus(proxy.url(node.url), prefix) as bus:
        await bus.spawn(counting_actor(checker, "counter"))
        publisher = Publisher(bus, [checker], interval=0.002)
        publishing = asyncio.create_task(publisher.run(MESSAGES))
        await asyncio.sleep(0.8)
        checker.mark_recovery_point()
        assert proxy.cut() >= 1
        await probe(bus, [checker])
        await asyncio.sleep(1.0)
        checker.mark_recovery_point()
        assert proxy.cut() >= 1
        await probe(bus, [checker])
        await asyncio.sleep(1.0)
        closed = await asyncio.to_thread(close_each_connection, node)
        checker.mark_recovery_point()
        await probe(bus, [checker])
        await asyncio.wait_for(publishing, 60)
        assert await checker.wait_for(MESSAGES + 3, timeout=30)
        await checker.wait_quiet(0.5)
        consumed = await queues_consumed(node, [f"{prefix}.actor.counter"])
        reconnects = bus._router.broker.link.reconnects  # type: ignore[union-attr]
    result = checker.result()
    record_row(
        "2. Three connection cuts (2 proxy, 1 close_connection)",
        messages=MESSAGES,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=result.max_recovery,
        result=result,
    )
    assert closed >= 1
    assert reconnects >= 3, result.summary()
    assert consumed, "a consumer did not come back after the last reconnect"
    assert result.lost == 0, result.summary()
    assert result.failed_publishes == 0, result.summary()
    assert publisher.stray_cancellations == 0, result.summary()
    assert all(r <= RESUME_WITHIN for r in result.recoveries), result.summary()
    expect_no_duplicates(result)


def close_each_connection(node: RabbitNode) -> int:
    """Close every client connection of the node one by one; return how many."""
    pids = node.connection_pids()
    for pid in pids:
        node.close_connection(pid, "scenario 2")
    return len(pids)
