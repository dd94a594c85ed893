"""Scenario 3: ``stop_app``/``start_app`` under load, on a classic and a quorum queue.

Both actors handle the same 2000 messages, one from a classic queue, one from a
quorum queue. Pass: 0 lost on either; a message published after the broker is
ready again is handled within 2 s of ready.

Also: while the broker is away, publishes past the broker's ``outbox_limit``
fail at once with ``QueueFull`` instead of piling up; the others go out once
it is back.
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
    slack,
)

from actorbus.errors import QueueFull

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
        assert result.max_recovery <= slack(FIRST_DELIVERY_WITHIN), result.summary()
    for result in results:
        expect_no_duplicates(result)


async def test_outbox_limit_while_the_broker_is_down(node: RabbitNode, prefix: str) -> None:
    """While the broker is away, at most ``outbox_limit`` publishes wait; the rest get
    ``QueueFull`` at once. Every message is accounted for: confirmed ones are handled."""
    checker = LossChecker("3. outbox limit during stop_app")
    async with rabbit_bus(node.url, prefix, outbox_limit=50) as bus:
        await bus.spawn(counting_actor(checker, "counter"))
        await node.astop_app()
        began = time.monotonic()
        publisher = Publisher(bus, [checker], concurrency=200)
        publishing = asyncio.create_task(publisher.run(400))
        await asyncio.sleep(1.0)
        refused_fast = len(publisher.errors)
        await node.astart_app()
        await asyncio.wait_for(publishing, 60)
        await checker.wait_for(checker.confirmed_count, timeout=30)
        await checker.wait_quiet(0.5)
    result = checker.result()
    record_row(
        "3. Outbox limit (50) while the broker is down: 400 publishes",
        messages=400,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=None,
        note=f"{result.confirmed} confirmed and handled, {result.failed_publishes} QueueFull",
        result=result,
    )
    assert all(isinstance(e, QueueFull) for e in publisher.errors), publisher.errors[:3]
    assert refused_fast >= 400 - 200, refused_fast  # refused at once, not after a timeout
    assert result.confirmed >= 50
    assert result.confirmed + result.failed_publishes == 400, result.summary()
    assert result.lost == 0, result.summary()
    assert time.monotonic() - began < 60
    expect_no_duplicates(result)
