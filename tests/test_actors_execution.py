"""Execution: the order state machine, idempotency, reordered and impossible reports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from trading_helpers import collect, field, of_type, wait_for

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus_trading import Environment, register_schemas, unregister_schemas
from actorbus_trading.execution import ExecutionActor, Order, OrderBook, OrderState
from actorbus_trading.schemas import OrderRequest

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["schemas", "plain dicts"])
def schemas(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test with the payload schemas registered, and without."""
    if request.param == "schemas":
        register_schemas()
    try:
        yield
    finally:
        unregister_schemas()


@pytest.fixture
async def book(bus: AsyncMessageBus, schemas: None) -> AsyncIterator[OrderBook]:
    orders = OrderBook()
    env = Environment()
    await bus.spawn(ChildSpec(ExecutionActor, factory=lambda: ExecutionActor(env, orders)))
    return orders


REQUEST = {"request_id": "sig-1", "symbol": "X", "side": "buy", "quantity": 10, "price": 100.0}


async def submit(bus: AsyncMessageBus, book: OrderBook) -> Order:
    order_id = await bus.publish(MessageTypes.EXECUTION_ORDER_REQUEST, REQUEST)
    await wait_for(lambda: order_id in book.orders and book.orders[order_id].submitted)
    return book.orders[order_id]


async def report(
    bus: AsyncMessageBus, order: Order, step: str, status: str, **fields: object
) -> None:
    await bus.publish(
        MessageTypes.EXCHANGE_ORDER_STATUS,
        {"order_id": order.order_id, "exec_id": f"{order.order_id}:{step}", "status": status,
         "symbol": "X", "side": "buy", **fields},
    )  # fmt: skip


async def test_an_order_goes_new_acknowledged_partially_filled_filled(
    bus: AsyncMessageBus, book: OrderBook
) -> None:
    seen = await collect(
        bus, MessageTypes.EXECUTION_ORDER_STATUS, MessageTypes.EXCHANGE_ORDER_SUBMIT
    )
    order = await submit(bus, book)
    await report(bus, order, "ack", "acknowledged")
    await report(
        bus, order, "f0", "partially_filled", fill_quantity=4, fill_price=100.0, cum_quantity=4
    )
    await report(bus, order, "f1", "filled", fill_quantity=6, fill_price=101.0, cum_quantity=10)
    await wait_for(lambda: order.state is OrderState.FILLED)
    assert order.history == ["new", "acknowledged", "partially_filled", "filled"]
    assert order.avg_price == pytest.approx(100.6)
    await wait_for(lambda: len(of_type(seen, MessageTypes.EXECUTION_ORDER_STATUS)) == 4)
    statuses = of_type(seen, MessageTypes.EXECUTION_ORDER_STATUS)
    assert [field(s, "state") for s in statuses] == order.history
    fills = [field(s, "fill") for s in statuses if field(s, "fill") is not None]
    assert [field(f, "quantity") for f in fills] == [4, 6]
    (submitted,) = of_type(seen, MessageTypes.EXCHANGE_ORDER_SUBMIT)
    assert field(submitted, "order_id") == order.order_id


async def test_the_order_id_is_the_request_message_id_so_a_duplicate_is_one_order(
    bus: AsyncMessageBus, book: OrderBook
) -> None:
    seen = await collect(bus, MessageTypes.EXCHANGE_ORDER_SUBMIT)
    envelope = bus.envelope(MessageTypes.EXECUTION_ORDER_REQUEST, REQUEST)
    await bus.publish_envelope(envelope)
    await bus.publish_envelope(envelope)  # delivered twice: at-least-once
    await wait_for(lambda: book.duplicates == 1)
    assert list(book.orders) == [envelope.id]
    assert len(seen) == 1


async def test_duplicate_reports_apply_once(bus: AsyncMessageBus, book: OrderBook) -> None:
    order = await submit(bus, book)
    for _ in range(2):
        await report(
            bus, order, "f0", "partially_filled", fill_quantity=4, fill_price=100.0, cum_quantity=4
        )
    await wait_for(lambda: book.duplicates == 1)
    assert order.filled == 4


async def test_a_cancel_that_overtakes_its_fills_waits_for_them(
    bus: AsyncMessageBus, book: OrderBook
) -> None:
    order = await submit(bus, book)
    await report(bus, order, "cxl", "cancelled", cum_quantity=4)
    await wait_for(lambda: order.cancel_at == 4)
    assert order.state is OrderState.NEW
    await report(
        bus, order, "f0", "partially_filled", fill_quantity=4, fill_price=100.0, cum_quantity=4
    )
    await wait_for(lambda: order.state is OrderState.CANCELLED)
    assert order.filled == 4
    assert order.history == ["new", "cancelled"]


async def test_a_late_acknowledgement_changes_nothing(
    bus: AsyncMessageBus, book: OrderBook
) -> None:
    order = await submit(bus, book)
    await report(bus, order, "f0", "filled", fill_quantity=10, fill_price=100.0, cum_quantity=10)
    await report(bus, order, "ack", "acknowledged")
    await wait_for(lambda: book.late == 1)
    assert order.history == ["new", "filled"]


async def test_impossible_reports_are_refused_with_execution_error(
    bus: AsyncMessageBus, book: OrderBook
) -> None:
    errors = await collect(bus, MessageTypes.EXECUTION_ERROR)
    order = await submit(bus, book)
    await report(
        bus, order, "f0", "partially_filled", fill_quantity=11, fill_price=1.0, cum_quantity=11
    )
    await report(bus, order, "rej", "rejected", reason="no")
    await report(bus, order, "f1", "filled", fill_quantity=1, fill_price=1.0, cum_quantity=1)
    await bus.publish(
        MessageTypes.EXCHANGE_ORDER_STATUS,
        {
            "order_id": "nope",
            "exec_id": "nope:ack",
            "status": "acknowledged",
            "symbol": "X",
            "side": "buy",
        },
    )
    await wait_for(lambda: len(errors) == 3)
    reasons = [field(data, "error") for _, data in errors]
    assert reasons[0].startswith("overfill")
    assert reasons[1] == "fill on a rejected order"
    assert reasons[2] == "unknown order"
    assert order.state is OrderState.REJECTED
    assert order.filled == 0


def test_the_machine_refuses_a_move_out_of_a_terminal_state() -> None:
    order = Order("o", OrderRequest(request_id="r", symbol="X", side="buy", quantity=1, price=1.0))
    order.move(OrderState.REJECTED)
    with pytest.raises(ValueError, match="rejected -> filled"):
        order.move(OrderState.FILLED)
