"""The broker factory: one way to a broker, any RabbitMQ option passed through.

No broker needed: the brokers are made, not connected.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from actorbus import AsyncMessageBus
from actorbus.brokers.factory import BrokerFactory
from actorbus.brokers.memory import InMemoryBroker
from actorbus.errors import ConfigurationError


def test_rabbitmq_options_reach_the_broker() -> None:
    factory = BrokerFactory(
        prefix="t-factory",
        url="amqp://guest:guest@127.0.0.1:5672/",
        connect_timeout=1.5,
        declare="passive",
        rabbitmq_options={
            "batch_types": ["market_data.update"],
            "publish_timeout": 7.0,
            "subsystems": (),
            "coalesce_writes": False,
        },
    )
    broker = factory.rabbitmq()
    assert broker.prefix == "t-factory"
    assert broker.declare == "passive"
    assert broker.batch_types == frozenset({"market_data.update"})
    assert broker.publish_timeout == 7.0
    assert factory.make("rabbitmq").name == "rabbitmq"
    assert isinstance(factory.make("in_memory"), InMemoryBroker)


def test_the_bus_passes_its_broker_options_through() -> None:
    bus = AsyncMessageBus(
        mode="rabbitmq",
        prefix="t-factory",
        queue_type="quorum",
        broker_options={"delivery_limit": 4, "publish_timeout": 7.0, "batch_types": ["a.b"]},
    )
    broker = bus._brokers.rabbitmq()
    defaults = broker.queue_defaults
    assert (defaults.queue_type, defaults.delivery_limit) == ("quorum", 4)
    assert broker.publish_timeout == 7.0
    assert broker.batch_types == frozenset({"a.b"})


@pytest.mark.parametrize("own", ["prefix", "url", "codec", "declare", "unroutable"])
def test_the_factorys_own_fields_are_not_broker_options(own: str) -> None:
    with pytest.raises(ConfigurationError, match=own):
        BrokerFactory(prefix="t-factory", rabbitmq_options={own: None})


def test_an_unknown_option_is_named() -> None:
    factory = BrokerFactory(prefix="t-factory", rabbitmq_options={"coalesce": True})
    with pytest.raises(ConfigurationError, match="coalesce"):
        factory.rabbitmq()


def test_an_in_memory_broker_never_loads_the_rabbitmq_backend() -> None:
    code = (
        "import sys\n"
        "from actorbus.brokers.factory import BrokerFactory\n"
        "BrokerFactory(prefix='t', rabbitmq_options={'batch_size': 5}).make('in_memory')\n"
        "print('actorbus.brokers.rabbitmq' in sys.modules, 'aiormq' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
