"""Payload schemas of the trading system's messages, as msgspec Structs.

Every actor reads its payloads through :func:`as_struct`, so it works whether
or not the schemas are registered with the bus: registered (by
:func:`register_schemas`, which ``actorbus run`` calls), data is validated on
publish and on receipt and arrives as a Struct; unregistered, plain dicts are
converted at the actor's door.

Registering attaches schemas to built-in message types for the whole process,
so it is not done on import: a program that publishes its own ``strategy.signal``
dicts (the seed API examples do) keeps working next to ``import actors``.

Quantities are integers (units of the symbol), prices floats. Sides are
``"buy"`` and ``"sell"``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec

from actorbus import MessageTypes, register_message_type

__all__ = [
    "ExchangeCancel",
    "ExchangeReport",
    "ExchangeSubmit",
    "ExposureUpdate",
    "Fill",
    "OrderRequest",
    "OrderStatus",
    "PositionClose",
    "PositionUpdate",
    "QuoteRequest",
    "RiskBreach",
    "Side",
    "Signal",
    "Tick",
    "as_struct",
    "register_schemas",
    "sign",
    "unregister_schemas",
]

Side = Literal["buy", "sell"]

S = TypeVar("S", bound=msgspec.Struct)


def sign(side: str) -> int:
    """+1 for a buy, -1 for a sell."""
    return 1 if side == "buy" else -1


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    """MARKET_DATA_UPDATE: the latest quote of a symbol."""

    symbol: str
    price: float
    """Last trade (or bar close) price."""
    bid: float
    ask: float
    volume: float = 0.0
    seq: int = 0
    """Per-symbol sequence number; a consumer ignores a tick older than one it has seen."""
    ts: float = 0.0
    """Epoch seconds of the quote."""


class QuoteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """MARKET_DATA_REQUEST: ask for a symbol's latest quote (the reply is a Tick or None)."""

    symbol: str


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """STRATEGY_SIGNAL: a strategy wants to trade."""

    symbol: str
    side: Side
    quantity: int
    price: float
    """Reference price: the tick that triggered the signal."""
    strategy: str = ""
    reason: str = ""


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """EXECUTION_ORDER_REQUEST: an order approved by risk (or a flattening order)."""

    request_id: str
    """The signal's message id (or ``close:<id>`` for a POSITION_CLOSE)."""
    symbol: str
    side: Side
    quantity: int
    price: float
    """Reference price at approval."""
    origin: str = "strategy"


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of (part of) an order."""

    exec_id: str
    """Unique per fill; consumers apply a fill once by it."""
    symbol: str
    side: Side
    quantity: int
    price: float


class OrderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """EXECUTION_ORDER_STATUS: an order's state after a change, with the fill that caused it."""

    order_id: str
    request_id: str
    symbol: str
    side: Side
    quantity: int
    state: str
    filled_quantity: int = 0
    avg_price: float = 0.0
    fill: Fill | None = None
    reason: str = ""


class ExchangeSubmit(msgspec.Struct, frozen=True, kw_only=True):
    """EXCHANGE_ORDER_SUBMIT: a new order sent to the venue."""

    order_id: str
    symbol: str
    side: Side
    quantity: int
    price: float


class ExchangeCancel(msgspec.Struct, frozen=True, kw_only=True):
    """EXCHANGE_ORDER_CANCEL: cancel the rest of an order."""

    order_id: str


class ExchangeReport(msgspec.Struct, frozen=True, kw_only=True):
    """EXCHANGE_ORDER_STATUS: what the venue did with an order."""

    order_id: str
    exec_id: str
    """Unique per report; the same report delivered twice carries the same id."""
    status: Literal["acknowledged", "partially_filled", "filled", "cancelled", "rejected"]
    symbol: str
    side: Side
    fill_quantity: int = 0
    fill_price: float = 0.0
    cum_quantity: int = 0
    """Quantity filled so far, this report included."""
    reason: str = ""


class PositionUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """POSITION_UPDATE: a symbol's position after a fill."""

    symbol: str
    quantity: int
    avg_price: float
    realised_pnl: float
    unrealised_pnl: float
    mark: float
    fills: int


class PositionClose(msgspec.Struct, frozen=True, kw_only=True):
    """POSITION_CLOSE: flatten a symbol."""

    symbol: str
    reason: str = ""


class RiskBreach(msgspec.Struct, frozen=True, kw_only=True):
    """RISK_LIMIT_BREACH: a signal refused by a pre-trade check."""

    symbol: str
    rule: Literal["max_position", "max_notional", "max_order_rate", "price_band", "bad_signal"]
    detail: str
    signal_id: str


class ExposureUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """RISK_EXPOSURE_UPDATE: exposure as risk sees it (filled plus working orders)."""

    gross_notional: float
    net_notional: float
    positions: dict[str, int]
    open_orders: int


_SCHEMAS: dict[str, type[msgspec.Struct]] = {
    MessageTypes.MARKET_DATA_UPDATE: Tick,
    MessageTypes.MARKET_DATA_REQUEST: QuoteRequest,
    MessageTypes.STRATEGY_SIGNAL: Signal,
    MessageTypes.EXECUTION_ORDER_REQUEST: OrderRequest,
    MessageTypes.EXECUTION_ORDER_STATUS: OrderStatus,
    MessageTypes.EXCHANGE_ORDER_SUBMIT: ExchangeSubmit,
    MessageTypes.EXCHANGE_ORDER_CANCEL: ExchangeCancel,
    MessageTypes.EXCHANGE_ORDER_STATUS: ExchangeReport,
    MessageTypes.POSITION_UPDATE: PositionUpdate,
    MessageTypes.POSITION_CLOSE: PositionClose,
    MessageTypes.RISK_LIMIT_BREACH: RiskBreach,
    MessageTypes.RISK_EXPOSURE_UPDATE: ExposureUpdate,
}


def register_schemas() -> None:
    """Attach the schemas above to their message types, for this whole process."""
    for message_type, schema in _SCHEMAS.items():
        register_message_type(message_type, schema)


def unregister_schemas() -> None:
    """Remove the schemas again (plain data is accepted for these types afterwards)."""
    for message_type in _SCHEMAS:
        register_message_type(message_type, None)


def as_struct(data: Any, schema: type[S]) -> S:
    """Return ``data`` as a ``schema`` Struct: as is when it already is one, converted otherwise.

    Raises ``msgspec.ValidationError`` when the data does not fit.
    """
    if type(data) is schema:
        return data
    return msgspec.convert(data, schema, from_attributes=not isinstance(data, dict))
