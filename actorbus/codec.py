"""Turning envelopes and payloads into bytes and back.

Two formats: msgpack (the default, compact and fast) and JSON (for interop with
clients in other languages). Decoding accepts either format whatever the codec's
own format is, chosen by content type; a body without a content type is read as
JSON when it parses as JSON, else as msgpack. Every failure to decode, whatever
its cause (bad bytes, wrong shape, schema mismatch, size), is one
:class:`~actorbus.errors.DecodeError` whose ``reason`` says why. No pickle.

Encoding refuses, with :class:`~actorbus.errors.InvalidMessage`, what cannot
travel as it is: objects the format has no encoding for, integers out of its
range, data nested deeper than the encoder goes (never a raw
``RecursionError``), and a ``set`` or ``frozenset`` inside a dict, list or tuple
payload (it would arrive as a list); a payload over ``max_size`` is
:class:`~actorbus.errors.MessageTooLarge`. Both brokers encode through
:meth:`Codec.encode_data` at publish, so both refuse the same data the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .errors import DecodeError, InvalidMessage, MessageTooLarge
from .messages import Envelope, schema_for

__all__ = ["CONTENT_TYPES", "Codec", "Format", "apply_schema"]

Format = Literal["msgpack", "json"]

CONTENT_TYPES: dict[Format, str] = {
    "msgpack": "application/msgpack",
    "json": "application/json",
}
_FORMAT_OF: dict[str, Format] = {
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/json": "json",
}

DEFAULT_MAX_SIZE = 4 * 1024 * 1024

_CONTAINERS = frozenset({dict, list, tuple})
_SETS = frozenset({set, frozenset})
_NESTED = _CONTAINERS | _SETS


def _holds_a_set(data: Any) -> bool:
    """Whether ``data`` is a set, or a set is anywhere inside its plain containers.

    Called on data that encoded, so no deeper than the encoder goes; each level is
    checked with one C-level pass over the types of its items.
    """
    kind = type(data)
    if kind is dict:
        if _NESTED.isdisjoint(map(type, data.values())):  # flat: the common case
            return False
    elif kind in _SETS:
        return True
    elif kind not in _CONTAINERS:
        return False
    pending = [data]
    while pending:
        value = pending.pop()
        items = value.values() if type(value) is dict else value
        if _NESTED.isdisjoint(map(type, items)):
            continue
        if not _SETS.isdisjoint(map(type, items)):
            return True
        pending.extend(item for item in items if type(item) in _CONTAINERS)
    return False


def apply_schema(envelope: Envelope) -> Envelope:
    """``envelope`` with its data as its type's schema; ``DecodeError`` when it does not fit.

    The one place decoded data meets its schema when it was decoded without one
    (a whole envelope, a batch, a stored dead letter). An envelope of a type
    without a schema, or whose data already is the schema's type, comes back as it is.
    """
    schema = schema_for(envelope.type)
    if schema is None or type(envelope.data) is schema:
        return envelope
    try:
        data = msgspec.convert(envelope.data, schema)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"{envelope.type}: payload does not match its schema: {exc}") from None
    return msgspec.structs.replace(envelope, data=data)


class Codec:
    """Encodes and decodes payloads and whole envelopes, within a size limit."""

    def __init__(self, format: Format = "msgpack", *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if format not in CONTENT_TYPES:
            raise ValueError(f"unknown codec format {format!r}: use 'msgpack' or 'json'")
        self.format: Format = format
        """The format this codec writes."""
        self.content_type = CONTENT_TYPES[format]
        """The MIME type of what this codec writes."""
        self.max_size = max_size
        """Largest encoded message, in bytes, accepted either way."""
        self._encoders: dict[Format, msgspec.msgpack.Encoder | msgspec.json.Encoder] = {
            "msgpack": msgspec.msgpack.Encoder(),
            "json": msgspec.json.Encoder(),
        }
        self._decoders: dict[tuple[Format, type[Any]], Any] = {}

    def encode_data(self, data: Any) -> bytes:
        """Encode a payload; raise ``InvalidMessage`` or ``MessageTooLarge`` (see above)."""
        return self._encode(data, self.format)

    def encode_copy(self, data: Any) -> bytes:
        """Encode a payload as msgpack, checked as :meth:`encode_data` checks it.

        The in-memory broker gives each receiver its own copy decoded from this
        (:meth:`decode_copy`), as each consumer over RabbitMQ decodes its own.
        """
        return self._encode(data, "msgpack")

    def copy_decoder(self, schema: type[Any] | None) -> msgspec.msgpack.Decoder[Any]:
        """The decoder of what :meth:`encode_copy` made: as ``schema``, or as plain data."""
        decoder: msgspec.msgpack.Decoder[Any] = self._decoder("msgpack", schema or Any)
        return decoder

    def _encode(self, data: Any, fmt: Format) -> bytes:
        try:
            body = self._encoders[fmt].encode(data)
        except RecursionError:
            raise InvalidMessage("data is nested too deeply to be encoded") from None
        except (TypeError, OverflowError, ValueError) as exc:
            raise InvalidMessage(f"data cannot be encoded as {fmt}: {exc}") from None
        self._check_size(len(body))
        if _holds_a_set(data):
            raise InvalidMessage(
                "data holds a set, which would arrive as a list: send a list or a tuple"
            )
        return body

    def decode_data(self, body: bytes, content_type: str | None, message_type: str) -> Any:
        """Decode a payload of ``message_type``, validating it against the type's schema."""
        self._check_incoming(len(body))
        schema: Any = schema_for(message_type) or Any
        for fmt in self._formats_for(body, content_type):
            try:
                return self._decoder(fmt, schema).decode(body)
            except msgspec.ValidationError as exc:
                raise DecodeError(
                    f"{message_type}: payload does not match its schema: {exc}"
                ) from None
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a str
                last = exc
        raise DecodeError(
            f"{message_type}: body is not valid {content_type or 'JSON or msgpack'}: {last}"
        )

    def encode_envelope(self, envelope: Envelope) -> bytes:
        """Encode a whole envelope (used where the wire has no room for properties)."""
        try:
            body = self._encoders[self.format].encode(envelope)
        except RecursionError:
            raise InvalidMessage("data is nested too deeply to be encoded") from None
        except (TypeError, OverflowError, ValueError) as exc:
            raise InvalidMessage(f"envelope cannot be encoded as {self.format}: {exc}") from None
        self._check_size(len(body))
        return body

    def decode_envelope(self, body: bytes, content_type: str | None = None) -> Envelope:
        """Decode a whole envelope; data of a typed message is validated too."""
        self._check_incoming(len(body))
        last: Exception | None = None
        for fmt in self._formats_for(body, content_type):
            try:
                envelope: Envelope = self._decoder(fmt, Envelope).decode(body)
                break
            except msgspec.ValidationError as exc:
                raise DecodeError(f"not an envelope: {exc}") from None
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 in a str
                last = exc
        else:
            raise DecodeError(f"body is not a valid envelope: {last}")
        return apply_schema(envelope)

    def _decoder(self, fmt: Format, target: type[Any]) -> Any:
        decoder = self._decoders.get((fmt, target))
        if decoder is None:
            module = msgspec.msgpack if fmt == "msgpack" else msgspec.json
            decoder = self._decoders[(fmt, target)] = module.Decoder(target)
        return decoder

    def _formats_for(self, body: bytes, content_type: str | None) -> tuple[Format, ...]:
        if content_type:
            fmt = _FORMAT_OF.get(content_type.split(";")[0].strip().lower())
            if fmt is None:
                raise DecodeError(f"unsupported content type {content_type!r}")
            return (fmt,)
        return ("json", "msgpack")

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise MessageTooLarge(
                f"encoded message is {size} bytes, over the {self.max_size} limit"
            )

    def _check_incoming(self, size: int) -> None:
        if size > self.max_size:
            raise DecodeError(f"message is {size} bytes, over the {self.max_size} limit")
