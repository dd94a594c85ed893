"""The fault harness itself, checked with a plain AMQP client (no actorbus involved).

A fault test is only as good as its faults: these prove that the private node,
the proxy and the checker do what the scenarios rely on.
"""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from support.checker import LossChecker
from support.rabbit_node import RabbitNode, amqp_ready
from support.scenario import wait_until
from support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.faults, pytest.mark.anyio]


def test_checker_counts_loss_duplicates_and_gaps() -> None:
    checker = LossChecker("synthetic")
    for i in range(10):
        checker.sent(f"m{i}")
        if i != 9:
            checker.confirmed(f"m{i}")
    checker.failed("m9")
    mark = checker.mark_recovery_point()
    for i in range(7):
        checker.handled(f"m{i}")
    checker.handled("m3")
    checker.drained("m7")
    result = checker.result()
    assert (result.sent, result.confirmed, result.failed_publishes) == (10, 9, 1)
    assert (result.received, result.handled_calls, result.drained) == (7, 8, 1)
    assert result.lost == 1
    assert result.lost_ids == ["m8"]
    assert result.duplicated == 1
    assert result.unexpected == 0
    assert result.recoveries
    assert result.recoveries[0] >= 0
    assert checker.first_handled_after(mark) is not None
    assert "lost=1" in result.summary()


def test_private_node_is_not_the_shared_broker(node: RabbitNode) -> None:
    assert node.amqp_port != 5672
    assert node.is_running()
    assert node.is_ready()
    assert node.pid is not None
    # rabbitmqctl reaches this node, not the shared one.
    assert node.ctl("eval", "node().").strip().strip("'") == node.node_name


async def test_node_lists_queues_and_bindings(node: RabbitNode, prefix: str) -> None:
    connection = await aio_pika.connect(node.url, timeout=5)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"{prefix}.x", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queue = await channel.declare_queue(f"{prefix}.q", auto_delete=True)
        await queue.bind(exchange, "a.#")
        queues = {row["name"] for row in await node.alist_queues()}
        bindings = [
            (b["source_name"], b["destination_name"], b["routing_key"])
            for b in await node.alist_bindings()
        ]
        assert f"{prefix}.q" in queues
        assert (f"{prefix}.x", f"{prefix}.q", "a.#") in bindings


async def test_close_all_connections_drops_a_client(node: RabbitNode) -> None:
    connection = await aio_pika.connect(node.url, timeout=5)
    try:
        await node.aclose_all_connections("harness check")
        assert await wait_until(lambda: not connection.connected.is_set(), 5)
    finally:
        await connection.close()


async def test_proxy_forwards_and_cut_drops_the_link(node: RabbitNode, proxy: TcpProxy) -> None:
    connection = await aio_pika.connect(proxy.url(node.url), timeout=5)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
        assert proxy.active == 1
        assert proxy.cut() == 1
        assert await wait_until(lambda: not connection.connected.is_set(), 5)
    finally:
        await connection.close()
    # New connections go through again.
    again = await aio_pika.connect(proxy.url(node.url), timeout=5)
    await again.close()


async def test_proxy_blackhole_silences_the_link_until_healed(
    node: RabbitNode, proxy: TcpProxy
) -> None:
    connection = await aio_pika.connect(proxy.url(node.url), timeout=5)
    try:
        channel = await connection.channel()
        proxy.blackhole()
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.declare_queue(exclusive=True), 0.5)
        assert time.monotonic() - began < 2
        # A new connection during the blackhole is never answered.
        assert not await asyncio.to_thread(amqp_ready, "127.0.0.1", proxy.port, 0.5)
        proxy.heal()
        assert await asyncio.to_thread(amqp_ready, "127.0.0.1", proxy.port, 2.0)
    finally:
        proxy.heal()
        await connection.close()


def test_stop_app_start_app_round_trip(node: RabbitNode) -> None:
    node.stop_app()
    assert not node.is_ready()
    ready_after = node.start_app()
    assert node.is_ready()
    assert ready_after < 30
