"""Payload schemas of the trading system's messages, as msgspec Structs.

Every actor reads its payloads through :func:`as_struct`, so it works whether
or not the schemas are registered with the bus: registered (by
:func:`register_schemas`, which ``actorbus run`` calls), data is validated on
publish and on receipt and arrives as a Struct; unregistered, plain dicts are
converted at the actor's door.

Registering attaches schemas to built-in message types for the whole process,
so it is not done on import: a program that publishes its own ``strategy.signal``
dicts (the seed API examples do) keeps working next to ``import actorbus_trading``.

Quantities are integers (units of the symbol), prices floats. Sides are
``"buy"`` and ``"sell"``.

Prices and quantities are checked whenever one of these Structs is made,
decoded or converted (``__post_init__``): a price must be finite, above 0 and
below :data:`MAX_PRICE`, a quantity above 0 and below :data:`MAX_QUANTITY`.
A bad value raises ``ValueError`` where it is made (``msgspec.ValidationError``
when decoded or converted), so a message carrying ``nan``, ``inf`` or ``1e300``
is refused by its publisher or dead-lettered with the reason by its receiver;
it is never traded.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeVar

import msgspec

from actorbus import MessageTypes, register_message_type

__all__ = [
    "MAX_PRICE",
    "MAX_QUANTITY",
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
    "check_amount",
    "check_price",
    "check_quantity",
    "register_schemas",
    "sign",
    "unregister_schemas",
]

Side = Literal["buy", "sell"]

S = TypeVar("S", bound=msgspec.Struct)


MAX_PRICE = 1e9
"""Prices at or above this are refused as absurd (no traded symbol is worth a billion)."""
MAX_QUANTITY = 10**12
"""Quantities at or above this are refused as absurd."""


def check_price(value: float, what: str = "price", *, zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a plausible price (``zero``: 0 allowed too)."""
    if zero and value == 0:
        return
    if not 0 < value < MAX_PRICE:  # false for nan as well
        raise ValueError(f"{what} {value!r} is not a price: need a finite number in (0, 1e9)")


def check_quantity(value: int, what: str = "quantity", *, zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a plausible quantity (``zero``: 0 allowed too)."""
    if zero and value == 0:
        return
    if not 0 < value < MAX_QUANTITY:
        raise ValueError(f"{what} {value!r} is not a quantity: need 0 < quantity < 1e12")


def check_amount(value: float, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` is finite (money amounts may be negative)."""
    if not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not finite")


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

    def __post_init__(self) -> None:
        if not (  # one expression: this runs for every tick
            0 < self.price < MAX_PRICE
            and 0 < self.bid < MAX_PRICE
            and 0 < self.ask < MAX_PRICE
            and 0 <= self.volume < MAX_QUANTITY
        ):
            check_price(self.price)
            check_price(self.bid, "bid")
            check_price(self.ask, "ask")
            raise ValueError(f"volume {self.volume!r} is not a volume: need a finite number >= 0")


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

    def __post_init__(self) -> None:
        check_price(self.price)
        check_quantity(self.quantity)


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

    def __post_init__(self) -> None:
        check_price(self.price)
        check_quantity(self.quantity)


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of (part of) an order."""

    exec_id: str
    """Unique per fill; consumers apply a fill once by it."""
    symbol: str
    side: Side
    quantity: int
    price: float

    def __post_init__(self) -> None:
        check_price(self.price, "fill price")
        check_quantity(self.quantity, "fill quantity")


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

    def __post_init__(self) -> None:
        check_quantity(self.quantity)
        check_quantity(self.filled_quantity, "filled quantity", zero=True)
        check_price(self.avg_price, "average price", zero=True)


class ExchangeSubmit(msgspec.Struct, frozen=True, kw_only=True):
    """EXCHANGE_ORDER_SUBMIT: a new order sent to the venue."""

    order_id: str
    symbol: str
    side: Side
    quantity: int
    price: float

    def __post_init__(self) -> None:
        check_price(self.price)
        check_quantity(self.quantity)


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

    def __post_init__(self) -> None:
        check_quantity(self.fill_quantity, "fill quantity", zero=True)
        check_price(self.fill_price, "fill price", zero=not self.fill_quantity)
        check_quantity(self.cum_quantity, "cumulative quantity", zero=True)


class PositionUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """POSITION_UPDATE: a symbol's position after a fill."""

    symbol: str
    quantity: int
    avg_price: float
    realised_pnl: float
    unrealised_pnl: float
    mark: float
    fills: int

    def __post_init__(self) -> None:
        check_price(self.avg_price, "average price", zero=True)
        check_price(self.mark, "mark", zero=True)
        check_amount(self.realised_pnl, "realised P&L")
        check_amount(self.unrealised_pnl, "unrealised P&L")


class PositionClose(msgspec.Struct, frozen=True, kw_only=True):
    """POSITION_CLOSE: flatten a symbol."""

    symbol: str
    reason: str = ""


class RiskBreach(msgspec.Struct, frozen=True, kw_only=True):
    """RISK_LIMIT_BREACH: a signal refused by a pre-trade check."""

    symbol: str
    rule: Literal["max_position", "max_notional", "max_order_rate", "price_band"]
    detail: str
    signal_id: str


class ExposureUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """RISK_EXPOSURE_UPDATE: exposure as risk sees it (filled plus working orders)."""

    gross_notional: float
    net_notional: float
    positions: dict[str, int]
    open_orders: int

    def __post_init__(self) -> None:
        check_amount(self.gross_notional, "gross notional")
        check_amount(self.net_notional, "net notional")


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
