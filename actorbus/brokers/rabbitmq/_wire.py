"""The wire format: an envelope as one AMQP message, and back.

Body: the encoded ``data`` (msgpack or JSON, said by ``content_type``).
Properties: ``content_type``, ``message_id`` (envelope id), ``type`` (message
type), ``timestamp`` (whole seconds), ``correlation_id``, ``reply_to`` and
``delivery_mode=2`` (persistent). Headers: ``x-source``, ``x-attempt`` and
``x-timestamp`` (the exact timestamp: seconds since the epoch as a decimal
string, since the AMQP client would write a float as a 32-bit float and round it
by up to a minute; a number is read as well), plus the envelope's own string
headers under their own names.

Reading headers back (:func:`envelope_headers`, the one filter from AMQP headers to
envelope headers) keeps the scalar ones as text and leaves out those three and
the broker's own annotations (``x-death``, ``x-first-death-*``,
``x-last-death-*``, ``x-delivery-count``): they describe one trip through one
queue, and would travel on with the envelope (into a dead letter, a replay)
as if they were the sender's.

A message from a plain AMQP client needs none of the headers: its type is the
``type`` property or else the routing key, its id the ``message_id`` or a fresh
one, and its data is decoded (and validated) by its content type, or as JSON
then msgpack when it has none.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from ...codec import Codec
from ...errors import DecodeError
from ...messages import Envelope, new_message_id

__all__ = [
    "BROKER_HEADERS",
    "RESERVED_HEADERS",
    "decode_message",
    "encode_envelope",
    "envelope_headers",
    "raw_envelope",
]

SOURCE_HEADER = "x-source"
ATTEMPT_HEADER = "x-attempt"
TIMESTAMP_HEADER = "x-timestamp"
RESERVED_HEADERS = frozenset({SOURCE_HEADER, ATTEMPT_HEADER, TIMESTAMP_HEADER})
"""Headers that carry envelope fields rather than envelope headers."""
BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")
"""Prefixes of the headers RabbitMQ adds on its own (dead-lettering, delivery counts)."""

_PERSISTENT = 2


def encode_envelope(
    codec: Codec, envelope: Envelope, *, persistent: bool = True
) -> tuple[bytes, Basic.Properties]:
    """Return the body and properties of ``envelope`` on the wire."""
    body = codec.encode_data(envelope.data)
    headers: dict[str, Any] = {
        SOURCE_HEADER: envelope.source,
        ATTEMPT_HEADER: envelope.attempt,
        TIMESTAMP_HEADER: repr(envelope.timestamp),
    }
    if envelope.headers:
        headers.update(envelope.headers)
    properties = Basic.Properties(
        content_type=codec.content_type,
        delivery_mode=_PERSISTENT if persistent else 1,
        headers=headers,
        message_id=envelope.id,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        timestamp=datetime.fromtimestamp(envelope.timestamp, UTC),
        message_type=envelope.type,
    )
    return body, properties


def decode_message(
    codec: Codec, message: DeliveredMessage, *, schema_type: str | None = None
) -> Envelope:
    """Turn a delivered AMQP message into an envelope; raise ``DecodeError`` when it is bad.

    ``schema_type`` overrides the type whose schema validates the data (replies
    are validated against nothing: pass ``""``).
    """
    properties = message.header.properties
    message_type = properties.message_type or message.routing_key or ""
    if not message_type:
        raise DecodeError("message has neither a type property nor a routing key")
    raw_headers = properties.headers or {}
    data = codec.decode_data(
        message.body,
        properties.content_type,
        message_type if schema_type is None else schema_type,
    )
    return Envelope(
        id=properties.message_id or new_message_id(),
        type=message_type,
        data=data,
        timestamp=_timestamp_of(raw_headers.get(TIMESTAMP_HEADER), properties.timestamp),
        source=_as_text(raw_headers.get(SOURCE_HEADER) or properties.app_id or ""),
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        attempt=_attempt_of(raw_headers.get(ATTEMPT_HEADER)),
        headers=envelope_headers(raw_headers),
    )


def raw_envelope(message: DeliveredMessage) -> Envelope:
    """An envelope holding an undecodable message as it came (data = the raw body bytes)."""
    properties = message.header.properties
    raw_headers = properties.headers or {}
    return Envelope(
        id=properties.message_id or new_message_id(),
        type=properties.message_type or message.routing_key or "",
        data=message.body,
        timestamp=_timestamp_of(raw_headers.get(TIMESTAMP_HEADER), properties.timestamp),
        source=_as_text(raw_headers.get(SOURCE_HEADER) or properties.app_id or ""),
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        headers=envelope_headers(raw_headers),
    )


def envelope_headers(raw_headers: dict[str, Any]) -> dict[str, str]:
    """The envelope headers among a message's AMQP headers, as text (see above)."""
    if not raw_headers:
        return {}
    return {
        key: _as_text(value)
        for key, value in raw_headers.items()
        if key not in RESERVED_HEADERS
        and isinstance(value, str | bytes | int | float | bool)
        and not key.startswith(BROKER_HEADERS)
    }


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _timestamp_of(exact: Any, whole: datetime | None) -> float:
    if isinstance(exact, bytes | str):
        try:
            exact = float(exact)
        except ValueError:
            exact = None
    if isinstance(exact, int | float) and not isinstance(exact, bool) and math.isfinite(exact):
        return float(exact)
    if whole is not None:
        return whole.replace(tzinfo=UTC).timestamp() if whole.tzinfo is None else whole.timestamp()
    return time.time()


def _attempt_of(value: Any) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        return 1
