"""Execution: from approved requests to exchange orders, and each order's state machine.

An EXECUTION_ORDER_REQUEST becomes an order whose id is the request message's
id, so a request delivered twice is one order. The actor publishes the order's
status (``new``) and sends EXCHANGE_ORDER_SUBMIT; then each EXCHANGE_ORDER_STATUS
report moves the order along::

    new ──> acknowledged ──> partially_filled ──> filled
     │           │                 │
     │           │                 └──> cancelled  (the rest of the order)
     │           ├──> filled / cancelled / rejected
     └──> rejected / partially_filled / filled / cancelled   (a late acknowledgement)

``filled``, ``cancelled`` and ``rejected`` are terminal. Reports are applied
once each (by their ``exec_id``), and in whatever order they arrive: fills add
up to the filled quantity (the state follows from it: partially filled, then
filled); an acknowledgement after a fill is noted and changes nothing; a
cancellation arriving before some of the fills it reports (a reordering caused
by a dead-lettered report) is held until those fills are in. A report that
would break the machine (an overfill, a fill on a rejected order, an unknown
order) is refused with EXECUTION_ERROR and counted.

Each change is published as EXECUTION_ORDER_STATUS, carrying the fill that
caused it: the position keeper books fills from these.

Orders live in an :class:`OrderBook` that outlives a restart of the actor.
"""

from __future__ import annotations

from enum import StrEnum

from actorbus import Envelope, MessageTypes, QueueOptions, handles

from .base import Environment, TradingActor
from .schemas import ExchangeReport, ExchangeSubmit, Fill, OrderRequest, OrderStatus, as_struct

__all__ = ["TRANSITIONS", "ExecutionActor", "Order", "OrderBook", "OrderState"]


