"""The trading system: its configuration, its supervisor tree, and what it reports.

:class:`TradingSystem` holds everything one process of the system keeps: the
shared :class:`~actorbus_trading.base.Environment` and the stores of the stateful actors
(feed and quotes, risk's view, the order book, the exchange's handled orders,
the positions). The stores outlive actor instances, so a restarted actor
continues where its predecessor stopped; in a production system they would be
journals on disk, here they are objects in the process.

The supervisor tree (:meth:`TradingSystem.tree`)::

    trading              one_for_one, 3 restarts in 60 s   (gives up: SYSTEM_ERROR, run fails)
    ├── book             one_for_one, 10 restarts in 10 s
    │   ├── risk         pre-trade checks
    │   ├── execution    order state machines
    │   ├── exchange     paper venue
    │   └── position     positions and P&L
    └── market           one_for_one, 10 restarts in 10 s
        ├── strategy     moving-average crossover
        └── market_data  the feed; quotes on request

Children start in order and ``spawn`` returns once all have started, so the
consumers come first and the feed last: no tick is published before every
queue that wants it is bound.

Which actors restart together, and why: none of them. Every actor talks to the
others only through messages that are idempotent where it matters (orders by
request message id, exchange reports and fills by ``exec_id``, ticks by
sequence number), and keeps what must survive in a store, so a crashed actor
can be replaced alone without the others noticing more than a pause. Restarting
a healthy actor with it would only cut its in-flight work short. ``one_for_all``
over the order path (risk, execution, exchange) was the alternative: it fits
actors that share in-memory state about an order, which these do not.

What the grouping does decide is the restart budget. The market side holds
only soft state (quotes, moving averages), the book side holds the orders and
positions; each has its own intensity, so a crash loop in one side is stopped
there: its supervisor gives up, the root restarts that side with fresh
instances over the same stores, and if that happens a fourth time within a
minute the root gives up too, the bus publishes SYSTEM_ERROR, and the run fails
instead of trading on.

Execution and position are ``single_active`` actors. Their messages must be
handled in order: an order's status follows its request and fills follow
acceptance, and a position books fills one after the other (a reordered fill
and mark gives a wrong P&L). Two processes consuming one queue in turn would
interleave and reorder them, so when the book's side runs in several
processes (``--only``) one instance of each handles and the others stand by,
taking over in order if it dies. The stateless or idempotent actors (risk
checks, strategy, exchange reports by ``exec_id``) may compete instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actorbus import REAL_CLOCK, Actor, ChildSpec, MessageTypes, Supervisor

from .base import Chaos, Environment
from .clock import FeedClock
from .exchange import ExchangeActor, ExchangeParams, ExchangeState
from .execution import ExecutionActor, OrderBook
from .feeds import DEFAULT_PRICES, UNPACED_STEP, CsvFeed, Feed, SimulatedFeed
from .market_data import MarketDataActor, MarketState
from .position import PositionActor, PositionBook
from .risk import RiskActor, RiskLimits, RiskState
from .strategy import CrossoverParams, StrategyActor

__all__ = ["ACTOR_CLASSES", "ACTOR_NAMES", "TradingConfig", "TradingSystem"]

ACTOR_CLASSES: dict[str, type[Actor]] = {
    "market_data": MarketDataActor,
    "strategy": StrategyActor,
    "risk": RiskActor,
    "execution": ExecutionActor,
    "exchange": ExchangeActor,
    "position": PositionActor,
}
"""The actors of the system by name, in start order."""

ACTOR_NAMES: tuple[str, ...] = tuple(ACTOR_CLASSES)


@dataclass
class TradingConfig:
    """Everything that shapes a run of the trading system."""

    symbols: tuple[str, ...] = tuple(DEFAULT_PRICES)
    """Symbols traded (and simulated, or kept from a CSV feed)."""
    seed: int = 1
    """Seed of the simulated feed, the exchange's plans and the chaos."""
    rate: float = 5_000.0
    """Simulated ticks per second in all; 0 for as fast as the system takes them."""
    prices: dict[str, float] = field(default_factory=dict)
    """Start prices of simulated symbols beyond
    :data:`~actorbus_trading.feeds.DEFAULT_PRICES`."""
    csv_path: str | None = None
    """Replay this CSV file instead of simulating."""
    speed: float = 0.0
    """How fast a CSV file's timestamps replay (1: real time); 0 for as fast as possible."""
    duration: float | None = 10.0
    """Seconds of feed time to run (``None``: to the end of the feed)."""
    chaos: float = 0.0
    """Probability that a handler call fails (see :class:`~actorbus_trading.base.Chaos`)."""
    crash_interval: float = 5.0
    """Shortest time between two injected crashes of one actor."""
    strategy: CrossoverParams = field(default_factory=CrossoverParams)
    limits: RiskLimits = field(default_factory=RiskLimits)
    exchange: ExchangeParams | None = None
    """Exchange behaviour; default: :class:`ExchangeParams` with the run's seed."""


