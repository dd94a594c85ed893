"""The envelope's timestamp crosses RabbitMQ exactly (publish-to-handled latency needs it).

AMQP tables as the client encodes them hold a Python float as a 32-bit float,
which rounds today's epoch seconds by up to a minute; the wire must not lose it.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, MessageTypes, handles
from actorbus.messages import Envelope

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]


class Receiver(Actor):
    """Keeps what it receives."""

    received: ClassVar[list[Envelope]] = []

    @handles(MessageTypes.STRATEGY_SIGNAL)
    def on_signal(self, envelope: Envelope) -> None:
        Receiver.received.append(envelope)


async def test_the_timestamp_arrives_as_it_was_sent(rabbitmq_url: str, unique_prefix: str) -> None:
    Receiver.received = []
    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
    ) as bus:
        await bus.spawn(Receiver)
        sent = bus.envelope(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC"})
        await bus.publish_envelope(sent)
        await wait_until(lambda: len(Receiver.received) == 1)
    assert Receiver.received[0].id == sent.id
    assert Receiver.received[0].timestamp == sent.timestamp
