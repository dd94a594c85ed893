"""Each in-memory receiver gets its own copy of a message's data, as over RabbitMQ.

Over RabbitMQ every consumer decodes its own copy of the bytes, so nobody sees
what a publisher or another subscriber does to its objects afterwards. The
in-memory broker keeps that: :class:`Copier` encodes the data once (msgpack, with
every check :meth:`~actorbus.codec.Codec.encode_data` makes, so bad data is
refused at publish in both modes) and decodes one copy per receiving queue.
A copy is what RabbitMQ delivers with the default codec: a Struct of the type's
schema, or plain dicts and lists (a tuple arrives as a list, an unregistered
Struct as a dict).

A dict whose keys are all ``str`` and whose values are all scalars (``str``,
``int``, ``float``, ``bool``, ``None``, ``bytes``: the common market-data
payload) is still checked by encoding it once, but each receiver's copy is a
shallow ``dict(data)``: exactly what decoding would give, for a fraction of the
cost.

Data that nobody can change is shared instead: ``None``, ``bool``, ``int``,
``float``, ``str``, ``bytes``, and an instance of the type's own schema when
that schema is a frozen Struct whose fields are of such types (frozen Structs,
tuples and frozensets of them included). It is still checked (range, size).
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from ..codec import Codec
from ..messages import Envelope, _registered

__all__ = ["SHALLOW", "Copier", "CopyPlan"]

_SCALARS = (type(None), bool, float)
_FLAT_VALUES = frozenset({str, int, float, bool, type(None), bytes})
_STR = frozenset({str})


class _Shallow:
    """What :meth:`Copier.prepare` returns for a flat dict: copy it with ``dict(data)``."""

    __slots__ = ()


SHALLOW = _Shallow()
"""A receiver's copy of this data is ``dict(data)`` (a flat dict of scalars, str keys)."""

CopyPlan = bytes | _Shallow | None
"""How receivers get their copy: decoded from bytes, :data:`SHALLOW`, or shared (``None``)."""

_TEXT = (str, bytes)
_IMMUTABLE_INFO = (
    mi.NoneType,
    mi.BoolType,
    mi.IntType,
    mi.FloatType,
    mi.StrType,
    mi.BytesType,
    mi.DateTimeType,
    mi.DateType,
    mi.TimeType,
    mi.TimeDeltaType,
    mi.UUIDType,
    mi.DecimalType,
    mi.LiteralType,
    mi.EnumType,
)
_INT64_MIN, _UINT64_END = -(2**63), 2**64


class Copier:
    """Checks a message's data once and makes each receiver's copy of it."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        """The codec whose checks (size limit included) apply to every publish."""
        self._immutable: dict[type[Any], bool] = {}
        self._encode = msgspec.msgpack.Encoder().encode
        self._max_size = codec.max_size
        self._decoders: dict[str, tuple[type[Any] | None, msgspec.msgpack.Decoder[Any]]] = {}
        # str or bytes shorter than this cannot exceed the size limit once encoded.
        self._short = max(0, (codec.max_size - 16) // 4)

    def prepare(self, envelope: Envelope, schema_type: str | None = None) -> CopyPlan:
        """Check ``envelope.data``; return the bytes to copy from, or ``None`` to share it.

        :data:`SHALLOW` says a shallow copy of the dict is a full copy.

        ``schema_type`` overrides the type whose schema the data is read as (``""`` for
        none: a reply, whose data is not of its request's schema). Raises
        ``InvalidMessage`` or ``MessageTooLarge`` for data that cannot travel.
        """
        data = envelope.data
        kind = type(data)
        if kind is dict:  # the common payload, checked inline (the codec says why if bad)
            try:
                body = self._encode(data)
            except Exception:
                return self.codec.encode_copy(data)
            if len(body) > self._max_size:
                return self.codec.encode_copy(data)  # too large: the codec says so
            if _FLAT_VALUES.issuperset(map(type, data.values())) and _STR.issuperset(
                map(type, data)
            ):
                return SHALLOW
            return self.codec.encode_copy(data)  # nested: the full check
        if kind is list:
            return self.codec.encode_copy(data)
        if kind in _SCALARS:
            return None
        if kind is int:
            if _INT64_MIN <= data < _UINT64_END:
                return None
        elif kind in _TEXT:
            if len(data) < self._short:
                return None
        elif self._shareable(kind, envelope.type if schema_type is None else schema_type):
            self.codec.encode_copy(data)  # checked (size), then shared
            return None
        body = self.codec.encode_copy(data)
        return None if kind is int or kind in _TEXT else body

    def copy(self, envelope: Envelope, body: CopyPlan, schema_type: str | None = None) -> Envelope:
        """A receiver's own envelope: fresh data (unless shared) and fresh headers."""
        headers = envelope.headers
        if body is SHALLOW:
            return msgspec.structs.replace(
                envelope, data=dict(envelope.data), headers=dict(headers) if headers else {}
            )
        if body is None:
            if not headers:
                return envelope
            return msgspec.structs.replace(envelope, headers=dict(headers))
        assert isinstance(body, bytes)
        message_type = envelope.type if schema_type is None else schema_type
        schema = _registered.get(message_type)
        cached = self._decoders.get(message_type)
        if cached is None or cached[0] is not schema:  # first use, or a schema registered since
            cached = self._decoders[message_type] = (schema, self.codec.copy_decoder(schema))
        return msgspec.structs.replace(
            envelope, data=cached[1].decode(body), headers=dict(headers) if headers else {}
        )

    def _shareable(self, kind: type[Any], message_type: str) -> bool:
        if _registered.get(message_type) is not kind:
            return False  # not the type's schema: over RabbitMQ it arrives as plain data
        known = self._immutable.get(kind)
        if known is None:
            known = self._immutable[kind] = _immutable(mi.type_info(kind), set())
        return known


def _immutable(info: mi.Type, seen: set[type[Any]]) -> bool:
    """Whether values of a type described by ``info`` cannot be changed in place."""
    if isinstance(info, _IMMUTABLE_INFO):
        return True
    if isinstance(info, mi.StructType):
        if info.cls in seen:
            return True
        if not info.cls.__struct_config__.frozen:
            return False
        seen.add(info.cls)
        return all(_immutable(field.type, seen) for field in info.fields)
    if isinstance(info, mi.TupleType):
        return all(_immutable(item, seen) for item in info.item_types)
    if isinstance(info, (mi.VarTupleType, mi.FrozenSetType)):
        return _immutable(info.item_type, seen)
    if isinstance(info, mi.UnionType):
        return all(_immutable(member, seen) for member in info.types)
    return False
