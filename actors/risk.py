"""Risk: pre-trade checks that turn signals into orders or refusals.

Each STRATEGY_SIGNAL is checked, in this order, against:

- ``price_band``: the signal's reference price within ``price_band`` (a fraction)
  of the latest tick of the symbol;
- ``max_order_rate``: a token bucket of ``order_burst`` tokens, refilled at
  ``max_orders_per_second`` (on the system's clock); each approval takes one, so
  orders flow smoothly at the rate, with short bursts allowed;
- ``max_position``: the symbol's position after every working order and this one,
  valued at the reference price, within ``max_position_notional``;
- ``max_notional``: the gross exposure over all symbols after this order within
  ``max_gross_notional``.

A signal that passes becomes an EXECUTION_ORDER_REQUEST (request id = the
signal's message id); one that fails becomes a RISK_LIMIT_BREACH naming the
rule. Exposure counts fills and working orders alike, and is learnt from
EXECUTION_ORDER_STATUS (every order, flattening orders included), so risk never
needs to ask anyone. Approvals not yet seen in a status count as working.
After every change of exposure risk publishes RISK_EXPOSURE_UPDATE.

The state lives in :class:`RiskState`, which outlives a restart of the actor.
"""

from __future__ import annotations

from dataclasses import dataclass

from actorbus import Conflate, Envelope, MessageTypes, handles

from .base import Environment, TradingActor
from .schemas import (
    ExposureUpdate,
    OrderRequest,
    OrderStatus,
    RiskBreach,
    Signal,
    Tick,
    as_struct,
    sign,
)

__all__ = ["RiskActor", "RiskLimits", "RiskState"]

TERMINAL = frozenset({"filled", "cancelled", "rejected"})


@dataclass(frozen=True)
class RiskLimits:
    """The pre-trade limits."""

    max_position_notional: float = 250_000.0
    """Largest absolute position of one symbol, valued at the reference price."""
    max_gross_notional: float = 600_000.0
    """Largest sum of absolute positions over all symbols."""
    max_orders_per_second: float = 10.0
    """Sustained approvals per second (the bucket's refill rate)."""
    order_burst: int = 5
    """Approvals allowed in a burst (the bucket's size)."""
    price_band: float = 0.01
    """Largest relative distance between a signal's price and the latest tick."""


class _Working:
    __slots__ = ("filled", "quantity", "side", "symbol", "terminal")

    def __init__(self, symbol: str, side: str, quantity: int) -> None:
        self.symbol, self.side, self.quantity = symbol, side, quantity
        self.filled = 0
        self.terminal = False


class RiskState:
    """Risk's view of the book, kept across restarts."""

    def __init__(self) -> None:
        self.orders: dict[str, _Working] = {}
        """Orders seen in EXECUTION_ORDER_STATUS, by order id."""
        self.pending: dict[str, tuple[str, int]] = {}
        """Approved requests not yet seen in a status: request id -> (symbol, signed quantity)."""
        self.filled: dict[str, int] = {}
        """Signed filled quantity per symbol, over every order."""
        self.working: dict[str, int] = {}
        """Signed unfilled quantity per symbol, over the orders not yet terminal."""
        self.live = 0
        """Orders seen in a status and not yet terminal."""
        self.tokens: float | None = None
        """Approvals the order-rate bucket allows now (``None``: full, before the first)."""
        self.refilled_at = 0.0
        """Clock time the bucket was last refilled."""
        self.decided: dict[str, str] = {}
        """Signal id -> "approved" or the breached rule (a redelivered signal is decided once)."""
        self.last_price: dict[str, float] = {}
        """Latest tick price per symbol."""
        self.last_seq: dict[str, int] = {}
        self.approved = 0
        """Signals approved."""
        self.breaches: dict[str, int] = {}
        """Signals refused, per rule."""

    def filled_position(self, symbol: str) -> int:
        """Signed filled quantity of a symbol."""
        return self.filled.get(symbol, 0)

    def projected(self) -> dict[str, int]:
        """Per symbol: filled quantity plus working and pending orders (signed)."""
        totals = dict(self.filled)
        for symbol, quantity in self.working.items():
            totals[symbol] = totals.get(symbol, 0) + quantity
        for symbol, quantity in self.pending.values():
            totals[symbol] = totals.get(symbol, 0) + quantity
        return totals

    def open_orders(self) -> int:
        """Orders approved or working, not yet terminal."""
        return self.live + len(self.pending)

    def update(self, order: _Working, filled: int, terminal: bool) -> bool:
        """Apply what a status says about ``order``; return whether its exposure changed.

        Filled quantities only grow and terminal is for good, so a stale or repeated
        status changes nothing; the per-symbol totals follow the order's change.
        """
        filled = max(order.filled, filled)
        terminal = order.terminal or terminal
        if filled == order.filled and terminal == order.terminal:
            return False
        self._account(order, -1)
        if terminal and not order.terminal:
            self.live -= 1
        order.filled, order.terminal = filled, terminal
        self._account(order, +1)
        return True

    def add(self, order_id: str, order: _Working) -> None:
        """Start tracking an order (working, nothing filled)."""
        self.orders[order_id] = order
        self.live += 1
        self._account(order, +1)

    def _account(self, order: _Working, direction: int) -> None:
        signed = sign(order.side) * direction
        symbol = order.symbol
        self.filled[symbol] = self.filled.get(symbol, 0) + signed * order.filled
        if not order.terminal:
            unfilled = signed * (order.quantity - order.filled)
            self.working[symbol] = self.working.get(symbol, 0) + unfilled


