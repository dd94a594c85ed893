"""Reconnection, restarts and persistence, on a private RabbitMQ node broken on purpose.

Each scenario streams messages through an actor while the fault happens and
counts, per message id, what was sent, confirmed, handled (and how often):
nothing confirmed may be lost. The figures are printed (``-s``) and written
to the fault report directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from support.checker import CheckResult, LossChecker, record_row
from support.rabbit_cleanup import delete_names
from support.rabbit_node import RabbitNode
from support.tcp_proxy import TcpProxy

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, handles
from actorbus.brokers.base import FunctionSink, QueueSpec
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker
from actorbus.errors import QueueFull
from actorbus.messages import make_envelope

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq, pytest.mark.faults]

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST


class Counter(Actor):
    """Reports every message it handles to the scenario's checker."""

    name = "counter"
    checker: ClassVar[LossChecker]

    @handles(ORDER)
    async def on_order(self, envelope: Envelope) -> None:
        self.checker.handled(envelope.data["id"])


def make_broker(url: str, prefix: str, **options: Any) -> AsyncRabbitMQBroker:
    """A broker tuned for fault tests: short heartbeat, quick reconnects."""
    options.setdefault("heartbeat", 2)
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("publish_timeout", 60.0)
    return AsyncRabbitMQBroker(url, prefix=prefix, **options)


async def stream(
    bus: AsyncMessageBus,
    checker: LossChecker,
    fault: Callable[[], Awaitable[None]],
    *,
    total: int = 600,
    interval: float = 0.003,
) -> int:
    """Publish at a steady pace, running ``fault`` a third of the way in; return how many.

    Publishing goes on until the fault is over and ``total`` were sent, then 100
    more, so messages are published before, during and after the fault.
    """
    in_flight = asyncio.Semaphore(100)
    tasks: list[asyncio.Task[None]] = []
    fault_task: asyncio.Task[None] | None = None

    async def send(message_id: str) -> None:
        checker.sent(message_id)
        try:
            await bus.publish(ORDER, {"id": message_id})
        except Exception:
            checker.failed(message_id)
            raise
        else:
            checker.confirmed(message_id)
        finally:
            in_flight.release()

    n = 0
    after = 0
    while after < 100:
        if n == total // 3:
            fault_task = asyncio.create_task(fault())
        await in_flight.acquire()
        tasks.append(asyncio.create_task(send(f"m{n}")))
        n += 1
        if fault_task is not None and fault_task.done() and n >= total:
            after += 1
        await asyncio.sleep(interval)
    assert fault_task is not None
    await fault_task
    await asyncio.gather(*tasks)
    return n


async def consumers_of(node: RabbitNode, queue: str) -> list[dict[str, Any]]:
    """The broker's consumers of ``queue``, once the listing shows one (bounded wait)."""
    rows: list[dict[str, Any]] = []
    for _ in range(50):
        rows = [row for row in await node.alist_consumers() if row["queue_name"] == queue]
        if rows:
            break
        await asyncio.sleep(0.2)
    return rows


async def run_scenario(
    name: str,
    node: RabbitNode,
    prefix: str,
    fault: Callable[[LossChecker], Awaitable[None]],
    *,
    url: str | None = None,
    total: int = 600,
    coalesce_writes: bool = True,
) -> tuple[CheckResult, AsyncRabbitMQBroker]:
    """Stream through ``fault``; check nothing confirmed was lost; return the counts.

    ``coalesce_writes=False`` runs the scenario on the plain ``basic_publish`` path.
    """
    if not coalesce_writes:
        name += " (plain basic_publish)"
    checker = LossChecker(name)
    Counter.checker = checker
    broker = make_broker(url or node.url, prefix, coalesce_writes=coalesce_writes)
    bus = AsyncMessageBus(broker=broker, prefix=prefix, fallback=False)
    try:
        await bus.start()
        await bus.spawn(Counter)
        sent = await stream(bus, checker, lambda: fault(checker), total=total)
        assert await checker.wait_for(sent, timeout=60), checker.result().summary()
        await checker.wait_quiet(0.5)
        consumers = await consumers_of(node, f"{prefix}.actor.counter")
        assert len(consumers) == 1, f"one consumer after recovery, not {consumers}"
    finally:
        queues, exchanges = broker.declared_names()
        await bus.shutdown(timeout=2.0)
        with contextlib.suppress(Exception):
            await delete_names(node.url, queues, exchanges)
    result = checker.result()
    outages = ", ".join(f"{outage:.3f}s" for outage in broker.link.outages)
    print(f"\n{result.summary()} reconnects={broker.link.reconnects} outages=[{outages}]")
    record_row(
        name,
        messages=result.sent,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=result.max_recovery,
        note=f"reconnects={broker.link.reconnects} outages=[{outages}]",
        result=result,
    )
    assert result.lost == 0, result.summary()
    assert result.unexpected == 0
    assert result.failed_publishes == 0, "publishes wait for the connection instead of failing"
    assert result.confirmed == sent
    return result, broker


@pytest.mark.parametrize("coalesce_writes", [True, False], ids=["coalesced", "plain"])
async def test_close_all_connections(
    node: RabbitNode, node_prefix: str, coalesce_writes: bool
) -> None:
    async def fault(checker: LossChecker) -> None:
        await node.aclose_all_connections("test: drop every connection")
        checker.mark_recovery_point()

    _, broker = await run_scenario(
        "rabbitmq close_all_connections",
        node,
        node_prefix,
        fault,
        coalesce_writes=coalesce_writes,
    )
    assert broker.link.reconnects >= 1


