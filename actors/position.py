"""Position keeping: quantity, average price and P&L per symbol, from fills.

Fills arrive inside EXECUTION_ORDER_STATUS messages and are booked once each
(by ``exec_id``). Average-cost accounting:

- a fill that adds to a position (or opens one) moves the average price to the
  quantity-weighted mean of the old average and the fill price;
- a fill that reduces a position realises ``(price - average) * closed quantity``
  (sign-adjusted for shorts) and leaves the average unchanged;
- a fill that goes through zero closes the old position (realising its P&L)
  and opens the rest at the fill price.

Unrealised P&L is ``(mark - average) * quantity`` with the mark the latest tick
price (ticks are conflated: only the latest matters). The identity the audit
checks is ``realised + unrealised == cash + quantity * mark`` where cash is the
sum of ``-signed quantity * price`` over the symbol's fills.

After each booked fill the actor publishes POSITION_UPDATE. POSITION_CLOSE
flattens a symbol: an EXECUTION_ORDER_REQUEST for the opposite of the current
position goes straight to execution (closing reduces risk, so it does not wait
for the risk check).

Positions live in a :class:`PositionBook` that outlives a restart of the actor.
"""

from __future__ import annotations

from actorbus import Conflate, Envelope, MessageTypes, QueueOptions, handles

from .base import Environment, TradingActor
from .schemas import (
    Fill,
    OrderRequest,
    OrderStatus,
    PositionClose,
    PositionUpdate,
    Tick,
    as_struct,
    sign,
)

__all__ = ["Position", "PositionActor", "PositionBook"]


class Position:
    """One symbol's position."""

    __slots__ = ("avg_price", "cash", "fills", "mark", "quantity", "realised", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.quantity = 0
        """Signed quantity: positive long, negative short."""
        self.avg_price = 0.0
        """Average entry price of the open quantity (0 when flat)."""
        self.realised = 0.0
        """P&L realised by reducing or closing."""
        self.cash = 0.0
        """Sum of ``-signed quantity * price`` over the fills."""
        self.mark = 0.0
        """Latest market price."""
        self.fills = 0
        """Fills booked."""

    @property
    def unrealised(self) -> float:
        """P&L of the open quantity at the mark (0 before the first mark)."""
        if not self.quantity or not self.mark:
            return 0.0
        return (self.mark - self.avg_price) * self.quantity

    def apply(self, fill: Fill) -> None:
        """Book one fill."""
        signed = sign(fill.side) * fill.quantity
        self.cash -= signed * fill.price
        self.fills += 1
        if not self.mark:
            self.mark = fill.price
        old = self.quantity
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            self.avg_price = (self.avg_price * abs(old) + fill.price * abs(signed)) / abs(new)
        else:
            closed = min(abs(old), abs(signed))
            self.realised += (fill.price - self.avg_price) * closed * (1 if old > 0 else -1)
            if new == 0:
                self.avg_price = 0.0
            elif (new > 0) != (old > 0):
                self.avg_price = fill.price
        self.quantity = new

    def update(self) -> PositionUpdate:
        """The position as a POSITION_UPDATE payload."""
        return PositionUpdate(
            symbol=self.symbol,
            quantity=self.quantity,
            avg_price=self.avg_price,
            realised_pnl=self.realised,
            unrealised_pnl=self.unrealised,
            mark=self.mark,
            fills=self.fills,
        )


class PositionBook:
    """Every position and the ids of the fills booked, kept across restarts."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        """Positions by symbol."""
        self.fills: dict[str, Fill] = {}
        """Booked fills by exec id, in booking order."""
        self.last_seq: dict[str, int] = {}
        self.duplicates = 0
        """Fills delivered more than once (booked once)."""
        self.closes = 0
        """Flattening orders sent."""

    def position(self, symbol: str) -> Position:
        """The position of ``symbol`` (created flat)."""
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(symbol)
        return position


class PositionActor(TradingActor):
    """Books fills and marks positions; see the module documentation."""

    name = "position"
    queue_options = QueueOptions(single_active=True)  # order matters: see actors/system.py
    mailbox_policy = Conflate([MessageTypes.MARKET_DATA_UPDATE])

    def __init__(self, env: Environment, book: PositionBook) -> None:
        super().__init__(env)
        self.book = book
        """Positions (outlive this instance)."""

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        """Mark the symbol's position to the latest price."""
        self.fault_point()
        tick = as_struct(msg.data, Tick)
        if tick.seq and tick.seq <= self.book.last_seq.get(tick.symbol, 0):
            return
        self.book.last_seq[tick.symbol] = tick.seq
        self.book.position(tick.symbol).mark = tick.price

    @handles(MessageTypes.EXECUTION_ORDER_STATUS)
    async def on_order_status(self, msg: Envelope) -> None:
        """Book the status's fill, if it carries a new one."""
        self.fault_point()
        fill = as_struct(msg.data, OrderStatus).fill
        if fill is None:
            return
        if fill.exec_id in self.book.fills:
            self.book.duplicates += 1
            return
        position = self.book.position(fill.symbol)
        position.apply(fill)
        self.book.fills[fill.exec_id] = fill
        await self.publish(MessageTypes.POSITION_UPDATE, position.update())

    @handles(MessageTypes.POSITION_CLOSE)
    async def on_close(self, msg: Envelope) -> None:
        """Send an order for the opposite of the symbol's position (nothing when flat)."""
        self.fault_point()
        close = as_struct(msg.data, PositionClose)
        position = self.book.position(close.symbol)
        if position.quantity == 0:
            await self.publish(MessageTypes.POSITION_UPDATE, position.update())
            return
        self.book.closes += 1
        await self.publish(
            MessageTypes.EXECUTION_ORDER_REQUEST,
            OrderRequest(
                request_id=f"close:{msg.id}",
                symbol=close.symbol,
                side="sell" if position.quantity > 0 else "buy",
                quantity=abs(position.quantity),
                price=position.mark or position.avg_price,
                origin="close",
            ),
        )
