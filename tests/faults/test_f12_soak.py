"""Scenario 12: the soak. 10,000 messages (``--soak-messages``) under random faults.

Part of every full run at its CI size (about 75 s); a longer soak on demand:
``pytest tests/faults -m soak --soak-messages 50000`` (same pace, more messages).
While two actors (classic and quorum queue) consume, a seeded random schedule
cuts the link, closes the connection from the broker, restarts the app and kills
the broker. Pass: 0 lost, 0 duplicates seen by the actors, memory growth under
20 MB, no task left behind.
"""

from __future__ import annotations

import asyncio
import gc
import random

import psutil
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

pytestmark = [pytest.mark.faults, pytest.mark.soak, pytest.mark.anyio, pytest.mark.timeout(600)]

INTERVAL = 0.005
"""Seconds between two publishes: 10,000 messages take about 50 s plus the outages."""
MEMORY_GROWTH_LIMIT = 20 * 1024 * 1024
SCHEDULE = ["cut", "close_all", "cut", "app_restart", "cut", "kill", "cut", "close_all"]


async def inject(kind: str, node: RabbitNode, proxy: TcpProxy) -> None:
    if kind == "cut":
        proxy.cut()
    elif kind == "close_all":
        await node.aclose_all_connections("soak")
    elif kind == "app_restart":
        await node.astop_app()
        await node.astart_app()
    else:
        await node.akill()
        await node.astart()


async def test_soak(
    node: RabbitNode, proxy: TcpProxy, prefix: str, request: pytest.FixtureRequest
) -> None:
    messages: int = request.config.getoption("--soak-messages")
    rng = random.Random(12)
    classic = LossChecker("12. soak, classic")
    quorum = LossChecker("12. soak, quorum")
    process = psutil.Process()
    tasks_before = set(asyncio.all_tasks())
    faults: list[str] = []
    async with rabbit_bus(proxy.url(node.url), prefix) as bus:
        await bus.spawn(counting_actor(classic, "classic"))
        await bus.spawn(counting_actor(quorum, "quorum", quorum=True))
        await Publisher(bus, [classic, quorum]).run(200)  # warm up before measuring memory
        gc.collect()
        rss_before = process.memory_info().rss
        publisher = Publisher(bus, [classic, quorum], interval=INTERVAL)
        publishing = asyncio.create_task(publisher.run(messages, start=200))
        index = 0
        while not publishing.done():
            await asyncio.wait({publishing}, timeout=rng.uniform(3.0, 6.0))
            if publishing.done():
                break
            kind = SCHEDULE[index % len(SCHEDULE)]
            index += 1
            await inject(kind, node, proxy)
            faults.append(kind)
            for checker in (classic, quorum):
                checker.mark_recovery_point()
            await probe(bus, [classic, quorum])
        await publishing
        total = messages + 200 + len(faults)
        for checker in (classic, quorum):
            await checker.wait_for(total, timeout=60)
            await checker.wait_quiet(1.0)
        consumed = await queues_consumed(
            node, [f"{prefix}.actor.classic", f"{prefix}.actor.quorum"]
        )
        gc.collect()
        rss_after = process.memory_info().rss
    await asyncio.sleep(0.5)
    leaked = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    leaked = [t for t in leaked if t is not asyncio.current_task()]
    growth = rss_after - rss_before
    results = [classic.result(), quorum.result()]
    for label, result in zip(("classic", "quorum"), results, strict=True):
        record_row(
            f"12. Soak ({label} queue): random cuts, app restarts, kills",
            messages=total,
            lost=result.lost,
            duplicates=result.duplicated,
            recovery=result.max_recovery,
            note=f"{len(faults)} faults ({', '.join(sorted(set(faults)))}); "
            f"memory +{growth / 2**20:.1f} MB; leaked tasks {len(leaked)}",
            result=result,
        )
    for result in results:
        assert result.lost == 0, result.summary()
        assert result.failed_publishes == 0, result.summary()
    assert consumed, "a consumer did not come back after the last fault"
    assert publisher.stray_cancellations == 0
    assert growth < MEMORY_GROWTH_LIMIT, f"memory grew {growth / 2**20:.1f} MB"
    assert not leaked, leaked[:5]
    for result in results:
        expect_no_duplicates(result)
