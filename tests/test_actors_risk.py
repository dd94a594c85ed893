"""Risk: each pre-trade check, and exposure learnt from order statuses."""

from __future__ import annotations

import pytest
from trading_helpers import collect, field, of_type, wait_for

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus_trading import Environment
from actorbus_trading.clock import FeedClock
from actorbus_trading.risk import RiskActor, RiskLimits, RiskState
from actorbus_trading.schemas import OrderStatus, Signal, Tick

pytestmark = pytest.mark.anyio


async def start(
    bus: AsyncMessageBus, limits: RiskLimits
) -> tuple[RiskState, list[tuple[str, object]]]:
    state = RiskState()
    env = Environment()
    await bus.spawn(ChildSpec(RiskActor, factory=lambda: RiskActor(env, state, limits)))
    seen = await collect(
        bus,
        MessageTypes.EXECUTION_ORDER_REQUEST,
        MessageTypes.RISK_LIMIT_BREACH,
        MessageTypes.RISK_EXPOSURE_UPDATE,
    )
    await bus.publish(
        MessageTypes.MARKET_DATA_UPDATE, Tick(symbol="X", price=100.0, bid=100, ask=100, seq=1)
    )
    await wait_for(lambda: "X" in state.last_price)
    return state, seen


def signal(side: str = "buy", quantity: int = 10, price: float = 100.0) -> Signal:
    return Signal(symbol="X", side=side, quantity=quantity, price=price)  # type: ignore[arg-type]


async def decisions(bus: AsyncMessageBus, state: RiskState, count: int) -> None:
    await wait_for(lambda: len(state.decided) == count)


async def test_a_signal_within_limits_becomes_an_order_request(bus: AsyncMessageBus) -> None:
    state, seen = await start(bus, RiskLimits())
    signal_id = await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal())
    await decisions(bus, state, 1)
    await wait_for(lambda: len(of_type(seen, MessageTypes.EXECUTION_ORDER_REQUEST)) == 1)
    (request,) = of_type(seen, MessageTypes.EXECUTION_ORDER_REQUEST)
    assert field(request, "request_id") == signal_id
    assert field(request, "quantity") == 10
    await wait_for(lambda: len(of_type(seen, MessageTypes.RISK_EXPOSURE_UPDATE)) == 1)
    (exposure,) = of_type(seen, MessageTypes.RISK_EXPOSURE_UPDATE)
    assert field(exposure, "gross_notional") == pytest.approx(1000.0)
    assert field(exposure, "open_orders") == 1


@pytest.mark.parametrize(
    ("limits", "signals", "rule"),
    [
        (RiskLimits(price_band=0.01), [signal(price=102.0)], "price_band"),
        (
            RiskLimits(max_orders_per_second=0.01, order_burst=2),
            [signal(quantity=1)] * 3,
            "max_order_rate",
        ),
        (RiskLimits(max_position_notional=1500.0), [signal(), signal()], "max_position"),
        (RiskLimits(max_gross_notional=500.0), [signal()], "max_notional"),
    ],
)
async def test_each_limit_refuses_with_its_rule(
    bus: AsyncMessageBus, limits: RiskLimits, signals: list[Signal], rule: str
) -> None:
    state, seen = await start(bus, limits)
    for item in signals:
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, item)
    await decisions(bus, state, len(signals))
    await wait_for(lambda: bool(of_type(seen, MessageTypes.RISK_LIMIT_BREACH)))
    breaches = of_type(seen, MessageTypes.RISK_LIMIT_BREACH)
    assert [field(b, "rule") for b in breaches] == [rule]
    assert state.breaches == {rule: 1}


