"""A consumer recognises copies of what it already has: recent, in flight, or replayed apart.

Pure bookkeeping, no broker: each delivery's settle function records what the broker
would have been told.
"""

from __future__ import annotations

import time

from actorbus.brokers.base import REPLAYS_HEADER
from actorbus.brokers.rabbitmq._delivery import Dedup, RabbitDelivery
from actorbus.messages import Envelope


def envelope(message_id: str, replays: int | None = None) -> Envelope:
    headers = {} if replays is None else {REPLAYS_HEADER: str(replays)}
    return Envelope(
        id=message_id, type="test.dedup", data={}, timestamp=time.time(), headers=headers
    )


class Broker:
    """Records how each AMQP delivery (by name) was settled."""

    def __init__(self) -> None:
        self.settled: dict[str, bool] = {}

    def settle(self, name: str) -> object:
        def settle(ok: bool) -> None:
            assert name not in self.settled, f"{name} settled twice"
            self.settled[name] = ok

        return settle


def admit(dedup: Dedup, broker: Broker, name: str, message: Envelope) -> RabbitDelivery | None:
    return dedup.admit(message, broker.settle(name))  # type: ignore[arg-type]


def test_a_copy_of_a_message_handled_recently_is_acknowledged_and_not_handed_on() -> None:
    dedup, broker = Dedup(100), Broker()
    first = admit(dedup, broker, "first", envelope("m1"))
    assert first is not None
    first.ack()
    assert admit(dedup, broker, "copy", envelope("m1")) is None
    assert broker.settled == {"first": True, "copy": True}


def test_a_copy_of_a_message_in_flight_is_settled_with_it() -> None:
    dedup, broker = Dedup(100), Broker()
    first = admit(dedup, broker, "first", envelope("m1"))
    assert first is not None
    assert admit(dedup, broker, "copy", envelope("m1")) is None
    assert broker.settled == {}, "the copy waits for the original"
    first.ack()
    assert broker.settled == {"first": True, "copy": True}


def test_a_message_given_back_is_not_remembered_as_handled() -> None:
    dedup, broker = Dedup(100), Broker()
    first = admit(dedup, broker, "first", envelope("m1"))
    assert first is not None
    assert admit(dedup, broker, "copy", envelope("m1")) is None
    first.requeue()
    assert broker.settled == {"first": False, "copy": False}
    again = admit(dedup, broker, "again", envelope("m1"))
    assert again is not None, "requeued, so not handled: its next delivery is handed on"


def test_a_replay_is_not_a_copy_but_a_copy_of_the_replay_is() -> None:
    dedup, broker = Dedup(100), Broker()
    first = admit(dedup, broker, "first", envelope("m1"))
    assert first is not None
    first.ack()
    replay = admit(dedup, broker, "replay", envelope("m1", replays=1))
    assert replay is not None, "a replayed dead letter is handed on again"
    assert admit(dedup, broker, "replay copy", envelope("m1", replays=1)) is None
    second_replay = admit(dedup, broker, "second replay", envelope("m1", replays=2))
    assert second_replay is not None
    replay.ack()
    assert broker.settled == {"first": True, "replay": True, "replay copy": True}


def test_it_forgets_past_its_window() -> None:
    dedup, broker = Dedup(2), Broker()
    for name in ("m1", "m2", "m3"):
        delivery = admit(dedup, broker, name, envelope(name))
        assert delivery is not None
        delivery.ack()
    assert admit(dedup, broker, "m1 again", envelope("m1")) is not None, "m1 was forgotten"
    assert admit(dedup, broker, "m2 copy", envelope("m2")) is None
    assert admit(dedup, broker, "m3 copy", envelope("m3")) is None
    assert len(dedup.recent) == 2


def test_a_delivery_that_could_not_be_handed_on_is_forgotten() -> None:
    dedup, broker = Dedup(100), Broker()
    lost = admit(dedup, broker, "lost", envelope("m1"))
    assert lost is not None
    dedup.abandon(lost)
    assert admit(dedup, broker, "next", envelope("m1")) is not None


def test_settling_twice_settles_once() -> None:
    dedup, broker = Dedup(100), Broker()
    delivery = admit(dedup, broker, "first", envelope("m1"))
    assert delivery is not None
    delivery.ack()
    delivery.requeue()
    assert broker.settled == {"first": True}