class RiskActor(TradingActor):
    """Checks signals against :class:`RiskLimits`; see the module documentation."""

    name = "risk"
    mailbox_policy = Conflate([MessageTypes.MARKET_DATA_UPDATE])

    def __init__(
        self, env: Environment, state: RiskState, limits: RiskLimits | None = None
    ) -> None:
        super().__init__(env)
        self.state = state
        """Risk's book (outlives this instance)."""
        self.limits = limits or RiskLimits()
        """The limits."""

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        """Remember the latest price (for the price band and valuations)."""
        self.fault_point()
        tick = as_struct(msg.data, Tick)
        if tick.seq and tick.seq <= self.state.last_seq.get(tick.symbol, 0):
            return
        self.state.last_seq[tick.symbol] = tick.seq
        self.state.last_price[tick.symbol] = tick.price

    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, msg: Envelope) -> None:
        """Approve the signal as an order request, or refuse it with a breach."""
        self.fault_point()
        state = self.state
        if msg.id in state.decided:
            return  # a duplicate delivery: decided already
        signal = as_struct(msg.data, Signal)
        rule, detail = self._check(signal)
        if rule is None:
            state.decided[msg.id] = "approved"
            state.pending[msg.id] = (signal.symbol, sign(signal.side) * signal.quantity)
            state.tokens = (state.tokens or 0.0) - 1.0
            state.approved += 1
            await self.publish(
                MessageTypes.EXECUTION_ORDER_REQUEST,
                OrderRequest(
                    request_id=msg.id,
                    symbol=signal.symbol,
                    side=signal.side,
                    quantity=signal.quantity,
                    price=signal.price,
                ),
            )
            await self._publish_exposure()
            return
        state.decided[msg.id] = rule
        state.breaches[rule] = state.breaches.get(rule, 0) + 1
        await self.publish(
            MessageTypes.RISK_LIMIT_BREACH,
            RiskBreach(symbol=signal.symbol, rule=rule, detail=detail, signal_id=msg.id),  # type: ignore[arg-type]
        )

    def _check(self, signal: Signal) -> tuple[str | None, str]:
        state, limits = self.state, self.limits
        last = state.last_price.get(signal.symbol)
        if last is not None and abs(signal.price / last - 1) > limits.price_band:
            return "price_band", f"{signal.price} is more than {limits.price_band:.2%} from {last}"
        now = self.clock.monotonic()
        if state.tokens is None:
            state.tokens = float(limits.order_burst)
        else:
            refill = (now - state.refilled_at) * limits.max_orders_per_second
            state.tokens = min(float(limits.order_burst), state.tokens + max(0.0, refill))
        state.refilled_at = now
        if state.tokens < 1.0:
            return "max_order_rate", (
                f"above {limits.max_orders_per_second:g} orders/s (bursts of {limits.order_burst})"
            )
        projected = state.projected()
        after = projected.get(signal.symbol, 0) + sign(signal.side) * signal.quantity
        if abs(after) * signal.price > limits.max_position_notional:
            return "max_position", (
                f"{signal.symbol} position would be {after} "
                f"({abs(after) * signal.price:,.0f} > {limits.max_position_notional:,.0f})"
            )
        projected[signal.symbol] = after
        gross = sum(
            abs(quantity) * (signal.price if symbol == signal.symbol else self._price(symbol))
            for symbol, quantity in projected.items()
        )
        if gross > limits.max_gross_notional:
            return "max_notional", f"gross exposure would be {gross:,.0f}"
        return None, ""

    def _price(self, symbol: str) -> float:
        return self.state.last_price.get(symbol, 0.0)

    @handles(MessageTypes.EXECUTION_ORDER_STATUS)
    async def on_order_status(self, msg: Envelope) -> None:
        """Track working and filled quantities of every order."""
        self.fault_point()
        status = as_struct(msg.data, OrderStatus)
        state = self.state
        state.pending.pop(status.request_id, None)
        order = state.orders.get(status.order_id)
        if order is None:  # pending until now: the same quantity, now working
            order = _Working(status.symbol, status.side, status.quantity)
            state.add(status.order_id, order)
        if state.update(order, status.filled_quantity, status.state in TERMINAL):
            await self._publish_exposure()

    async def _publish_exposure(self) -> None:
        projected = self.state.projected()
        positions = {symbol: self.state.filled_position(symbol) for symbol in sorted(projected)}
        await self.publish(
            MessageTypes.RISK_EXPOSURE_UPDATE,
            ExposureUpdate(
                gross_notional=sum(abs(q) * self._price(s) for s, q in projected.items()),
                net_notional=sum(q * self._price(s) for s, q in projected.items()),
                positions=positions,
                open_orders=self.state.open_orders(),
            ),
        )
