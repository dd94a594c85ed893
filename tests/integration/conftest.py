"""Fixtures of the RabbitMQ integration tests: buses on a test prefix, and their cleanup."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiormq
import pytest
from support.rabbit_cleanup import delete_names

from actorbus import AsyncMessageBus
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

BusFactory = Callable[..., AsyncMessageBus]


async def shutdown_and_clean(buses: list[AsyncMessageBus], url: str) -> None:
    """Shut buses down, then delete every queue and exchange they declared."""
    queues: set[str] = set()
    exchanges: set[str] = set()
    for bus in buses:
        broker = bus.broker
        if isinstance(broker, AsyncRabbitMQBroker):
            declared_queues, declared_exchanges = broker.declared_names()
            queues.update(declared_queues)
            exchanges.update(declared_exchanges)
        await bus.shutdown(timeout=1.0)
    if queues or exchanges:
        await delete_names(url, sorted(queues), sorted(exchanges))


@pytest.fixture(params=["coalesced", "plain"])
def publish_path(request: pytest.FixtureRequest) -> str:
    """The publish path under test: ``coalesced`` (the default, one socket write per
    event-loop turn through ``_aiormq``) or ``plain`` (aiormq's public ``basic_publish``)."""
    return str(request.param)


@pytest.fixture
async def rabbit_bus(
    rabbitmq_url: str, unique_prefix: str, publish_path: str
) -> AsyncIterator[BusFactory]:
    """Build RabbitMQ buses on this test's prefix, on each publish path in turn; all are
    shut down and cleaned up after."""
    buses: list[AsyncMessageBus] = []

    def factory(**options: Any) -> AsyncMessageBus:
        options.setdefault("url", rabbitmq_url)
        options.setdefault("prefix", unique_prefix)
        broker_options = options.setdefault("broker_options", {})
        broker_options.setdefault("coalesce_writes", publish_path == "coalesced")
        bus = AsyncMessageBus(mode="rabbitmq", fallback=False, **options)
        buses.append(bus)
        return bus

    yield factory
    await shutdown_and_clean(buses, rabbitmq_url)


@pytest.fixture
async def amqp(rabbitmq_url: str) -> AsyncIterator[aiormq.abc.AbstractConnection]:
    """A plain AMQP connection to the shared broker, as another client would have."""
    connection = await aiormq.connect(rabbitmq_url)
    yield connection
    await connection.close()


@pytest.fixture
def node_prefix() -> str:
    """A prefix for names on the private node."""
    return f"it-{uuid.uuid4().hex[:8]}"
