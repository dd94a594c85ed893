"""Strategy: a moving-average crossover per symbol.

For each symbol the actor keeps a fast and a slow simple moving average of the
tick prices. When the fast average crosses above the slow one it signals a buy,
when it crosses below a sell, of one lot (``lot_notional`` worth at the tick's
price, at least 1 unit), at most once per ``min_interval`` seconds per symbol
(on the system's clock: the feed's time, see :mod:`actorbus_trading.clock`).

The averages are soft state: a restarted strategy starts them afresh and
signals again once ``slow`` ticks have arrived. The strategy takes every tick
(no conflation: an average over skipped ticks would be another average), so
its mailbox is what paces an unthrottled feed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from actorbus import Envelope, MessageTypes, handles

from .base import Environment, TradingActor
from .schemas import Signal, Tick, as_struct

__all__ = ["CrossoverParams", "MovingAverageCrossover", "StrategyActor"]


@dataclass(frozen=True)
class CrossoverParams:
    """Parameters of the moving-average crossover."""

    fast: int = 10
    """Ticks in the fast average."""
    slow: int = 40
    """Ticks in the slow average."""
    lot_notional: float = 50_000.0
    """Notional of one signal's quantity at the reference price."""
    min_interval: float = 0.25
    """Shortest time between two signals of one symbol, in seconds of the system's clock."""


class MovingAverageCrossover:
    """The crossover of one symbol: feed it prices, it tells when the averages cross."""

    def __init__(self, fast: int, slow: int) -> None:
        if not 0 < fast < slow:
            raise ValueError(f"need 0 < fast < slow, got fast={fast}, slow={slow}")
        self.fast, self.slow = fast, slow
        self._prices: deque[float] = deque(maxlen=slow)
        self._fast_sum = 0.0
        self._slow_sum = 0.0
        self._above: bool | None = None

    def update(self, price: float) -> str | None:
        """Add a price; return ``"buy"``/``"sell"`` when the fast average just crossed."""
        prices = self._prices
        if len(prices) == self.slow:
            self._slow_sum -= prices[0]
        if len(prices) >= self.fast:
            self._fast_sum -= prices[-self.fast]
        prices.append(price)
        self._slow_sum += price
        self._fast_sum += price
        if len(prices) < self.slow:
            return None
        fast_avg = self._fast_sum / self.fast
        slow_avg = self._slow_sum / self.slow
        if fast_avg == slow_avg:
            return None
        above = fast_avg > slow_avg
        crossed = self._above is not None and above != self._above
        self._above = above
        if not crossed:
            return None
        return "buy" if above else "sell"


class StrategyActor(TradingActor):
    """Turns ticks into STRATEGY_SIGNAL by the moving-average crossover."""

    name = "strategy"
    mailbox_size = 2000

    def __init__(self, env: Environment, params: CrossoverParams | None = None) -> None:
        super().__init__(env)
        self.params = params or CrossoverParams()
        """Crossover parameters."""
        self._crossovers: dict[str, MovingAverageCrossover] = {}
        self._last_seq: dict[str, int] = {}
        self._last_signal: dict[str, float] = {}

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        """Update the symbol's averages; signal on a crossover."""
        self.fault_point()
        tick = as_struct(msg.data, Tick)
        symbol = tick.symbol
        if tick.seq and tick.seq <= self._last_seq.get(symbol, 0):
            return  # an old tick (a replayed dead letter): the averages have moved on
        self._last_seq[symbol] = tick.seq
        crossover = self._crossovers.get(symbol)
        if crossover is None:
            crossover = self._crossovers[symbol] = MovingAverageCrossover(
                self.params.fast, self.params.slow
            )
        side = crossover.update(tick.price)
        if side is None:
            return
        now = self.clock.monotonic()
        if now - self._last_signal.get(symbol, -1e9) < self.params.min_interval:
            return
        self._last_signal[symbol] = now
        await self.publish(
            MessageTypes.STRATEGY_SIGNAL,
            Signal(
                symbol=symbol,
                side="buy" if side == "buy" else "sell",
                quantity=max(1, int(self.params.lot_notional / tick.price)),
                price=tick.price,
                strategy=f"ma_crossover({self.params.fast},{self.params.slow})",
                reason=f"fast average crossed {'above' if side == 'buy' else 'below'} slow",
            ),
        )
