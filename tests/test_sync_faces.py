"""The sync face: ``mandatory``, bad input and bad handlers, in memory and over RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actorbus import ActorbusError, MessageBus, register_message_type
from actorbus.brokers.memory import InMemoryServer
from actorbus.errors import Unroutable

NOBODY = register_message_type("sync_faces.nobody")


@pytest.fixture(params=["in_memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def sync_bus(request: pytest.FixtureRequest, unique_prefix: str) -> Iterator[MessageBus]:
    """A sync bus on the broker under test."""
    options: dict[str, Any] = {"prefix": unique_prefix}
    if request.param == "rabbitmq":
        options.update(url=request.getfixturevalue("rabbitmq_url"), fallback=False)
    else:
        options.update(server=InMemoryServer())
    bus = MessageBus(mode=request.param, **options)
    try:
        yield bus
    finally:
        bus.shutdown()


def test_publish_sync_mandatory_and_the_unroutable_count(sync_bus: MessageBus) -> None:
    with pytest.raises(Unroutable):
        sync_bus.publish_sync(NOBODY, {"n": 0}, mandatory=True)
    for n in range(5):
        sync_bus.publish_sync(NOBODY, {"n": n})
    assert sync_bus.stats().unroutable == 6


def test_bad_input_and_bad_handlers_are_refused_by_the_sync_face(sync_bus: MessageBus) -> None:
    with pytest.raises(ActorbusError):
        sync_bus.publish_sync(NOBODY, {"ids": {1, 2}})
    for handler in (42, None, lambda only_one: None):
        with pytest.raises(ActorbusError) as raised:
            sync_bus.subscribe(NOBODY, handler)
        assert isinstance(raised.value, TypeError)
