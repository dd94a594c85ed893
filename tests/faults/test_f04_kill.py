"""Scenario 4: ``kill -9`` of the broker under load, classic and quorum queues.

Pass: no confirmed message lost (every one handled, the queues drained empty,
counted with ``rabbitmqctl``); a message published after the broker is ready
again is handled within 3 s of ready.
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
    poll_sync,
    probe,
    queues_consumed,
    rabbit_bus,
    slack,
)

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
RECOVERY_WITHIN = 3.0


async def test_kill_9_loses_no_confirmed_message(node: RabbitNode, prefix: str) -> None:
    classic = LossChecker("4. kill -9, classic")
    quorum = LossChecker("4. kill -9, quorum")
    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(counting_actor(classic, "classic"))
        await bus.spawn(counting_actor(quorum, "quorum", quorum=True))
        publisher = Publisher(bus, [classic, quorum], interval=0.0015)
        publishing = asyncio.create_task(publisher.run(MESSAGES))
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        await node.akill()
        await node.astart()
        ready = time.monotonic()
        for checker in (classic, quorum):
            checker.mark_recovery_point(ready)
        await probe(bus, [classic, quorum])
        await asyncio.wait_for(publishing, 60)
        for checker in (classic, quorum):
            await checker.wait_for(MESSAGES + 1, timeout=30)
            await checker.wait_quiet(0.5)
        consumed = await queues_consumed(
            node, [f"{prefix}.actor.classic", f"{prefix}.actor.quorum"]
        )

        def drained() -> bool:
            rows = {row["name"]: row for row in node.list_queues("name", "messages")}
            return all(rows[f"{prefix}.actor.{n}"]["messages"] == 0 for n in ("classic", "quorum"))

        queues_empty = await asyncio.to_thread(poll_sync, drained, 10.0)
    outage = ready - killed_at
    results = [classic.result(), quorum.result()]
    for label, result in zip(("classic", "quorum"), results, strict=True):
        record_row(
            f"4. kill -9 of the broker ({label} queue)",
            messages=MESSAGES,
            lost=result.lost,
            duplicates=result.duplicated,
            recovery=result.max_recovery,
            note=f"broker down {outage:.1f}s; recovery from broker ready",
            result=result,
        )
    assert queues_empty
    assert consumed, "a consumer did not come back after the restart"
    for result in results:
        assert result.lost == 0, result.summary()
        assert result.failed_publishes == 0, result.summary()
        assert result.recovered_within(slack(RECOVERY_WITHIN)), result.summary()
    for result in results:
        expect_no_duplicates(result)