class TradingSystem:
    """One process's share of the trading system; see the module documentation."""

    def __init__(self, config: TradingConfig | None = None, *, feed: Feed | None = None) -> None:
        self.config = config = config or TradingConfig()
        """The configuration."""
        self.env = Environment(
            Chaos(config.chaos, seed=config.seed, crash_interval=config.crash_interval)
        )
        """Chaos and publish counters, shared by the actors."""
        self._feed = feed
        csv = config.csv_path is not None or feed is not None
        self.market = MarketState(
            None,
            speed=config.speed if csv else (1.0 if config.rate > 0 else 0.0),
            duration=config.duration,
            clock=FeedClock(),
        )
        """Feed, latest quotes and the feed's clock (the feed is opened when market data is
        placed here; then every actor here runs on the feed's time)."""
        self.risk = RiskState()
        self.orders = OrderBook()
        self.venue = ExchangeState()
        self.positions = PositionBook()
        self.placed: tuple[str, ...] = ACTOR_NAMES
        """Names of the actors running in this process."""

    def open_feed(self) -> Feed:
        """Open the configured feed (raises ``FeedError`` for an unusable CSV file)."""
        if self._feed is not None:
            return self._feed
        config = self.config
        if config.csv_path is not None:
            return CsvFeed(config.csv_path, symbols=config.symbols or None)
        step = 1.0 / config.rate if config.rate > 0 else UNPACED_STEP
        return SimulatedFeed(config.symbols, seed=config.seed, prices=config.prices, step=step)

    def tree(self, only: Iterable[str] | None = None) -> Supervisor:
        """Build the supervisor tree (a new one per call); ``only`` names the actors placed here.

        Raises ``ValueError`` for an unknown actor name, ``FeedError`` for a bad feed.
        """
        if only is not None:
            names = tuple(only)
            unknown = sorted(set(names) - set(ACTOR_NAMES))
            if unknown:
                raise ValueError(
                    f"unknown actor(s) {', '.join(unknown)}: choose from {', '.join(ACTOR_NAMES)}"
                )
            self.placed = tuple(name for name in ACTOR_NAMES if name in names)
        if "market_data" in self.placed and self.market.feed is None:
            self.market.feed = self.open_feed()
        self.env.clock = self.market.clock if "market_data" in self.placed else REAL_CLOCK
        env, config = self.env, self.config
        exchange_params = config.exchange or ExchangeParams(seed=config.seed)
        market = Supervisor(
            [
                ChildSpec(StrategyActor, factory=lambda: StrategyActor(env, config.strategy)),
                ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, self.market)),
            ],
            strategy="one_for_one",
            max_restarts=10,
            within=10.0,
            name="market",
        )
        book = Supervisor(
            [
                ChildSpec(RiskActor, factory=lambda: RiskActor(env, self.risk, config.limits)),
                ChildSpec(ExecutionActor, factory=lambda: ExecutionActor(env, self.orders)),
                ChildSpec(
                    ExchangeActor, factory=lambda: ExchangeActor(env, self.venue, exchange_params)
                ),
                ChildSpec(PositionActor, factory=lambda: PositionActor(env, self.positions)),
            ],
            strategy="one_for_one",
            max_restarts=10,
            within=10.0,
            name="book",
        )
        return Supervisor(
            [book, market], strategy="one_for_one", max_restarts=3, within=60.0, name="trading"
        )

    # -- reporting --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Running totals for the live view."""
        published = self.env.published
        return {
            "ticks": self.market.ticks,
            "signals": published[MessageTypes.STRATEGY_SIGNAL],
            "orders": published[MessageTypes.EXECUTION_ORDER_REQUEST],
            "breaches": published[MessageTypes.RISK_LIMIT_BREACH],
            "fills": len(self.positions.fills)
            if "position" in self.placed
            else sum(len(o.fills) for o in self.orders.orders.values()),
        }

    def positions_report(self) -> dict[str, dict[str, Any]]:
        """Positions and P&L per symbol."""
        return {
            symbol: {
                "quantity": p.quantity,
                "avg_price": p.avg_price,
                "mark": p.mark,
                "realised_pnl": p.realised,
                "unrealised_pnl": p.unrealised,
                "cash": p.cash,
                "fills": p.fills,
            }
            for symbol, p in sorted(self.positions.positions.items())
            if p.fills or p.quantity
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the audit and the summary need from this process, JSON-ready."""
        placed = set(self.placed)
        report: dict[str, Any] = {
            "placed": list(self.placed),
            "published": dict(sorted(self.env.published.items())),
            "counts": self.counts(),
            "chaos": {
                "rate": self.env.chaos.rate,
                "injected": self.env.chaos.injected,
                "crashes": self.env.chaos.crashes,
            },
            "incarnations": dict(self.env.incarnations),
        }
        if "market_data" in placed:
            report["feed"] = {
                "ticks": self.market.ticks,
                "exhausted": self.market.exhausted,
                "error": self.market.error,
            }
        if "risk" in placed:
            report["risk"] = {
                "approved": self.risk.approved,
                "breaches": dict(sorted(self.risk.breaches.items())),
            }
        if "execution" in placed:
            report["orders"] = {
                "total": len(self.orders.orders),
                "by_state": dict(sorted(self.orders.by_state().items())),
                "duplicates": self.orders.duplicates,
                "refused": self.orders.refused,
                "late_reports": self.orders.late,
                "list": [
                    {
                        "order_id": o.order_id,
                        "origin": o.origin,
                        "symbol": o.symbol,
                        "side": o.side,
                        "quantity": o.quantity,
                        "filled": o.filled,
                        "avg_price": o.avg_price,
                        "state": o.state.value,
                        "history": o.history,
                        "fills": [[f.exec_id, f.quantity, f.price] for f in o.fills],
                    }
                    for o in self.orders.orders.values()
                ],
            }
        if "exchange" in placed:
            report["exchange"] = {
                "orders": len(self.venue.done),
                "fills": self.venue.fills,
                "rejected": self.venue.rejected,
                "cancelled": self.venue.cancelled,
            }
        if "position" in placed:
            positions = self.positions_report()
            report["positions"] = positions
            report["pnl"] = {
                "realised": sum(p["realised_pnl"] for p in positions.values()),
                "unrealised": sum(p["unrealised_pnl"] for p in positions.values()),
            }
            report["pnl"]["total"] = report["pnl"]["realised"] + report["pnl"]["unrealised"]
            report["booked_fills"] = [
                [f.exec_id, f.symbol, f.side, f.quantity, f.price]
                for f in self.positions.fills.values()
            ]
        return report


def handled_types(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The message types each named actor handles."""
    return {name: ACTOR_CLASSES[name].handled_types() for name in names}
