"""The topic matcher agrees with the real broker; the exchange-per-subsystem split keeps it."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from aiormq.abc import AbstractConnection, DeliveredMessage

from actorbus.brokers.base import FunctionSink, QueueSpec
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker
from actorbus.messages import Envelope, new_message_id
from actorbus.topic import topic_matches

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

PATTERNS = [
    "a.b",
    "a.*",
    "*.b",
    "a.#",
    "#",
    "#.b",
    "a.#.c",
    "a.*.c",
    "*.*",
    "*",
    "a.b.#",
    "#.#",
    "*.#",
    "#.*",
    "a",
    "a.*.#",
]
KEYS = ["a", "a.b", "a.c", "b.b", "a.b.c", "a.x.y.c", "a.c.c", "x.y", "a.b.c.d", "b"]


async def routed_by_broker(
    connection: AbstractConnection, exchange: str, queues: dict[str, str]
) -> dict[str, set[str]]:
    """Publish every key once; return, per pattern, the keys its queue received."""
    channel = await connection.channel()
    for key in KEYS:
        await channel.basic_publish(key.encode(), exchange=exchange, routing_key=key)
    got: dict[str, set[str]] = {pattern: set() for pattern in queues}
    for pattern, queue in queues.items():
        while True:
            message: DeliveredMessage = await channel.basic_get(queue, no_ack=True)
            if message.body == b"" and message.routing_key is None:
                break
            got[pattern].add(message.body.decode())
    await channel.close()
    return got


async def test_matcher_agrees_with_rabbitmq(rabbitmq_url: str, unique_prefix: str) -> None:
    connection = await aiormq.connect(rabbitmq_url)
    channel = await connection.channel()
    exchange = f"{unique_prefix}.topics"
    await channel.exchange_declare(exchange, exchange_type="topic", auto_delete=False)
    queues = {}
    try:
        for index, pattern in enumerate(PATTERNS):
            queue = f"{unique_prefix}.q{index}"
            queues[pattern] = queue
            await channel.queue_declare(queue, exclusive=True)
            await channel.queue_bind(queue, exchange, routing_key=pattern)
        got = await routed_by_broker(connection, exchange, queues)
        for pattern in PATTERNS:
            expected = {key for key in KEYS if topic_matches(pattern, key)}
            assert got[pattern] == expected, pattern
    finally:
        await channel.exchange_delete(exchange)
        await connection.close()


async def test_subsystem_split_keeps_topic_semantics(rabbitmq_url: str, unique_prefix: str) -> None:
    """Through the broker: patterns bind per subsystem exchange, yet match like one exchange."""
    broker = AsyncRabbitMQBroker(rabbitmq_url, prefix=unique_prefix)
    await broker.connect()
    patterns = ["strategy.*", "#", "*.signal", "strategy.signal.#", "risk.#", "*.*.deep", "#.deep"]
    keys = ["strategy.signal", "strategy.signal.deep", "risk.limit_breach", "market_data.signal"]
    received: dict[str, list[str]] = {p: [] for p in patterns}
    try:
        for index, pattern in enumerate(patterns):
            await broker.declare_queue(
                QueueSpec(name=f"{unique_prefix}.split{index}", patterns=(pattern,))
            )

            async def sink(delivery, pattern: str = pattern) -> None:  # type: ignore[no-untyped-def]
                received[pattern].append(delivery.envelope.type)
                delivery.ack()

            await broker.consume(
                f"{unique_prefix}.split{index}", FunctionSink(sink), prefetch=10, owner="test"
            )
        for key in keys:
            await broker.publish(Envelope(id=new_message_id(), type=key, data={}, timestamp=0.0))
        expected = {p: sorted(k for k in keys if topic_matches(p, k)) for p in patterns}
        for _ in range(400):
            if {p: sorted(v) for p, v in received.items()} == expected:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert {p: sorted(v) for p, v in received.items()} == expected
    finally:
        queues, exchanges = broker.declared_names()
        connection = await aiormq.connect(rabbitmq_url)
        channel = await connection.channel()
        await broker.close()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
        await connection.close()
