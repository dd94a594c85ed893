"""Position keeping: average-cost arithmetic, idempotent booking, flattening."""

from __future__ import annotations

import pytest
from trading_helpers import collect, field, of_type, wait_for

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus_trading import Environment
from actorbus_trading.position import Position, PositionActor, PositionBook
from actorbus_trading.schemas import Fill, OrderStatus, PositionClose, Tick


def fill(exec_id: str, side: str, quantity: int, price: float, symbol: str = "X") -> Fill:
    return Fill(exec_id=exec_id, symbol=symbol, side=side, quantity=quantity, price=price)  # type: ignore[arg-type]


def test_adding_averages_the_price() -> None:
    position = Position("X")
    position.apply(fill("1", "buy", 10, 100.0))
    position.apply(fill("2", "buy", 30, 104.0))
    assert position.quantity == 40
    assert position.avg_price == pytest.approx(103.0)
    assert position.realised == 0.0


def test_reducing_realises_and_keeps_the_average() -> None:
    position = Position("X")
    position.apply(fill("1", "buy", 10, 100.0))
    position.apply(fill("2", "sell", 4, 110.0))
    assert position.quantity == 6
    assert position.avg_price == pytest.approx(100.0)
    assert position.realised == pytest.approx(40.0)


def test_short_positions_gain_when_the_price_falls() -> None:
    position = Position("X")
    position.apply(fill("1", "sell", 5, 200.0))
    position.apply(fill("2", "buy", 5, 190.0))
    assert position.quantity == 0
    assert position.avg_price == 0.0
    assert position.realised == pytest.approx(50.0)


def test_going_through_zero_opens_the_rest_at_the_fill_price() -> None:
    position = Position("X")
    position.apply(fill("1", "buy", 10, 100.0))
    position.apply(fill("2", "sell", 15, 90.0))
    assert position.quantity == -5
    assert position.avg_price == pytest.approx(90.0)
    assert position.realised == pytest.approx(-100.0)


def test_pnl_identity_holds_after_any_fills() -> None:
    position = Position("X")
    for index, (side, quantity, price) in enumerate(
        [("buy", 3, 10.0), ("buy", 2, 12.0), ("sell", 7, 11.0), ("buy", 1, 9.5), ("sell", 2, 13.0)]
    ):
        position.apply(fill(str(index), side, quantity, price))
    position.mark = 12.25
    assert position.realised + position.unrealised == pytest.approx(
        position.cash + position.quantity * position.mark
    )


def status_with(f: Fill) -> OrderStatus:
    return OrderStatus(
        order_id="o1", request_id="r1", symbol=f.symbol, side=f.side, quantity=f.quantity,
        state="filled", filled_quantity=f.quantity, avg_price=f.price, fill=f,
    )  # fmt: skip


@pytest.mark.anyio
async def test_actor_books_each_fill_once_and_marks_to_market(bus: AsyncMessageBus) -> None:
    book = PositionBook()
    env = Environment()
    await bus.spawn(ChildSpec(PositionActor, factory=lambda: PositionActor(env, book)))
    seen = await collect(bus, MessageTypes.POSITION_UPDATE, MessageTypes.EXECUTION_ORDER_REQUEST)
    first = fill("e1", "buy", 10, 100.0)
    await bus.publish(MessageTypes.EXECUTION_ORDER_STATUS, status_with(first))
    await bus.publish(MessageTypes.EXECUTION_ORDER_STATUS, status_with(first))  # duplicate
    await bus.publish(
        MessageTypes.MARKET_DATA_UPDATE, Tick(symbol="X", price=101.0, bid=100.9, ask=101.1, seq=1)
    )
    await wait_for(lambda: book.position("X").mark == 101.0)
    position = book.positions["X"]
    assert position.quantity == 10
    assert book.duplicates == 1
    assert position.unrealised == pytest.approx(10.0)
    updates = of_type(seen, MessageTypes.POSITION_UPDATE)
    assert len(updates) == 1
    assert field(updates[0], "quantity") == 10

    await bus.publish(MessageTypes.POSITION_CLOSE, PositionClose(symbol="X"))
    await wait_for(lambda: bool(of_type(seen, MessageTypes.EXECUTION_ORDER_REQUEST)))
    (request,) = of_type(seen, MessageTypes.EXECUTION_ORDER_REQUEST)
    assert field(request, "side") == "sell"
    assert field(request, "quantity") == 10
    assert field(request, "origin") == "close"


@pytest.mark.anyio
async def test_old_ticks_do_not_move_the_mark(bus: AsyncMessageBus) -> None:
    book = PositionBook()
    env = Environment()
    await bus.spawn(ChildSpec(PositionActor, factory=lambda: PositionActor(env, book)))
    await bus.publish(
        MessageTypes.MARKET_DATA_UPDATE, Tick(symbol="X", price=105.0, bid=105, ask=105, seq=5)
    )
    await wait_for(lambda: book.position("X").mark == 105.0)  # handled, not conflated away
    await bus.publish(
        MessageTypes.MARKET_DATA_UPDATE, Tick(symbol="X", price=99.0, bid=99, ask=99, seq=3)
    )
    await wait_for(lambda: bus.stats().actors["position"].processed == 2)
    assert book.position("X").mark == 105.0
