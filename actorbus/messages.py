"""Message types, the envelope every message travels in, and payload schemas.

A message type is a routing key of two or more dot-separated words, the first of
which names the subsystem that owns it: ``"strategy.signal"``. The built-in ones
are the members of :class:`MessageTypes`; applications add their own with
:func:`register_message_type`. Publishing a type that is neither is an error,
because a mistyped type is otherwise a message that silently reaches nobody.

A type may carry a schema (a ``msgspec.Struct``): data published with that type
is validated, and converted, on publish and again on receipt from the wire.
Types without a schema take any msgspec-encodable data (usually a dict).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import msgspec

from .errors import SchemaError, UnknownMessageType

__all__ = [
    "REPLAYS_HEADER",
    "Delivery",
    "Envelope",
    "MessageTypes",
    "is_known_type",
    "known_types",
    "log_fields",
    "make_envelope",
    "register_message_type",
    "schema_for",
    "subsystem_of",
    "validate_data",
    "validate_type",
]


REPLAYS_HEADER = "x-actorbus-replays"
"""Envelope header counting how many more tries a message got after it crashed its actor
or was replayed from the dead letters (both count against a supervisor's ``max_replays``)."""


class MessageTypes(StrEnum):
    """The message types of the trading system; each value is its routing key."""

    SYSTEM_STARTUP = "system.startup"
    SYSTEM_SHUTDOWN = "system.shutdown"
    SYSTEM_ERROR = "system.error"

    COMPONENT_STATUS = "component.status"
    COMPONENT_ERROR = "component.error"

    MARKET_DATA_UPDATE = "market_data.update"
    MARKET_DATA_REQUEST = "market_data.request"
    MARKET_DATA_ERROR = "market_data.error"

    STRATEGY_SIGNAL = "strategy.signal"
    STRATEGY_STATUS = "strategy.status"
    STRATEGY_ERROR = "strategy.error"

    EXECUTION_ORDER_REQUEST = "execution.order_request"
    EXECUTION_ORDER_STATUS = "execution.order_status"
    EXECUTION_ERROR = "execution.error"

    EXCHANGE_ORDER_SUBMIT = "exchange.order_submit"
    EXCHANGE_ORDER_CANCEL = "exchange.order_cancel"
    EXCHANGE_ORDER_STATUS = "exchange.order_status"
    EXCHANGE_ERROR = "exchange.error"

    POSITION_UPDATE = "position.update"
    POSITION_CLOSE = "position.close"
    POSITION_ERROR = "position.error"

    RISK_LIMIT_BREACH = "risk.limit_breach"
    RISK_EXPOSURE_UPDATE = "risk.exposure_update"
    RISK_ERROR = "risk.error"

    @property
    def subsystem(self) -> str:
        """The subsystem owning this type: the first word of its routing key."""
        return subsystem_of(self.value)


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """One message: its data and everything needed to route, trace and retry it.

    Built once per publish, on the hot path, so it is as cheap as msgspec makes
    a struct: fields in this order may be given positionally, and envelopes are
    not tracked by the garbage collector (``gc=False``): the runtime never puts
    an envelope in a reference cycle, and neither should a handler (an envelope
    stored inside its own ``data`` would never be freed).
    """

    id: str
    """Unique per message (process prefix + counter); duplicates are detected by it."""
    type: str
    """The message type, i.e. the routing key (``"strategy.signal"``)."""
    data: Any
    """The payload: a Struct of the type's schema, or any encodable value."""
    timestamp: float
    """Seconds since the epoch when the message was created."""
    source: str = ""
    """Who published it: an actor name, or the bus's own name."""
    correlation_id: str | None = None
    """Ties a reply to its request (the request's id)."""
    reply_to: str | None = None
    """Address a reply should go to; set by ``ask``."""
    attempt: int = 1
    """Delivery attempt, counted by the retry loop (1 on first delivery)."""
    headers: dict[str, str] = {}
    """Free-form string headers carried end to end."""


class Delivery:
    """An envelope handed to a consumer, with the means to settle it.

    The consumer calls :meth:`ack` once the message is handled (or safely
    dead-lettered), and :meth:`requeue` to give it back unhandled; until then it
    counts against the consumer's prefetch (see ``brokers.base``). Each broker
    provides a subclass; this base settles nothing (a message made by hand).
    """

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope
        """The message."""

    def ack(self) -> None:
        """Mark the message handled: the broker may forget it."""

    def requeue(self) -> None:
        """Give the message back to its queue unhandled, for another delivery."""


def subsystem_of(message_type: str) -> str:
    """Return the subsystem word of a message type or pattern (``"strategy"``)."""
    return message_type.partition(".")[0]


_registered: dict[str, type[msgspec.Struct] | None] = {t.value: None for t in MessageTypes}


def register_message_type(name: str, schema: type[msgspec.Struct] | None = None) -> str:
    """Declare a message type (and optionally its payload schema); return its name.

    Re-registering a built-in type attaches a schema to it. ``name`` must be two
    or more non-empty words separated by dots, without wildcards.
    """
    words = name.split(".")
    if len(words) < 2 or not all(words) or "*" in words or "#" in words:
        raise UnknownMessageType(
            f"message type {name!r} must be '<subsystem>.<event>': dot-separated words, "
            "no wildcards"
        )
    _registered[name] = schema
    return name


def is_known_type(name: str) -> bool:
    """Tell whether ``name`` is a built-in or registered message type."""
    return name in _registered


def known_types() -> tuple[str, ...]:
    """Return every built-in and registered message type, in registration order."""
    return tuple(_registered)


def validate_type(name: str) -> str:
    """Return a known type ``name`` as a plain string; raise ``UnknownMessageType`` otherwise."""
    if name in _registered:
        return str(name)
    raise UnknownMessageType(
        f"unknown message type {name!r}: use a MessageTypes member or register_message_type()"
    )


def schema_for(name: str) -> type[msgspec.Struct] | None:
    """Return the schema registered for a type, or ``None``."""
    return _registered.get(name)


def validate_data(message_type: str, data: Any) -> Any:
    """Check ``data`` against the type's schema; return it converted to the schema's Struct.

    Data of a type without a schema is returned unchanged. A mismatch raises
    ``SchemaError`` naming the type and the offending field.
    """
    schema = _registered.get(message_type)
    if schema is None or type(data) is schema:
        return data
    try:
        return msgspec.convert(data, schema, from_attributes=not isinstance(data, dict))
    except msgspec.ValidationError as exc:
        raise SchemaError(f"{message_type}: {exc}") from None


def _new_process_prefix() -> str:
    return uuid.uuid4().hex[:16]


def _id_stream(prefix: str) -> Iterator[str]:
    # "<prefix>-<counter in hex>", formatted in C: next() on it runs no Python code.
    return map(f"{prefix}-%x".__mod__, itertools.count(1))


_prefix = _new_process_prefix()
_ids = _id_stream(_prefix)


def _reset_ids_after_fork() -> None:
    global _prefix, _ids
    _prefix = _new_process_prefix()
    _ids = _id_stream(_prefix)


os.register_at_fork(after_in_child=_reset_ids_after_fork)


_UNKNOWN: Any = object()
_now = time.time


def log_fields(envelope: Envelope, actor: str | None = None) -> dict[str, Any]:
    """The ``extra=`` of a log line about ``envelope``: its id and type, and the actor.

    Never the data: payloads stay out of logs.
    """
    fields: dict[str, Any] = {"message_id": envelope.id, "message_type": envelope.type}
    if actor is not None:
        fields["actor"] = actor
    return fields


def new_message_id() -> str:
    """Return an id unique across processes: a random process prefix and a counter."""
    return next(_ids)


def make_envelope(
    message_type: str,
    data: Any,
    *,
    source: str = "",
    correlation_id: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> Envelope:
    """Build a validated envelope for a known type; the one way publishers create messages."""
    # The hot path of every publish: validate_type, validate_data and new_message_id
    # inlined (one registry lookup gives both the check and the schema).
    schema = _registered.get(message_type, _UNKNOWN)
    if schema is _UNKNOWN:
        validate_type(message_type)  # raises UnknownMessageType
    if type(message_type) is not str:
        message_type = str(message_type)  # a StrEnum member travels as its plain value
    if schema is not None and type(data) is not schema:
        data = validate_data(message_type, data)
    if correlation_id is None and reply_to is None and not headers:  # (positional: cheaper)
        return Envelope(next(_ids), message_type, data, _now(), source)
    return Envelope(
        next(_ids),
        message_type,
        data,
        _now(),
        source,
        correlation_id,
        reply_to,
        1,
        dict(headers) if headers else {},  # the publisher's dict stays its own
    )
