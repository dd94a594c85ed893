"""The bus-wide queue type and delivery limit, and the arguments they give each queue.

RabbitMQ-only options (the in-memory broker has one kind of queue, living in
the consumer's process); what RabbitMQ makes of the arguments is checked in
``tests/integration/test_rabbitmq_nodes.py`` and ``tests/cluster``.
"""

from __future__ import annotations

import pytest

from actorbus.brokers.base import QueueSpec
from actorbus.brokers.rabbitmq._queue_defaults import DEFAULT_DELIVERY_LIMIT, QueueDefaults
from actorbus.errors import ConfigurationError

DLQ = "t.dead_letters"


def spec(name: str = "t.actor.a", **options: object) -> QueueSpec:
    return QueueSpec(name=name, patterns=("x.y",), **options)  # type: ignore[arg-type]


def test_argument_beats_environment_beats_classic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE", raising=False)
    assert QueueDefaults(dead_letter_queue=DLQ).queue_type == "classic"
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE", "quorum")
    assert QueueDefaults(dead_letter_queue=DLQ).queue_type == "quorum"
    assert QueueDefaults(dead_letter_queue=DLQ, queue_type="classic").queue_type == "classic"


def test_a_queues_own_declaration_wins() -> None:
    quorum_bus = QueueDefaults(dead_letter_queue=DLQ, queue_type="quorum")
    classic_bus = QueueDefaults(dead_letter_queue=DLQ, queue_type="classic")
    assert quorum_bus.type_of(spec()) == "quorum"
    assert quorum_bus.type_of(spec(queue_type="classic")) == "classic"
    assert classic_bus.type_of(spec(queue_type="quorum")) == "quorum"
    assert classic_bus.type_of(spec(queue_type="quorum")) == "quorum"
    assert quorum_bus.type_of(spec(durable=False)) == "classic"
    with pytest.raises(ConfigurationError, match="queue type"):
        quorum_bus.type_of(spec(queue_type="stream"))


def test_quorum_actor_queues_dead_letter_at_least_once_past_their_limit() -> None:
    options = QueueDefaults(dead_letter_queue=DLQ, queue_type="quorum")
    assert options.arguments(spec()) == {
        "x-queue-type": "quorum",
        "x-delivery-limit": DEFAULT_DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DLQ,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert options.arguments(spec(delivery_limit=4))["x-delivery-limit"] == 4
    assert options.bounded(spec())
    with pytest.raises(ConfigurationError, match="delivery_limit"):
        options.arguments(spec(delivery_limit=0))


def test_the_dead_letter_queue_and_classic_queues_are_not_bounded() -> None:
    options = QueueDefaults(dead_letter_queue=DLQ, queue_type="quorum", delivery_limit=3)
    assert options.arguments(spec(DLQ)) == {"x-queue-type": "quorum"}
    assert not options.bounded(spec(DLQ))
    assert options.arguments(spec(queue_type="classic")) == {}
    assert not options.bounded(spec(queue_type="classic"))


def test_stores_are_never_bounded() -> None:
    options = QueueDefaults(dead_letter_queue=DLQ, queue_type="quorum", stores=("t.unroutable",))
    assert options.arguments(spec("t.unroutable")) == {"x-queue-type": "quorum"}
    assert not options.bounded(spec("t.unroutable"))