async def test_fills_and_terminal_orders_move_the_exposure(bus: AsyncMessageBus) -> None:
    state, _seen = await start(bus, RiskLimits(max_position_notional=2500.0))
    signal_id = await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal(quantity=20))
    await decisions(bus, state, 1)
    assert state.projected() == {"X": 20}
    base = {"order_id": "o1", "request_id": signal_id, "symbol": "X", "side": "buy", "quantity": 20}
    await bus.publish(MessageTypes.EXECUTION_ORDER_STATUS, OrderStatus(**base, state="new"))  # type: ignore[arg-type]
    await bus.publish(
        MessageTypes.EXECUTION_ORDER_STATUS,
        OrderStatus(**base, state="cancelled", filled_quantity=5),  # type: ignore[arg-type]
    )
    await wait_for(lambda: state.orders.get("o1") is not None and state.orders["o1"].terminal)
    assert state.pending == {}
    assert state.projected() == {"X": 5}
    assert state.filled_position("X") == 5
    # 5 filled + 20 more = 25 * 100 = 2500: at the limit, allowed; 26 would not be
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal(quantity=20))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal(quantity=1))
    await decisions(bus, state, 3)
    assert state.breaches == {"max_position": 1}


async def test_a_redelivered_signal_is_decided_once(bus: AsyncMessageBus) -> None:
    _state, seen = await start(bus, RiskLimits())
    envelope = bus.envelope(MessageTypes.STRATEGY_SIGNAL, signal())
    await bus.publish_envelope(envelope)
    await bus.publish_envelope(envelope)
    await wait_for(lambda: bus.stats().actors["risk"].processed == 3)  # tick + 2
    assert len(of_type(seen, MessageTypes.EXECUTION_ORDER_REQUEST)) == 1


def test_running_totals_match_a_recount_whatever_order_statuses_arrive_in() -> None:
    import random

    from actorbus_trading.risk import _Working

    state = RiskState()
    plan = random.Random(11)
    truth: dict[str, tuple[str, str, int, int, bool]] = {}
    for step in range(500):
        order_id = f"o{plan.randrange(40)}"
        if order_id not in truth:
            side, quantity = plan.choice(["buy", "sell"]), plan.randint(1, 9)
            truth[order_id] = (plan.choice("AB"), side, quantity, 0, False)
            state.add(order_id, _Working(truth[order_id][0], side, quantity))
        symbol, side, quantity, filled, terminal = truth[order_id]
        new_filled = plan.randint(0, quantity)  # may be stale (lower): ignored
        new_terminal = plan.random() < 0.2
        state.update(state.orders[order_id], new_filled, new_terminal)
        truth[order_id] = (
            symbol,
            side,
            quantity,
            max(filled, new_filled),
            terminal or new_terminal,
        )
        expected: dict[str, int] = {}
        for symbol_, side_, quantity_, filled_, terminal_ in truth.values():
            signed = 1 if side_ == "buy" else -1
            exposure = filled_ if terminal_ else quantity_
            expected[symbol_] = expected.get(symbol_, 0) + signed * exposure
        projected = {s: q for s, q in state.projected().items() if q or s in expected}
        assert projected == expected, step
        assert state.open_orders() == sum(1 for t in truth.values() if not t[4])


async def test_the_order_rate_is_a_token_bucket_on_the_actors_clock(bus: AsyncMessageBus) -> None:
    clock = FeedClock(1000.0)
    state = RiskState()
    env = Environment(clock=clock)
    limits = RiskLimits(max_orders_per_second=2.0, order_burst=3)
    await bus.spawn(ChildSpec(RiskActor, factory=lambda: RiskActor(env, state, limits)))
    for count in range(1, 5):  # a burst of 3 passes, the 4th is refused
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal(quantity=1))
        await decisions(bus, state, count)
    assert list(state.decided.values()) == ["approved"] * 3 + ["max_order_rate"]
    clock.advance(1000.5)  # half a second at 2/s: one more token, not a whole new second
    for count in range(5, 7):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, signal(quantity=1))
        await decisions(bus, state, count)
    assert list(state.decided.values())[4:] == ["approved", "max_order_rate"]
