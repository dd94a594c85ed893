"""A paper exchange: fills orders at the current quote, with latency, slippage and failures.

The exchange watches the market like any venue: it takes MARKET_DATA_UPDATE
itself (conflated: only the latest quote of a symbol matters). For each
EXCHANGE_ORDER_SUBMIT it waits ``latency`` seconds (of the system's clock),
takes the symbol's current quote (asking market data for it by request/reply
when it has seen no tick of that symbol yet) and answers with EXCHANGE_ORDER_STATUS reports:

- ``rejected`` with probability ``reject_rate``, or when no quote can be had;
- otherwise ``acknowledged``, then the order filled in one piece, or with
  probability ``partial_rate`` in two or three pieces, each at the quote's far
  side (ask for a buy, bid for a sell) moved against the order by up to
  ``slippage_bps``; with probability ``cancel_rate`` the last piece is not
  filled and the rest of the order is ``cancelled`` instead.

What happens to an order is drawn from a random generator seeded by the run's
seed and what the order is (symbol, side, quantity, reference price: not its id,
a random message id, so that a replay of the same feed gets the same plans) and
how many orders just like it were done before, so a redelivered order gets the
same plan while a close order sent again after a rejection gets a new one; every
report carries an ``exec_id`` derived from the order id and its position in
the plan: a report sent twice is the same report, which execution applies once.

Taking ticks rather than asking for every order keeps the exchange working on
its own once orders are in its queue, even when market data runs in another
process that has already stopped: a split tree can wind down producers first.

Cancel requests (EXCHANGE_ORDER_CANCEL) arrive after the exchange is done with
an order (it handles each order in one go), so they are answered with
EXCHANGE_ERROR "too late"; unknown orders likewise.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from dataclasses import dataclass

from actorbus import (
    AskFailed,
    AskTimeout,
    Conflate,
    Envelope,
    MessageTypes,
    Unroutable,
    handles,
)

from .base import Environment, TradingActor
from .schemas import ExchangeCancel, ExchangeReport, ExchangeSubmit, QuoteRequest, Tick, as_struct

__all__ = ["ExchangeActor", "ExchangeParams", "ExchangeState"]


@dataclass(frozen=True)
class ExchangeParams:
    """How the paper exchange behaves."""

    latency: float = 0.001
    """Seconds between receiving an order and acting on it."""
    slippage_bps: float = 1.0
    """Largest price move against the order, in basis points of the quote."""
    partial_rate: float = 0.3
    """Probability that an order fills in several pieces."""
    cancel_rate: float = 0.1
    """Probability that the last piece is cancelled instead of filled."""
    reject_rate: float = 0.05
    """Probability that an order is rejected."""
    quote_timeout: float = 2.0
    """Seconds to wait for market data's quote."""
    seed: int = 1
    """Seed of the per-order random plans."""


class ExchangeState:
    """Orders the exchange has handled, kept across restarts."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        """Ids of orders fully handled."""
        self.quotes: dict[str, Tick] = {}
        """Latest tick per symbol."""
        self.asked = 0
        """Quotes asked of market data (no tick of the symbol seen yet)."""
        self.rejected = 0
        self.fills = 0
        self.cancelled = 0
        self.duplicates = 0
        self.seen: Counter[bytes] = Counter()
        """Orders done per content (symbol, side, quantity, price): the plan's second key."""


