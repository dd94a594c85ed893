"""The sync face: many threads publishing at once through one RabbitMQBroker, and MessageBus."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from support.rabbit_cleanup import delete_names

from actorbus import MessageBus, MessageTypes
from actorbus.brokers.base import DeadLetterFilter, QueueSpec
from actorbus.brokers.rabbitmq_sync import RabbitMQBroker
from actorbus.messages import Delivery, make_envelope

pytestmark = pytest.mark.rabbitmq

THREADS = 8
PER_THREAD = 150


def test_sync_broker_many_threads(rabbitmq_url: str, unique_prefix: str) -> None:
    queue = f"{unique_prefix}.sync"
    received: list[str] = []
    lock = threading.Lock()

    def on_message(delivery: Delivery) -> None:
        with lock:
            received.append(delivery.envelope.id)

    with RabbitMQBroker(rabbitmq_url, prefix=unique_prefix) as broker:
        try:
            broker.declare_queue(QueueSpec(name=queue, patterns=("strategy.signal",)))
            consumer = broker.consume(queue, on_message, prefetch=50)
            sent: list[str] = []
            errors: list[BaseException] = []

            def publisher(index: int) -> None:
                try:
                    for i in range(PER_THREAD):
                        envelope = make_envelope(
                            MessageTypes.STRATEGY_SIGNAL, {"thread": index, "i": i}
                        )
                        broker.publish(envelope)
                        with lock:
                            sent.append(envelope.id)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=publisher, args=(n,)) for n in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == []
            assert len(sent) == THREADS * PER_THREAD
            deadline = time.monotonic() + 30
            while len(received) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sorted(received) == sorted(sent), "each message once"
            assert broker.dead_letters(DeadLetterFilter()) == []
            consumer.cancel()
        finally:
            queues, exchanges = broker.async_broker.declared_names()
            for name in queues:
                broker.delete_queue(name)
            assert broker.async_broker._link.channel is not None
            for name in exchanges:
                broker._call(_delete_exchange, broker, name)


async def _delete_exchange(broker: RabbitMQBroker, name: str) -> None:
    channel = broker.async_broker._link.channel
    assert channel is not None
    await channel.exchange_delete(name)


def test_message_bus_publish_sync_from_threads(rabbitmq_url: str, unique_prefix: str) -> None:
    got: list[Any] = []
    lock = threading.Lock()

    def on_update(message_type: str, data: Any) -> None:
        with lock:
            got.append((data["thread"], data["i"]))

    bus = MessageBus(mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False)
    try:
        assert bus.mode == "rabbitmq"
        bus.subscribe(MessageTypes.POSITION_UPDATE, on_update)

        def publisher(index: int) -> None:
            for i in range(100):
                bus.publish_sync(MessageTypes.POSITION_UPDATE, {"thread": index, "i": i})

        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        deadline = time.monotonic() + 30
        while len(got) < THREADS * 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(got) == sorted((t, i) for t in range(THREADS) for i in range(100))
        for index in range(THREADS):
            assert [i for t, i in got if t == index] == list(range(100)), "per-thread order kept"
        queues, exchanges = bus._call(_declared, bus)
    finally:
        bus.shutdown()
    asyncio.run(delete_names(rabbitmq_url, queues, exchanges))


async def _declared(bus: MessageBus) -> tuple[list[str], list[str]]:
    assert bus._bus is not None
    names: tuple[list[str], list[str]] = bus._bus.broker.declared_names()  # type: ignore[union-attr]
    return names
