"""The paper exchange: reports per order, seeded plans, quotes by request/reply."""

from __future__ import annotations

import pytest
from trading_helpers import collect, field, of_type, wait_for

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus_trading import Environment
from actorbus_trading.exchange import ExchangeActor, ExchangeParams, ExchangeState, _split
from actorbus_trading.market_data import MarketDataActor, MarketState
from actorbus_trading.schemas import ExchangeSubmit, Tick

pytestmark = pytest.mark.anyio

QUOTE = Tick(symbol="X", price=100.0, bid=99.9, ask=100.1, seq=1)


async def start(
    bus: AsyncMessageBus, params: ExchangeParams, *, quote: bool = True
) -> ExchangeState:
    env = Environment()
    market = MarketState(None)
    if quote:
        market.quotes["X"] = QUOTE
    state = ExchangeState()
    await bus.spawn(ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, market)))
    await bus.spawn(ChildSpec(ExchangeActor, factory=lambda: ExchangeActor(env, state, params)))
    return state


def order(order_id: str, side: str = "buy", quantity: int = 10) -> ExchangeSubmit:
    return ExchangeSubmit(order_id=order_id, symbol="X", side=side, quantity=quantity, price=100.0)  # type: ignore[arg-type]


async def test_a_plain_order_is_acknowledged_then_filled_at_the_far_side(
    bus: AsyncMessageBus,
) -> None:
    params = ExchangeParams(latency=0.0, slippage_bps=0.0, partial_rate=0.0, reject_rate=0.0)
    state = await start(bus, params)
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_STATUS)
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o2", side="sell"))
    await wait_for(lambda: len(state.done) == 2)
    await wait_for(lambda: len(seen) == 4)
    reports = of_type(seen, MessageTypes.EXCHANGE_ORDER_STATUS)
    assert [field(r, "status") for r in reports] == ["acknowledged", "filled"] * 2
    assert field(reports[1], "fill_price") == 100.1  # a buy lifts the ask
    assert field(reports[3], "fill_price") == 99.9  # a sell hits the bid
    assert field(reports[1], "exec_id") == "o1:f0"


async def test_the_exchange_fills_at_the_quote_of_its_own_tick_stream(bus: AsyncMessageBus) -> None:
    params = ExchangeParams(latency=0.0, slippage_bps=0.0, partial_rate=0.0, reject_rate=0.0)
    state = await start(bus, params, quote=False)  # market data knows nothing
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_STATUS)
    tick = Tick(symbol="X", price=200.0, bid=199.0, ask=201.0, seq=7)
    await bus.publish(MessageTypes.MARKET_DATA_UPDATE, tick)
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await wait_for(lambda: len(seen) == 2)
    assert field(seen[1][1], "fill_price") == 201.0
    assert state.asked == 0


async def test_partial_fills_add_up_or_the_rest_is_cancelled(bus: AsyncMessageBus) -> None:
    params = ExchangeParams(latency=0.0, partial_rate=1.0, cancel_rate=0.5, reject_rate=0.0)
    state = await start(bus, params)
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_STATUS)
    for n in range(20):
        await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order(f"o{n}", quantity=50))
    await wait_for(lambda: len(state.done) == 20)
    await wait_for(lambda: bus.stats().actors["exchange"].processed == 20)
    by_order: dict[str, list[object]] = {}
    for data in of_type(seen, MessageTypes.EXCHANGE_ORDER_STATUS):
        by_order.setdefault(field(data, "order_id"), []).append(data)
    for reports in by_order.values():
        fills = [field(r, "fill_quantity") for r in reports if "fill" in field(r, "status")]
        assert len(fills) >= 1
        last = field(reports[-1], "status")
        if last == "cancelled":
            assert sum(fills) < 50
            assert field(reports[-1], "cum_quantity") == sum(fills)
        else:
            assert last == "filled"
            assert sum(fills) == 50
    assert state.cancelled > 0


async def test_rejections_and_no_market(bus: AsyncMessageBus) -> None:
    state = await start(bus, ExchangeParams(latency=0.0, reject_rate=1.0))
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_STATUS)
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await wait_for(lambda: state.rejected == 1)
    await wait_for(lambda: len(seen) == 1)
    assert field(seen[0][1], "status") == "rejected"


async def test_no_quote_means_no_market(bus: AsyncMessageBus) -> None:
    state = await start(bus, ExchangeParams(latency=0.0, reject_rate=0.0), quote=False)
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_STATUS)
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await wait_for(lambda: len(seen) == 1)
    assert field(seen[0][1], "reason") == "no market for X"
    assert state.rejected == 1
    assert state.asked == 1  # it asked market data, which had no quote either


async def test_a_redelivered_order_is_worked_once(bus: AsyncMessageBus) -> None:
    state = await start(bus, ExchangeParams(latency=0.0, reject_rate=0.0))
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await bus.publish(MessageTypes.EXCHANGE_ORDER_SUBMIT, order("o1"))
    await wait_for(lambda: state.duplicates == 1)
    assert state.done == {"o1"}


async def test_cancels_come_too_late(bus: AsyncMessageBus) -> None:
    await start(bus, ExchangeParams(latency=0.0, reject_rate=0.0))
    errors = await collect(bus, MessageTypes.EXCHANGE_ERROR)
    await bus.publish(MessageTypes.EXCHANGE_ORDER_CANCEL, {"order_id": "o9"})
    await wait_for(lambda: len(errors) == 1)
    assert field(errors[0][1], "error") == "unknown order"


def test_split_gives_positive_pieces_that_add_up() -> None:
    import random

    plan = random.Random(3)
    for quantity in (1, 2, 3, 10, 1000):
        pieces = _split(quantity, plan)
        assert sum(pieces) == quantity
        assert all(piece > 0 for piece in pieces)
