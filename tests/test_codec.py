"""The codec: msgpack and JSON, size limit, one DecodeError per failure, no pickle."""

from __future__ import annotations

import pathlib
import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import actorbus
from actorbus import Codec, DecodeError, Envelope, MessageTypes
from actorbus.errors import MessageTooLarge
from actorbus.messages import make_envelope, register_message_type


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    price: float


QUOTE = register_message_type("testcodec.quote", Quote)


@pytest.fixture(params=["msgpack", "json"])
def codec(request: pytest.FixtureRequest) -> Codec:
    return Codec(request.param)


def test_default_format_is_msgpack() -> None:
    codec = Codec()
    assert codec.format == "msgpack"
    assert codec.content_type == "application/msgpack"
    assert Codec("json").content_type == "application/json"


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="xml"):
        Codec("xml")  # type: ignore[arg-type]


def test_envelope_round_trip(codec: Codec) -> None:
    envelope = make_envelope(
        MessageTypes.STRATEGY_SIGNAL,
        {"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0},
        source="test",
        correlation_id="c",
        reply_to="r",
        headers={"h": "v"},
    )
    body = codec.encode_envelope(envelope)
    assert codec.decode_envelope(body, codec.content_type) == envelope
    # without a content type the body is sniffed
    assert codec.decode_envelope(body) == envelope


def test_json_is_readable_json() -> None:
    body = Codec("json").encode_envelope(make_envelope(MessageTypes.STRATEGY_SIGNAL, {"a": 1}))
    decoded = msgspec.json.decode(body)
    assert decoded["type"] == "strategy.signal"
    assert decoded["data"] == {"a": 1}


def test_either_format_is_read_whatever_the_codec_writes() -> None:
    envelope = make_envelope(MessageTypes.STRATEGY_SIGNAL, {"a": 1})
    as_json = Codec("json").encode_envelope(envelope)
    assert Codec("msgpack").decode_envelope(as_json, "application/json") == envelope
    as_msgpack = Codec("msgpack").encode_envelope(envelope)
    assert Codec("json").decode_envelope(as_msgpack, "application/msgpack") == envelope


def test_typed_payload_round_trip(codec: Codec) -> None:
    envelope = make_envelope(QUOTE, {"symbol": "BTC/USDT", "price": 1.5})
    decoded = codec.decode_envelope(codec.encode_envelope(envelope), codec.content_type)
    assert decoded.data == Quote(symbol="BTC/USDT", price=1.5)
    body = codec.encode_data(envelope.data)
    assert codec.decode_data(body, codec.content_type, QUOTE) == Quote(symbol="BTC/USDT", price=1.5)


def test_data_round_trip_untyped(codec: Codec) -> None:
    data = {"symbol": "BTC/USDT", "levels": [[1.0, 2.0]], "ok": True, "none": None}
    assert codec.decode_data(codec.encode_data(data), None, "strategy.signal") == data


def test_schema_checked_on_decode(codec: Codec) -> None:
    bad = Envelope(id="x", type=QUOTE, data={"symbol": "BTC/USDT"}, timestamp=1.0)
    body = codec.encode_envelope(bad)
    with pytest.raises(DecodeError, match="schema") as info:
        codec.decode_envelope(body, codec.content_type)
    assert "testcodec.quote" in info.value.reason
    with pytest.raises(DecodeError, match="schema"):
        codec.decode_data(codec.encode_data({"price": "high"}), codec.content_type, QUOTE)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"\xc1\xff\x00garbage", None, "not a valid envelope"),
        (b"\xc1", "application/msgpack", "not a valid envelope"),
        (b"{not json", "application/json", "not a valid envelope"),
        (b"", None, "not a valid envelope"),
        (b'{"id": "x"}', "application/json", "not an envelope"),
        (b'{"id": 1, "type": 2, "data": 3, "timestamp": "t"}', None, "not an envelope"),
        (b"[1, 2, 3]", None, "not an envelope"),
        (b"{}", "text/plain", "unsupported content type"),
    ],
)
def test_every_envelope_decode_failure_is_one_decode_error(
    body: bytes, content_type: str | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as info:
        Codec().decode_envelope(body, content_type)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xc1", "application/msgpack"),
        (b"{", "application/json"),
        (b"\xc1{", None),
        (b"x", "image/png"),
    ],
)
def test_every_data_decode_failure_is_one_decode_error(
    body: bytes, content_type: str | None
) -> None:
    with pytest.raises(DecodeError) as info:
        Codec().decode_data(body, content_type, "strategy.signal")
    assert info.value.reason


def test_content_type_parameters_are_ignored() -> None:
    envelope = make_envelope(MessageTypes.STRATEGY_SIGNAL, {"a": 1})
    body = Codec("json").encode_envelope(envelope)
    assert Codec().decode_envelope(body, "Application/JSON; charset=utf-8") == envelope


def test_size_limit_on_encode_and_decode() -> None:
    codec = Codec(max_size=64)
    with pytest.raises(MessageTooLarge):
        codec.encode_data({"blob": "x" * 100})
    with pytest.raises(MessageTooLarge):
        codec.encode_envelope(make_envelope(MessageTypes.STRATEGY_SIGNAL, {"blob": "x" * 100}))
    big = Codec().encode_envelope(make_envelope(MessageTypes.STRATEGY_SIGNAL, {"b": "x" * 100}))
    with pytest.raises(DecodeError, match="over the 64 limit"):
        codec.decode_envelope(big)
    with pytest.raises(DecodeError, match="over the 64 limit"):
        codec.decode_data(b"x" * 65, None, "strategy.signal")
    small = {"a": 1}
    assert codec.decode_data(codec.encode_data(small), None, "strategy.signal") == small


def test_unencodable_data_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot be encoded"):
        Codec().encode_data({"x": object()})


def test_pickle_bytes_are_refused() -> None:
    evil = pickle.dumps(make_envelope(MessageTypes.STRATEGY_SIGNAL, {"a": 1}))
    with pytest.raises(DecodeError):
        Codec().decode_envelope(evil)


def test_no_pickle_anywhere_in_the_package() -> None:
    root = pathlib.Path(actorbus.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path
        assert "from pickle" not in text, path


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from([None, "application/msgpack", "application/json"]),
)
def test_random_bytes_only_ever_raise_decode_error(body: bytes, content_type: str | None) -> None:
    codec = Codec()
    reasons: list[str] = []
    for decode in (
        lambda: codec.decode_envelope(body, content_type),
        lambda: codec.decode_data(body, content_type, QUOTE),
        lambda: codec.decode_data(body, content_type, "strategy.signal"),
    ):
        try:
            decode()
        except DecodeError as exc:  # anything else fails the test
            reasons.append(exc.reason)
    assert all(reasons)
