"""Strategy: the moving-average crossover and the signals it sends."""

from __future__ import annotations

import pytest
from trading_helpers import collect, field, wait_for

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus_trading import Environment
from actorbus_trading.schemas import Tick
from actorbus_trading.strategy import CrossoverParams, MovingAverageCrossover, StrategyActor


def test_crossover_signals_when_the_fast_average_crosses() -> None:
    crossover = MovingAverageCrossover(2, 4)
    prices = [10, 10, 10, 9, 8, 9, 12, 13, 9, 5]
    signals = [crossover.update(float(p)) for p in prices]
    assert signals[:4] == [None, None, None, None]  # warming up, then below: no cross yet
    assert "buy" in signals
    assert signals.index("buy") < len(signals) - 1
    assert signals[-1] == "sell" or "sell" in signals[signals.index("buy") :]


def test_crossover_averages_are_exact() -> None:
    crossover = MovingAverageCrossover(3, 5)
    for price in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        crossover.update(price)
    assert crossover._fast_sum == pytest.approx(4.0 + 5.0 + 6.0)
    assert crossover._slow_sum == pytest.approx(2.0 + 3.0 + 4.0 + 5.0 + 6.0)


def test_windows_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="fast < slow"):
        MovingAverageCrossover(5, 5)


@pytest.mark.anyio
async def test_actor_signals_a_lot_on_a_crossover(bus: AsyncMessageBus) -> None:
    params = CrossoverParams(fast=2, slow=4, lot_notional=1000.0, min_interval=0.0)
    env = Environment()
    await bus.spawn(ChildSpec(StrategyActor, factory=lambda: StrategyActor(env, params)))
    seen = await collect(bus, MessageTypes.STRATEGY_SIGNAL)
    for seq, price in enumerate([10, 10, 10, 9, 8, 9, 12, 13], start=1):
        tick = Tick(symbol="X", price=float(price), bid=price, ask=price, seq=seq)
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, tick)
    await wait_for(lambda: bool(seen))
    signal = seen[0][1]
    assert field(signal, "side") == "buy"
    assert field(signal, "quantity") == 1000 // field(signal, "price")
    assert env.published[MessageTypes.STRATEGY_SIGNAL] == len(seen)
