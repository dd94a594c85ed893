"""The contract fixture: the same tests on the in-memory broker and on the real RabbitMQ.

RabbitMQ runs on both publish paths: ``rabbitmq`` (publishes coalesced into one socket
write per event-loop turn, through the aiormq internals in ``_aiormq``) and
``rabbitmq_plain`` (``coalesce_writes=False``: one aiormq ``basic_publish`` each, the
client's public API).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.rabbit_cleanup import delete_names

from actorbus import AsyncMessageBus
from actorbus.brokers.memory import InMemoryServer
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

BusFactory = Callable[..., AsyncMessageBus]


@pytest.fixture(
    params=[
        "in_memory",
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("rabbitmq_plain", marks=pytest.mark.rabbitmq),
    ],
)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Which broker the contract test runs on."""
    return str(request.param)


@pytest.fixture
async def make_bus(broker_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Build started-on-use buses that share one broker (a private server, or a test prefix)."""
    buses: list[AsyncMessageBus] = []
    server = InMemoryServer()
    remote = broker_kind.startswith("rabbitmq")
    url = request.getfixturevalue("rabbitmq_url") if remote else None
    plain: list[AsyncRabbitMQBroker] = []
    prefix = f"contract-{uuid.uuid4().hex[:10]}"

    def factory(**options: Any) -> AsyncMessageBus:
        if broker_kind == "rabbitmq_plain":
            broker = AsyncRabbitMQBroker(
                url,
                prefix=prefix,
                coalesce_writes=False,
                unroutable=options.get("unroutable", "drop"),
            )
            plain.append(broker)
            bus = AsyncMessageBus(broker=broker, prefix=prefix, fallback=False, **options)
        elif broker_kind == "rabbitmq":
            bus = AsyncMessageBus(
                mode="rabbitmq", url=url, prefix=prefix, fallback=False, **options
            )
        else:
            bus = AsyncMessageBus(mode="in_memory", server=server, prefix=prefix, **options)
        buses.append(bus)
        return bus

    yield factory
    queues: set[str] = set()
    exchanges: set[str] = set()
    for bus in buses:
        broker = bus.broker
        if isinstance(broker, AsyncRabbitMQBroker):
            declared_queues, declared_exchanges = broker.declared_names()
            queues.update(declared_queues)
            exchanges.update(declared_exchanges)
        await bus.shutdown(timeout=1.0)
    for broker in plain:
        assert broker._sender._pipeline is None, "the plain path never coalesced a write"
        await broker.close()
    if url is not None and (queues or exchanges):
        await delete_names(url, sorted(queues), sorted(exchanges))


@pytest.fixture
async def bus(make_bus: BusFactory) -> AsyncMessageBus:
    """One started bus on the broker under test."""
    started = make_bus()
    await started.start()
    return started
