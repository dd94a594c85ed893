"""Opt-in batching: many envelopes per AMQP message for chosen types, at-least-once kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from aiormq.abc import AbstractConnection
from pamqp.commands import Basic
from support.rabbit_cleanup import delete_names

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, RetryPolicy, handles
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

TICK = MessageTypes.MARKET_DATA_UPDATE


class Ticks(Actor):
    """Handles ticks; fails for good on the ones marked ``poison``."""

    retry = RetryPolicy(max_attempts=1)
    seen: ClassVar[list[int]] = []

    @handles(TICK)
    async def on_tick(self, envelope: Envelope) -> None:
        if envelope.data.get("poison"):
            raise ValueError("poison tick")
        self.seen.append(envelope.data["n"])


async def wait_for(count: int) -> None:
    for _ in range(2000):
        if len(Ticks.seen) >= count:
            return
        await asyncio.sleep(0.005)


@pytest.fixture
async def batching(
    rabbitmq_url: str, unique_prefix: str
) -> AsyncIterator[tuple[AsyncMessageBus, AsyncRabbitMQBroker]]:
    Ticks.seen = []
    broker = AsyncRabbitMQBroker(
        rabbitmq_url, prefix=unique_prefix, batch_types=[TICK], batch_size=50
    )
    bus = AsyncMessageBus(broker=broker, prefix=unique_prefix, fallback=False)
    await bus.spawn(Ticks)
    yield bus, broker
    queues, exchanges = broker.declared_names()
    await bus.shutdown(timeout=1.0)
    await delete_names(rabbitmq_url, queues, exchanges)


async def test_many_envelopes_per_message_in_order(
    batching: tuple[AsyncMessageBus, AsyncRabbitMQBroker],
) -> None:
    bus, broker = batching
    await asyncio.gather(*(bus.publish(TICK, {"n": n}) for n in range(1000)))
    await wait_for(1000)
    assert Ticks.seen == list(range(1000))
    assert broker._batcher.sent <= 40, "ticks travelled many to a message"
    await bus.publish(TICK, {"n": 1000})  # a lone one goes out after the linger
    await wait_for(1001)
    assert Ticks.seen[-1] == 1000


async def test_a_failing_envelope_is_dead_lettered_and_the_rest_handled(
    batching: tuple[AsyncMessageBus, AsyncRabbitMQBroker],
) -> None:
    bus, _ = batching
    data: list[dict[str, Any]] = [{"n": n} for n in range(20)]
    data[7] = {"n": 7, "poison": True}
    await asyncio.gather(*(bus.publish(TICK, item) for item in data))
    await wait_for(19)
    assert Ticks.seen == [n for n in range(20) if n != 7]
    entries: list[Any] = []
    for _ in range(200):
        entries = await bus.dead_letters(type=TICK)
        if entries:
            break
        await asyncio.sleep(0.02)
    [entry] = entries
    assert entry.envelope.data == {"n": 7, "poison": True}
    assert entry.reason == "poison tick"


async def test_single_message_of_a_batched_type_from_a_plain_client(
    batching: tuple[AsyncMessageBus, AsyncRabbitMQBroker],
    amqp: AbstractConnection,
    unique_prefix: str,
) -> None:
    channel = await amqp.channel()
    await channel.basic_publish(
        json.dumps({"n": 5}).encode(),
        exchange=f"{unique_prefix}.market_data",
        routing_key=TICK,
        properties=Basic.Properties(content_type="application/json"),
    )
    await wait_for(1)
    assert Ticks.seen == [5]
