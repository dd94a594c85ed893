"""AMQP headers become envelope headers through one filter, on every path in.

The broker's own annotations (delivery counts, dead-lettering) describe one trip
through one queue: a consumer must not hand them to an actor as the sender's headers,
or they would travel on with the envelope (into a dead letter, and out again with a
replay). No broker: messages are built as the AMQP client hands them over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from actorbus.brokers.rabbitmq._wire import decode_message, envelope_headers, raw_envelope
from actorbus.codec import Codec

BROKER_ADDED = {
    "x-delivery-count": 2,
    "x-first-death-queue": "t.actor.a",
    "x-first-death-reason": "delivery_limit",
    "x-last-death-exchange": "",
    "x-death": [{"queue": "t.actor.a", "reason": "delivery_limit", "count": 1}],
}


def delivered(headers: dict[str, Any], body: bytes = b'{"n": 1}') -> DeliveredMessage:
    properties = Basic.Properties(
        content_type="application/json",
        message_id="m1",
        message_type="test.wire",
        timestamp=datetime.now(UTC),
        headers=headers,
    )
    return DeliveredMessage(
        delivery=Basic.Deliver(delivery_tag=1, routing_key="test.wire"),
        header=ContentHeader(properties=properties, body_size=len(body)),
        body=body,
        channel=None,  # type: ignore[arg-type]
    )


def test_a_consumed_message_keeps_the_senders_headers_only() -> None:
    headers = {**BROKER_ADDED, "traceparent": "00-abc-def-01", "x-source": "here", "region": b"eu"}
    envelope = decode_message(Codec(), delivered(headers))
    assert envelope.headers == {"traceparent": "00-abc-def-01", "region": "eu"}
    assert envelope.source == "here"


def test_an_undecodable_message_keeps_the_senders_headers_only() -> None:
    envelope = raw_envelope(delivered({**BROKER_ADDED, "region": "eu"}, body=b"\xff"))
    assert envelope.headers == {"region": "eu"}


def test_the_filter_keeps_scalars_as_text() -> None:
    assert envelope_headers({"n": 3, "ok": True, "f": 1.5, "nested": {"a": 1}}) == {
        "n": "3",
        "ok": "True",
        "f": "1.5",
    }
    assert envelope_headers({}) == {}
