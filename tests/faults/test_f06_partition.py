"""Scenario 6: a silent partition of 12 s (the proxy holds every byte), then healed.

Pass: the dead link is noticed by heartbeats while it is silent; no publish
blocks past its timeout (those that time out raise ``PublishTimeout``, which the
publisher sees); no ``CancelledError`` escapes a publish or reaches an actor;
no confirmed message is lost; a message published after the link heals is
handled within 2 s.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import (
    CountingActor,
    Publisher,
    counting_actor,
    expect_no_duplicates,
    probe,
    queues_consumed,
    rabbit_bus,
    slack,
)
from support.tcp_proxy import TcpProxy

from actorbus import Envelope
from actorbus.errors import PublishTimeout

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
PARTITION = 12.0
PUBLISH_TIMEOUT = 4.0
HEARTBEAT = 2
RECOVERY_WITHIN = 2.0


async def test_silent_partition_is_detected_and_healed(
    node: RabbitNode, proxy: TcpProxy, prefix: str
) -> None:
    checker = LossChecker("6. silent partition 12 s")
    cancelled_in_actor = 0
    base = counting_actor(checker, "counter")

    class Guarded(base):  # type: ignore[valid-type, misc]
        async def on_tick(self, msg: Envelope) -> None:
            nonlocal cancelled_in_actor
            try:
                await CountingActor.on_tick(self, msg)
            except asyncio.CancelledError:
                cancelled_in_actor += 1
                raise

    bus = rabbit_bus(
        proxy.url(node.url), prefix, heartbeat=HEARTBEAT, publish_timeout=PUBLISH_TIMEOUT
    )
    async with bus:
        link = bus.broker.link  # type: ignore[union-attr]
        await bus.spawn(Guarded)
        publisher = Publisher(bus, [checker], interval=0.008)
        publishing = asyncio.create_task(publisher.run(MESSAGES))
        await asyncio.sleep(2.0)
        proxy.blackhole()
        silenced_at = time.monotonic()
        noticed_at: float | None = None
        while time.monotonic() - silenced_at < PARTITION:
            if noticed_at is None and not link.ready.is_set():
                noticed_at = time.monotonic()
            await asyncio.sleep(0.05)
        proxy.heal()
        checker.mark_recovery_point()
        await probe(bus, [checker])
        await asyncio.wait_for(publishing, 60)
        await checker.wait_for(checker.confirmed_count, timeout=30)
        await checker.wait_quiet(0.5)
        consumed = await queues_consumed(node, [f"{prefix}.actor.counter"])
        stats = bus.stats().actors["counter"]
    result = checker.result()
    detected = None if noticed_at is None else noticed_at - silenced_at
    record_row(
        "6. Silent partition 12 s (blackhole), then healed",
        messages=result.sent,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=result.max_recovery,
        note=(f"dead link noticed after {detected:.1f}s" if detected is not None else "not noticed")
        + f"; {result.failed_publishes} publishes raised PublishTimeout (seen by the publisher)",
        result=result,
    )
    assert detected is not None, "heartbeats did not notice the partition"
    assert detected < PARTITION, detected
    assert publisher.slowest <= PUBLISH_TIMEOUT + 1.0, publisher.slowest
    assert all(isinstance(e, PublishTimeout) for e in publisher.errors), publisher.errors[:3]
    assert consumed, "the consumer did not come back after the partition"
    assert publisher.stray_cancellations == 0
    assert cancelled_in_actor == 0
    assert (stats.restarts, stats.failed) == (0, 0), stats
    assert result.lost == 0, result.summary()
    assert result.confirmed + result.failed_publishes == result.sent, result.summary()
    assert result.recovered_within(slack(RECOVERY_WITHIN)), result.summary()
    expect_no_duplicates(result)