class ExchangeActor(TradingActor):
    """The paper exchange; see the module documentation."""

    name = "exchange"
    mailbox_policy = Conflate([MessageTypes.MARKET_DATA_UPDATE])

    def __init__(
        self, env: Environment, state: ExchangeState, params: ExchangeParams | None = None
    ) -> None:
        super().__init__(env)
        self.state = state
        """Handled orders (outlive this instance)."""
        self.params = params or ExchangeParams()
        """Latency, slippage and failure rates."""

    @handles(MessageTypes.EXCHANGE_ORDER_SUBMIT)
    async def on_submit(self, msg: Envelope) -> None:
        """Work the order and report what happened to it."""
        self.fault_point()
        order = as_struct(msg.data, ExchangeSubmit)
        if order.order_id in self.state.done:
            self.state.duplicates += 1
            return
        params = self.params
        key = _plan_key(order)
        attempt = self.state.seen[key]  # the same order again (a close re-sent) plans anew
        plan = random.Random(f"{params.seed}:{zlib.crc32(key)}:{attempt}")
        if params.latency > 0:
            await self.clock.sleep(params.latency)
        if plan.random() < params.reject_rate:
            await self._reject(order, "rejected by the venue (simulated)")
            return
        quote = self.state.quotes.get(order.symbol) or await self._ask_quote(order.symbol)
        if quote is None:
            await self._reject(order, f"no market for {order.symbol}")
            return
        await self._report(order, "acknowledged", "ack")
        pieces = (
            _split(order.quantity, plan)
            if plan.random() < params.partial_rate
            else [order.quantity]
        )
        if len(pieces) > 1 and plan.random() < params.cancel_rate:
            pieces.pop()
            cancel = True
        else:
            cancel = False
        filled = 0
        for index, piece in enumerate(pieces):
            filled += piece
            slip = plan.uniform(0.0, params.slippage_bps) / 10_000
            price = quote.ask * (1 + slip) if order.side == "buy" else quote.bid * (1 - slip)
            await self._report(
                order,
                "filled" if filled == order.quantity else "partially_filled",
                f"f{index}",
                fill_quantity=piece,
                fill_price=round(price, 6),
                cum_quantity=filled,
            )
            self.state.fills += 1
        if cancel:
            await self._report(
                order,
                "cancelled",
                "cxl",
                cum_quantity=filled,
                reason="rest cancelled: no liquidity",
            )
            self.state.cancelled += 1
        self._done(order)

    async def _ask_quote(self, symbol: str) -> Tick | None:
        self.state.asked += 1
        try:
            reply = await self.ask(
                MessageTypes.MARKET_DATA_REQUEST,
                QuoteRequest(symbol=symbol),
                timeout=self.params.quote_timeout,
            )
        except (AskTimeout, AskFailed, Unroutable):
            return None
        return None if reply is None else as_struct(reply, Tick)

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        """Keep the latest quote of the symbol (older ticks are ignored)."""
        self.fault_point()
        tick = as_struct(msg.data, Tick)
        known = self.state.quotes.get(tick.symbol)
        if known is None or tick.seq > known.seq or not tick.seq:
            self.state.quotes[tick.symbol] = tick

    @handles(MessageTypes.EXCHANGE_ORDER_CANCEL)
    async def on_cancel(self, msg: Envelope) -> None:
        """Orders are worked in one go, so a cancel always comes too late."""
        self.fault_point()
        cancel = as_struct(msg.data, ExchangeCancel)
        known = cancel.order_id in self.state.done
        await self.publish(
            MessageTypes.EXCHANGE_ERROR,
            {
                "order_id": cancel.order_id,
                "error": "too late to cancel: order done" if known else "unknown order",
            },
        )

    async def _reject(self, order: ExchangeSubmit, reason: str) -> None:
        await self._report(order, "rejected", "rej", reason=reason)
        self.state.rejected += 1
        self._done(order)

    def _done(self, order: ExchangeSubmit) -> None:
        self.state.done.add(order.order_id)
        self.state.seen[_plan_key(order)] += 1

    async def _report(
        self,
        order: ExchangeSubmit,
        status: str,
        step: str,
        *,
        fill_quantity: int = 0,
        fill_price: float = 0.0,
        cum_quantity: int = 0,
        reason: str = "",
    ) -> None:
        await self.publish(
            MessageTypes.EXCHANGE_ORDER_STATUS,
            ExchangeReport(
                order_id=order.order_id,
                exec_id=f"{order.order_id}:{step}",
                status=status,  # type: ignore[arg-type]
                symbol=order.symbol,
                side=order.side,
                fill_quantity=fill_quantity,
                fill_price=fill_price,
                cum_quantity=cum_quantity,
                reason=reason,
            ),
        )


def _plan_key(order: ExchangeSubmit) -> bytes:
    return f"{order.symbol}:{order.side}:{order.quantity}:{order.price!r}".encode()


def _split(quantity: int, plan: random.Random) -> list[int]:
    """Split ``quantity`` into 2 or 3 positive pieces (fewer when it is too small)."""
    count = min(quantity, plan.choice((2, 3)))
    if count <= 1:
        return [quantity]
    cuts = sorted(plan.sample(range(1, quantity), count - 1))
    bounds = [0, *cuts, quantity]
    return [bounds[i + 1] - bounds[i] for i in range(count)]