async def test_app_restart(node: RabbitNode, node_prefix: str) -> None:
    async def fault(checker: LossChecker) -> None:
        await node.astop_app()
        await asyncio.sleep(0.5)
        await node.astart_app()
        checker.mark_recovery_point()

    _, broker = await run_scenario("rabbitmq stop_app/start_app", node, node_prefix, fault)
    assert broker.link.reconnects >= 1


async def test_full_broker_restart(node: RabbitNode, node_prefix: str) -> None:
    async def fault(checker: LossChecker) -> None:
        await node.arestart()
        checker.mark_recovery_point()

    _, broker = await run_scenario("rabbitmq full restart", node, node_prefix, fault, total=400)
    assert broker.link.reconnects >= 1


@pytest.mark.parametrize("coalesce_writes", [True, False], ids=["coalesced", "plain"])
async def test_link_cut_restores_consumers(
    node: RabbitNode, node_prefix: str, coalesce_writes: bool
) -> None:
    async with TcpProxy(node.host, node.amqp_port) as proxy:

        async def fault(checker: LossChecker) -> None:
            proxy.cut()
            checker.mark_recovery_point()
            await asyncio.sleep(0.3)
            proxy.cut()  # twice, right after the first recovery

        _, broker = await run_scenario(
            "proxy cut x2",
            node,
            node_prefix,
            fault,
            url=proxy.url(node.url),
            coalesce_writes=coalesce_writes,
        )
    assert broker.link.reconnects >= 2


async def test_silent_partition_is_noticed_in_seconds(node: RabbitNode, node_prefix: str) -> None:
    async with TcpProxy(node.host, node.amqp_port) as proxy:
        broker = make_broker(proxy.url(node.url), node_prefix, heartbeat=1, connect_timeout=1.0)
        await broker.connect()
        try:
            spec = QueueSpec(name=f"{node_prefix}.partition", patterns=(ORDER,))
            await broker.declare_queue(spec)
            proxy.blackhole()
            began = time.monotonic()
            publishing = asyncio.create_task(broker.publish(make_envelope(ORDER, {"n": 1})))
            for _ in range(400):  # heartbeat 1 s: three missed beats, then it is noticed
                if not broker.link.ready.is_set():
                    break
                await asyncio.sleep(0.05)
            noticed = time.monotonic() - began
            assert not broker.link.ready.is_set(), "the partition went unnoticed"
            assert not publishing.done()
            proxy.heal()
            await asyncio.wait_for(publishing, 30)
            print(f"\nsilent partition noticed after {noticed:.2f}s; outages {broker.link.outages}")
            record_row(
                "blackhole (heartbeat 1s)",
                messages=1,
                lost=0,
                duplicates=0,
                recovery=broker.link.outages[-1] if broker.link.outages else None,
                note=f"noticed after {noticed:.2f}s",
            )
        finally:
            queues, exchanges = broker.declared_names()
            await broker.close()
            await delete_names(node.url, queues, exchanges)


async def test_persistent_messages_survive_a_restart(node: RabbitNode, node_prefix: str) -> None:
    queue = f"{node_prefix}.persist"
    broker = make_broker(node.url, node_prefix)
    await broker.connect()
    sent = []
    try:
        await broker.declare_queue(QueueSpec(name=queue, patterns=(ORDER,)))
        for n in range(200):
            envelope = make_envelope(ORDER, {"n": n})
            sent.append(envelope.id)
        await asyncio.gather(*(broker.publish(make_envelope(ORDER, {"id": i})) for i in sent))
        await node.arestart()
        received: list[str] = []

        async def sink(delivery: Any) -> None:
            received.append(delivery.envelope.data["id"])
            delivery.ack()

        for _ in range(600):
            if broker.link.ready.is_set():
                break
            await asyncio.sleep(0.05)
        await broker.consume(queue, FunctionSink(sink), prefetch=50, owner="test")
        for _ in range(600):
            if len(set(received)) >= len(sent):
                break
            await asyncio.sleep(0.05)
        assert sorted(set(received)) == sorted(sent)
        print(f"\npersistence: sent={len(sent)} after restart received={len(received)}")
    finally:
        queues, exchanges = broker.declared_names()
        await broker.close()
        await delete_names(node.url, queues, exchanges)


async def test_outbox_is_bounded_while_disconnected(node: RabbitNode, node_prefix: str) -> None:
    broker = make_broker(node.url, node_prefix, outbox_limit=5)
    await broker.connect()
    try:
        await broker.declare_queue(QueueSpec(name=f"{node_prefix}.outbox", patterns=(ORDER,)))
        await node.astop_app()
        for _ in range(200):
            if not broker.link.ready.is_set():
                break
            await asyncio.sleep(0.02)
        waiting = [
            asyncio.create_task(broker.publish(make_envelope(ORDER, {"n": n}))) for n in range(5)
        ]
        await asyncio.sleep(0.1)
        with pytest.raises(QueueFull):
            await broker.publish(make_envelope(ORDER, {"n": 99}))
        assert not any(task.done() for task in waiting)
        await node.astart_app()
        await asyncio.wait_for(asyncio.gather(*waiting), 60)
        queue_rows = await node.alist_queues("name", "messages")
        [row] = [r for r in queue_rows if r["name"] == f"{node_prefix}.outbox"]
        assert int(row["messages"]) == 5
    finally:
        with contextlib.suppress(Exception):
            await node.astart_app()
        queues, exchanges = broker.declared_names()
        await broker.close()
        await delete_names(node.url, queues, exchanges)
