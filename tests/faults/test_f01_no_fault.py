"""Scenario 1: no fault. 2000 messages through RabbitMQ: 0 lost, 0 duplicates."""

from __future__ import annotations

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import Publisher, counting_actor, rabbit_bus

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000


async def test_no_fault_loses_and_duplicates_nothing(node: RabbitNode, prefix: str) -> None:
    checker = LossChecker("1. no fault")
    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(counting_actor(checker, "counter"))
        publisher = Publisher(bus, [checker])
        await publisher.run(MESSAGES)
        assert await checker.wait_for(MESSAGES, timeout=30)
        await checker.wait_quiet(0.3)
    result = checker.result()
    record_row(
        "1. No fault",
        messages=MESSAGES,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=None,
        result=result,
    )
    assert publisher.errors == [], result.summary()
    assert (result.confirmed, result.lost, result.duplicated) == (MESSAGES, 0, 0), result.summary()
    assert result.unexpected == 0
