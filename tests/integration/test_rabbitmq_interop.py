"""Plain AMQP clients take part: foreign JSON in, actorbus messages out, bad input dead-lettered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from aiormq.abc import AbstractConnection, DeliveredMessage
from pamqp.commands import Basic
from support.waiting import wait_until

from actorbus import AsyncMessageBus, Codec, MessageTypes, register_message_type

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

BusFactory = Callable[..., AsyncMessageBus]


class Fill(msgspec.Struct, frozen=True):
    """A typed payload, to check schema validation of foreign input."""

    order_id: str
    quantity: int


FILL = register_message_type("execution.interop_fill", Fill)


async def test_foreign_json_reaches_subscribers(
    rabbit_bus: BusFactory, amqp: AbstractConnection, unique_prefix: str
) -> None:
    bus = rabbit_bus()
    received: list[tuple[str, Any]] = []

    async def on_signal(message_type: str, data: Any) -> None:
        received.append((message_type, data))

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, on_signal)
    channel = await amqp.channel()
    exchange = f"{unique_prefix}.strategy"
    # As pika would send it: JSON, a content type, nothing of ours.
    await channel.basic_publish(
        json.dumps({"symbol": "BTC", "side": "buy"}).encode(),
        exchange=exchange,
        routing_key="strategy.signal",
        properties=Basic.Properties(content_type="application/json", delivery_mode=2),
    )
    # No properties at all: JSON is recognised by its shape.
    await channel.basic_publish(
        b'{"symbol": "ETH"}', exchange=exchange, routing_key="strategy.signal"
    )
    await wait_until(lambda: len(received) == 2)
    assert received == [
        ("strategy.signal", {"symbol": "BTC", "side": "buy"}),
        ("strategy.signal", {"symbol": "ETH"}),
    ]


async def test_plain_consumer_reads_actorbus_messages(
    rabbit_bus: BusFactory, amqp: AbstractConnection, unique_prefix: str
) -> None:
    bus = rabbit_bus(codec=Codec("json"), source="interop-test")
    await bus.start()
    channel = await amqp.channel()
    declared = await channel.queue_declare("", exclusive=True)
    queue = declared.queue
    await channel.queue_bind(queue, f"{unique_prefix}.strategy", routing_key="strategy.#")
    got: list[DeliveredMessage] = []
    await channel.basic_consume(queue, got.append, no_ack=True)
    message_id = await bus.publish(
        MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC"}, headers={"desk": "eu"}
    )
    await wait_until(lambda: len(got) == 1)
    [message] = got
    properties = message.header.properties
    assert json.loads(message.body) == {"symbol": "BTC"}
    assert message.routing_key == "strategy.signal"
    assert message.exchange == f"{unique_prefix}.strategy"
    assert properties.content_type == "application/json"
    assert properties.message_id == message_id
    assert properties.message_type == "strategy.signal"
    assert properties.delivery_mode == 2
    assert properties.timestamp is not None
    assert properties.headers is not None
    assert properties.headers["x-source"] == "interop-test"
    assert properties.headers["x-attempt"] == 1
    assert properties.headers["desk"] == "eu"


async def test_msgpack_is_the_default_body(
    rabbit_bus: BusFactory, amqp: AbstractConnection, unique_prefix: str
) -> None:
    bus = rabbit_bus()
    await bus.start()
    channel = await amqp.channel()
    queue = (await channel.queue_declare("", exclusive=True)).queue
    await channel.queue_bind(queue, f"{unique_prefix}.risk", routing_key="#")
    got: list[DeliveredMessage] = []
    await channel.basic_consume(queue, got.append, no_ack=True)
    await bus.publish(MessageTypes.RISK_LIMIT_BREACH, {"limit": 5})
    await wait_until(lambda: len(got) == 1)
    assert got[0].header.properties.content_type == "application/msgpack"
    assert msgspec.msgpack.decode(got[0].body) == {"limit": 5}


async def test_bad_input_is_dead_lettered_and_consuming_goes_on(
    rabbit_bus: BusFactory, amqp: AbstractConnection, unique_prefix: str
) -> None:
    bus = rabbit_bus()
    received: list[Any] = []

    async def on_fill(message_type: str, data: Any) -> None:
        received.append(data)

    await bus.subscribe(FILL, on_fill)
    channel = await amqp.channel()
    exchange = f"{unique_prefix}.execution"
    send = channel.basic_publish
    json_props = Basic.Properties(content_type="application/json")
    await send(b"{not json", exchange=exchange, routing_key=FILL, properties=json_props)
    await send(
        b'{"order_id": "o-1", "quantity": "many"}',
        exchange=exchange,
        routing_key=FILL,
        properties=json_props,
    )
    await send(
        b"\x00\x01",
        exchange=exchange,
        routing_key=FILL,
        properties=Basic.Properties(content_type="text/csv"),
    )
    await send(
        b'{"order_id": "o-2", "quantity": 3}',
        exchange=exchange,
        routing_key=FILL,
        properties=json_props,
    )
    await wait_until(lambda: len(received) == 1)
    assert received == [Fill(order_id="o-2", quantity=3)]
    entries: list[Any] = []
    for _ in range(200):
        entries = await bus.dead_letters(type=FILL)
        if len(entries) == 3:
            break
        await asyncio.sleep(0.02)
    assert len(entries) == 3
    assert {entry.error_type for entry in entries} == {"DecodeError"}
    reasons = [entry.reason for entry in entries]
    assert "not valid application/json" in reasons[0]
    assert "does not match its schema" in reasons[1]
    assert "unsupported content type" in reasons[2]
    assert entries[0].envelope.data == b"{not json"
    assert all(entry.attempts == 0 for entry in entries)
    assert await bus.purge_dead_letters(type=FILL) == 3