class OrderState(StrEnum):
    """The states of an order."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        """Whether nothing more can happen to the order."""
        return self in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED)


S = OrderState
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.NEW: frozenset({S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.ACKNOWLEDGED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}
"""Allowed moves: state -> states it may go to (``partially_filled`` to itself: another fill)."""


class Order:
    """One order and its history."""

    __slots__ = (
        "avg_price",
        "cancel_at",
        "exec_ids",
        "filled",
        "fills",
        "history",
        "order_id",
        "origin",
        "price",
        "quantity",
        "reason",
        "request_id",
        "side",
        "state",
        "submitted",
        "symbol",
    )

    def __init__(self, order_id: str, request: OrderRequest) -> None:
        self.order_id = order_id
        self.request_id = request.request_id
        self.symbol = request.symbol
        self.side = request.side
        self.quantity = request.quantity
        self.price = request.price
        self.origin = request.origin
        self.state = OrderState.NEW
        self.history: list[str] = [OrderState.NEW.value]
        """Every state the order went through, in order."""
        self.filled = 0
        self.avg_price = 0.0
        self.fills: list[Fill] = []
        self.exec_ids: set[str] = set()
        self.submitted = False
        """Whether EXCHANGE_ORDER_SUBMIT went out."""
        self.cancel_at: int | None = None
        """A cancellation waiting for this filled quantity before it applies."""
        self.reason = ""

    def move(self, state: OrderState) -> None:
        """Go to ``state``; raise ``ValueError`` for a move the machine does not allow."""
        if state not in TRANSITIONS[self.state]:
            raise ValueError(f"order {self.order_id}: {self.state} -> {state} is not allowed")
        self.state = state
        self.history.append(state.value)

    def status(self, fill: Fill | None = None) -> OrderStatus:
        """The order as an EXECUTION_ORDER_STATUS payload."""
        return OrderStatus(
            order_id=self.order_id,
            request_id=self.request_id,
            symbol=self.symbol,
            side=self.side,
            quantity=self.quantity,
            state=self.state.value,
            filled_quantity=self.filled,
            avg_price=self.avg_price,
            fill=fill,
            reason=self.reason,
        )


class OrderBook:
    """Every order, kept across restarts of the execution actor."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        """Orders by id, in creation order."""
        self.duplicates = 0
        """Requests and reports delivered more than once (ignored)."""
        self.refused = 0
        """Reports refused as impossible (EXECUTION_ERROR)."""
        self.late = 0
        """Reports that arrived out of order but were applied correctly."""

    def by_state(self) -> dict[str, int]:
        """Number of orders per state."""
        counts: dict[str, int] = {}
        for order in self.orders.values():
            counts[order.state.value] = counts.get(order.state.value, 0) + 1
        return counts


class ExecutionActor(TradingActor):
    """Sends approved orders to the exchange and tracks them; see the module documentation."""

    name = "execution"
    queue_options = QueueOptions(single_active=True)  # order matters: see actors/system.py

    def __init__(self, env: Environment, book: OrderBook) -> None:
        super().__init__(env)
        self.book = book
        """The orders (outlive this instance)."""

    @handles(MessageTypes.EXECUTION_ORDER_REQUEST)
    async def on_order_request(self, msg: Envelope) -> None:
        """Create the order (once per request message) and submit it to the exchange."""
        self.fault_point()
        order = self.book.orders.get(msg.id)
        if order is None:
            order = self.book.orders[msg.id] = Order(msg.id, as_struct(msg.data, OrderRequest))
            await self.publish(MessageTypes.EXECUTION_ORDER_STATUS, order.status())
        elif order.submitted:
            self.book.duplicates += 1
            return
        await self.publish(
            MessageTypes.EXCHANGE_ORDER_SUBMIT,
            ExchangeSubmit(
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                price=order.price,
            ),
        )
        order.submitted = True

    @handles(MessageTypes.EXCHANGE_ORDER_STATUS)
    async def on_exchange_report(self, msg: Envelope) -> None:
        """Apply one exchange report to its order and publish the result."""
        self.fault_point()
        report = as_struct(msg.data, ExchangeReport)
        order = self.book.orders.get(report.order_id)
        if order is None:
            await self._refuse(report, "unknown order")
            return
        if report.exec_id in order.exec_ids:
            self.book.duplicates += 1
            return
        fill: Fill | None = None
        before = order.state
        status = report.status
        if status == "acknowledged":
            if order.state is OrderState.NEW:
                order.move(OrderState.ACKNOWLEDGED)
            else:
                self.book.late += 1
        elif status in ("partially_filled", "filled"):
            if order.state in (OrderState.REJECTED, OrderState.CANCELLED, OrderState.FILLED):
                await self._refuse(report, f"fill on a {order.state} order")
                return
            if report.fill_quantity <= 0 or order.filled + report.fill_quantity > order.quantity:
                await self._refuse(
                    report,
                    f"overfill: {order.filled} + {report.fill_quantity} > {order.quantity}",
                )
                return
            fill = Fill(
                exec_id=report.exec_id,
                symbol=order.symbol,
                side=order.side,
                quantity=report.fill_quantity,
                price=report.fill_price,
            )
            order.avg_price = (
                order.avg_price * order.filled + report.fill_price * report.fill_quantity
            ) / (order.filled + report.fill_quantity)
            order.filled += report.fill_quantity
            order.fills.append(fill)
            if order.filled == order.quantity:
                order.move(OrderState.FILLED)
            elif order.cancel_at is not None and order.filled >= order.cancel_at:
                order.move(OrderState.CANCELLED)
            else:
                order.move(OrderState.PARTIALLY_FILLED)
        elif status == "cancelled":
            if order.state.terminal:
                await self._refuse(report, f"cancel of a {order.state} order")
                return
            order.reason = report.reason
            if order.filled >= report.cum_quantity:
                order.move(OrderState.CANCELLED)
            else:
                order.cancel_at = report.cum_quantity  # fills still on their way
                self.book.late += 1
        elif status == "rejected":
            if order.filled or order.state.terminal:
                await self._refuse(report, f"reject of a {order.state} order")
                return
            order.reason = report.reason
            order.move(OrderState.REJECTED)
        order.exec_ids.add(report.exec_id)
        if order.state is not before or fill is not None:
            await self.publish(MessageTypes.EXECUTION_ORDER_STATUS, order.status(fill))

    async def _refuse(self, report: ExchangeReport, why: str) -> None:
        self.book.refused += 1
        await self.publish(
            MessageTypes.EXECUTION_ERROR,
            {"order_id": report.order_id, "exec_id": report.exec_id, "error": why},
        )
