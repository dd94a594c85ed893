"""Scenario 3: ``stop_app``/``start_app`` under load, on a classic and a quorum queue.

Both actors handle the same 2000 messages, one from a classic queue, one from a
quorum queue. Pass: 0 lost on either; a message published after the broker is
ready again is handled within 2 s of ready.
"""

from __future__ import annotations

import asyncio
import time

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

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
FIRST_DELIVERY_WITHIN = 2.0


async def test_app_restart_loses_nothing(node: RabbitNode, prefix: str) -> None:
    classic = LossChecker("3. stop_app/start_app, classic")
    quorum = LossChecker("3. stop_app/start_app, quorum")
    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(counting_actor(classic, "classic"))
        await bus.spawn(counting_actor(quorum, "quorum", quorum=True))
        publisher = Publisher(bus, [classic, quorum], interval=0.0015)
        publishing = asyncio.create_task(publisher.run(MESSAGES))
        await asyncio.sleep(1.0)
        stopped_at = time.monotonic()
        await node.astop_app()
        await node.astart_app()
        ready = time.monotonic()
        outage = ready - stopped_at
        for checker in (classic, quorum):
            checker.mark_recovery_point(ready)
        await probe(bus, [classic, quorum])
        await asyncio.wait_for(publishing, 60)
        for checker in (classic, quorum):
            assert await checker.wait_for(MESSAGES + 1, timeout=30), checker.result().summary()
            await checker.wait_quiet(0.5)
        consumed = await queues_consumed(
            node, [f"{prefix}.actor.classic", f"{prefix}.actor.quorum"]
        )
    results = [classic.result(), quorum.result()]
    for label, result in zip(("classic", "quorum"), results, strict=True):
        record_row(
            f"3. stop_app/start_app ({label} queue)",
            messages=MESSAGES,
            lost=result.lost,
            duplicates=result.duplicated,
            recovery=result.max_recovery,
            note=f"broker down {outage:.1f}s; recovery from broker ready",
            result=result,
        )
    assert consumed, "a consumer did not come back after the restart"
    for result in results:
        assert result.lost == 0, result.summary()
        assert result.failed_publishes == 0, result.summary()
        assert result.max_recovery is not None, result.summary()
        assert result.max_recovery <= FIRST_DELIVERY_WITHIN, result.summary()
    for result in results:
        expect_no_duplicates(result)
