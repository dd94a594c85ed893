"""Scenario 2: three connection cuts while 2000 messages flow.

Two cuts abort the TCP link in a proxy; the third is the broker closing the
connection (``rabbitmqctl close_connection`` on each connection it lists).
Pass: 0 lost, 0 duplicates seen by the actor, and after each cut a message
published after it is handled within 1 s. Run twice: one AMQP message per
envelope, and with the broker's opt-in batching (a cut batch is sent again whole).

After a cut, an ``ask`` whose reply was lost with the connection times out (as
``AskTimeout``), and the next ``ask`` is answered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import (
    FAST_RECOVERY,
    TICK,
    Publisher,
    counting_actor,
    expect_no_duplicates,
    probe,
    queues_consumed,
    rabbit_bus,
    slack,
)
from support.tcp_proxy import TcpProxy

from actorbus import Actor, AskTimeout, Envelope, MessageBus, handles

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
RESUME_WITHIN = 1.0


@pytest.mark.parametrize("batched", [False, True], ids=["plain", "batched"])
async def test_three_cuts_lose_nothing(
    node: RabbitNode, proxy: TcpProxy, prefix: str, batched: bool
) -> None:
    checker = LossChecker(f"2. connection cuts{', batched publishes' if batched else ''}")
    options = {"batch_types": (TICK,)} if batched else {}
    async with rabbit_bus(proxy.url(node.url), prefix, **options) as bus:
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
        reconnects = bus.broker.link.reconnects  # type: ignore[union-attr]
    result = checker.result()
    record_row(
        "2. Three connection cuts (2 proxy, 1 close_connection)"
        + (", batched publishing" if batched else ""),
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
    assert result.recovered_within(slack(RESUME_WITHIN)), result.summary()
    expect_no_duplicates(result)


def close_each_connection(node: RabbitNode) -> int:
    """Close every client connection of the node one by one; return how many."""
    pids = node.connection_pids()
    for pid in pids:
        node.close_connection(pid, "scenario 2")
    return len(pids)


async def test_ask_is_answered_after_a_cut(node: RabbitNode, proxy: TcpProxy, prefix: str) -> None:
    class Echo(Actor):
        name = "echo"

        @handles(TICK)
        async def on_tick(self, msg: Envelope) -> Any:
            return msg.data["seq"]

    async with rabbit_bus(proxy.url(node.url), prefix) as bus:
        await bus.spawn(Echo)
        assert await bus.ask(TICK, {"seq": 1}, timeout=5) == 1
        for cut in range(3):
            proxy.cut()
            answer = None
            for attempt in range(20):  # bounded: a reply lost with the link is a timeout
                try:
                    answer = await bus.ask(TICK, {"seq": 10 * cut + attempt}, timeout=1)
                    break
                except AskTimeout:
                    continue
            assert answer is not None, f"no ask answered after cut {cut}"


async def test_sync_bus_rides_out_cuts(node: RabbitNode, proxy: TcpProxy, prefix: str) -> None:
    """The sync face (a blocking publisher thread) through the same three cuts."""
    checker = LossChecker("2. connection cuts, sync MessageBus")
    from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

    broker = AsyncRabbitMQBroker(proxy.url(node.url), prefix=prefix, **FAST_RECOVERY)
    bus = MessageBus(broker=broker, prefix=prefix, fallback=False)

    def on_tick(message_type: str, data: Any) -> None:
        checker.handled(f"seq-{data['seq']}")

    def publish_all() -> None:
        bus.subscribe(TICK, on_tick)
        for seq in range(MESSAGES):
            key = f"seq-{seq}"
            checker.sent(key)
            bus.publish_sync(TICK, {"seq": seq})
            checker.confirmed(key)
            time.sleep(0.001)

    try:
        publishing = asyncio.create_task(asyncio.to_thread(publish_all))
        for cut in range(3):
            await asyncio.sleep(0.8)
            checker.mark_recovery_point(fresh=True)
            if cut < 2:
                proxy.cut()
            else:
                await asyncio.to_thread(close_each_connection, node)
        await asyncio.wait_for(publishing, 60)
        await checker.wait_for(MESSAGES, timeout=30)
        await checker.wait_quiet(0.5)
    finally:
        await asyncio.to_thread(bus.shutdown)
    result = checker.result()
    record_row(
        "2. Three connection cuts, sync MessageBus publishing from a thread",
        messages=MESSAGES,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=result.max_recovery,
        result=result,
    )
    assert result.lost == 0, result.summary()
    assert result.recovered_within(slack(RESUME_WITHIN)), result.summary()
    expect_no_duplicates(result)
