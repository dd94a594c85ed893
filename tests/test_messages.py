"""Message types, the envelope and payload schemas."""

from __future__ import annotations

import msgspec
import pytest

from actorbus import AsyncMessageBus, Envelope, MessageTypes, SchemaError, UnknownMessageType
from actorbus.messages import (
    is_known_type,
    make_envelope,
    new_message_id,
    register_message_type,
    schema_for,
    subsystem_of,
    validate_data,
    validate_type,
)


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    quantity: float
    price: float


FILL = register_message_type("testmessages.fill", Fill)
NOTE = register_message_type("testmessages.note")

EXPECTED = {
    "SYSTEM_STARTUP": "system.startup",
    "SYSTEM_SHUTDOWN": "system.shutdown",
    "SYSTEM_ERROR": "system.error",
    "COMPONENT_STATUS": "component.status",
    "COMPONENT_ERROR": "component.error",
    "MARKET_DATA_UPDATE": "market_data.update",
    "MARKET_DATA_REQUEST": "market_data.request",
    "MARKET_DATA_ERROR": "market_data.error",
    "STRATEGY_SIGNAL": "strategy.signal",
    "STRATEGY_STATUS": "strategy.status",
    "STRATEGY_ERROR": "strategy.error",
    "EXECUTION_ORDER_REQUEST": "execution.order_request",
    "EXECUTION_ORDER_STATUS": "execution.order_status",
    "EXECUTION_ERROR": "execution.error",
    "EXCHANGE_ORDER_SUBMIT": "exchange.order_submit",
    "EXCHANGE_ORDER_CANCEL": "exchange.order_cancel",
    "EXCHANGE_ORDER_STATUS": "exchange.order_status",
    "EXCHANGE_ERROR": "exchange.error",
    "POSITION_UPDATE": "position.update",
    "POSITION_CLOSE": "position.close",
    "POSITION_ERROR": "position.error",
    "RISK_LIMIT_BREACH": "risk.limit_breach",
    "RISK_EXPOSURE_UPDATE": "risk.exposure_update",
    "RISK_ERROR": "risk.error",
}


def test_strategy_signal_value() -> None:
    assert MessageTypes.STRATEGY_SIGNAL == "strategy.signal"
    assert str(MessageTypes.STRATEGY_SIGNAL) == "strategy.signal"
    assert f"{MessageTypes.STRATEGY_SIGNAL}" == "strategy.signal"


@pytest.mark.parametrize(("member", "value"), sorted(EXPECTED.items()))
def test_every_listed_member_has_its_routing_key(member: str, value: str) -> None:
    assert MessageTypes[member] == value
    assert MessageTypes(value) is MessageTypes[member]
    assert MessageTypes[member].subsystem == value.partition(".")[0]


def test_every_member_is_a_two_word_routing_key() -> None:
    for member in MessageTypes:
        subsystem, _, event = member.value.partition(".")
        assert subsystem
        assert event
        assert member.name.lower().startswith(subsystem)
        assert is_known_type(member.value)


def test_subsystem_of() -> None:
    assert subsystem_of("market_data.update") == "market_data"
    assert subsystem_of("market_data.#") == "market_data"


def test_envelope_is_frozen() -> None:
    envelope = make_envelope(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC/USDT"})
    with pytest.raises(AttributeError):
        envelope.type = "strategy.status"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        envelope.data = {}  # type: ignore[misc]


def test_envelope_fields() -> None:
    envelope = make_envelope(
        MessageTypes.STRATEGY_SIGNAL,
        {"symbol": "BTC/USDT"},
        source="tester",
        correlation_id="c1",
        reply_to="r1",
        headers={"k": "v"},
    )
    assert type(envelope.type) is str
    assert envelope.type == "strategy.signal"
    assert envelope.data == {"symbol": "BTC/USDT"}
    assert envelope.source == "tester"
    assert envelope.correlation_id == "c1"
    assert envelope.reply_to == "r1"
    assert envelope.attempt == 1
    assert envelope.headers == {"k": "v"}
    assert envelope.timestamp > 0
    assert {field.name for field in msgspec.structs.fields(Envelope)} == {
        "id",
        "type",
        "data",
        "timestamp",
        "source",
        "correlation_id",
        "reply_to",
        "attempt",
        "headers",
    }


def test_headers_default_is_not_shared() -> None:
    first = Envelope(id="1", type="strategy.signal", data=None, timestamp=0.0)
    second = Envelope(id="2", type="strategy.signal", data=None, timestamp=0.0)
    first.headers["x"] = "y"
    assert second.headers == {}


def test_ids_are_unique() -> None:
    ids = {new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    first = make_envelope(MessageTypes.STRATEGY_SIGNAL, {})
    second = make_envelope(MessageTypes.STRATEGY_SIGNAL, {})
    assert first.id != second.id


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownMessageType, match=r"strategy\.signals"):
        make_envelope("strategy.signals", {})
    with pytest.raises(UnknownMessageType):
        validate_type("nonsense")


@pytest.mark.parametrize("name", ["single", "a..b", ".a", "a.*", "a.#", ""])
def test_register_rejects_malformed_names(name: str) -> None:
    with pytest.raises(UnknownMessageType):
        register_message_type(name)


def test_registered_type_without_schema_takes_plain_dicts() -> None:
    assert is_known_type(NOTE)
    assert schema_for(NOTE) is None
    envelope = make_envelope(NOTE, {"anything": [1, 2, 3]})
    assert envelope.data == {"anything": [1, 2, 3]}
    assert make_envelope(MessageTypes.STRATEGY_SIGNAL, {"x": 1}).data == {"x": 1}


def test_schema_validates_and_converts_on_publish() -> None:
    envelope = make_envelope(FILL, {"symbol": "ETH/USDT", "quantity": 2, "price": 3000.5})
    assert envelope.data == Fill(symbol="ETH/USDT", quantity=2.0, price=3000.5)
    same = Fill(symbol="ETH/USDT", quantity=1.0, price=1.0)
    assert make_envelope(FILL, same).data is same


@pytest.mark.parametrize(
    "data",
    [
        {"symbol": "ETH/USDT", "quantity": "two", "price": 1.0},
        {"symbol": "ETH/USDT", "price": 1.0},
        None,
        [1, 2, 3],
    ],
)
def test_schema_mismatch_is_a_schema_error(data: object) -> None:
    with pytest.raises(SchemaError, match=r"testmessages\.fill"):
        validate_data(FILL, data)


@pytest.mark.anyio
async def test_bus_publish_validates_schema(bus: AsyncMessageBus) -> None:
    with pytest.raises(SchemaError):
        await bus.publish(FILL, {"symbol": "ETH/USDT"})
    with pytest.raises(UnknownMessageType):
        await bus.publish("no_such.type", {})
    # the bus keeps working
    await bus.publish(FILL, {"symbol": "ETH/USDT", "quantity": 1, "price": 1})
