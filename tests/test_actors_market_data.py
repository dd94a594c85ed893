"""Market data: the seeded feed, CSV replay, latest quotes by request/reply, conflation."""

from __future__ import annotations

from pathlib import Path

import pytest
from trading_helpers import collect, field, wait_for

from actorbus import AsyncMessageBus, ChildSpec, Conflate, MessageTypes
from actorbus_trading import Environment
from actorbus_trading.exchange import ExchangeActor
from actorbus_trading.feeds import SIM_START, CsvFeed, FeedError, SimulatedFeed
from actorbus_trading.market_data import MarketDataActor, MarketState
from actorbus_trading.position import PositionActor
from actorbus_trading.risk import RiskActor
from actorbus_trading.strategy import StrategyActor

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
PRICES = {"A": 100.0, "B": 20.0}


def take(feed: SimulatedFeed | CsvFeed, count: int) -> list[object]:
    ticks = []
    for _ in range(count):
        tick = feed.next_tick()
        if tick is None:
            break
        ticks.append(tick)
    return ticks


def test_the_same_seed_gives_the_same_prices() -> None:
    first = [t.price for t in take(SimulatedFeed(["A", "B"], seed=5, prices=PRICES), 50)]  # type: ignore[attr-defined]
    again = [t.price for t in take(SimulatedFeed(["A", "B"], seed=5, prices=PRICES), 50)]  # type: ignore[attr-defined]
    other = [t.price for t in take(SimulatedFeed(["A", "B"], seed=6, prices=PRICES), 50)]  # type: ignore[attr-defined]
    assert first == again
    assert first != other


def test_simulated_ticks_are_stamped_by_the_feeds_own_time() -> None:
    ticks = take(SimulatedFeed(["A", "B"], seed=1, prices=PRICES, step=0.5), 3)
    assert [field(t, "ts") - SIM_START for t in ticks] == [0.0, 0.5, 1.0]


def test_an_unknown_simulated_symbol_needs_a_start_price() -> None:
    with pytest.raises(FeedError, match="no start price for DOGE"):
        SimulatedFeed(["BTC/USDT", "DOGE"])


@pytest.mark.anyio
async def test_the_feed_moves_the_clock_and_stops_at_its_duration(bus: AsyncMessageBus) -> None:
    market = MarketState(SimulatedFeed(["A"], prices=PRICES, step=0.25), duration=2.0)
    env = Environment(clock=market.clock)
    await bus.spawn(ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, market)))
    await wait_for(lambda: market.exhausted)
    assert market.ended_by == "duration"
    assert market.ticks == 8  # 0, 0.25, ... 1.75: the tick at 2.0 is past the end
    assert market.clock.time() == SIM_START + 2.0
    assert market.clock.released


def test_simulated_ticks_take_turns_and_count_per_symbol() -> None:
    ticks = take(SimulatedFeed(["A", "B"], seed=1, prices=PRICES), 4)
    assert [field(t, "symbol") for t in ticks] == ["A", "B", "A", "B"]
    assert [field(t, "seq") for t in ticks] == [1, 1, 2, 2]
    for tick in ticks:
        assert field(tick, "bid") < field(tick, "price") < field(tick, "ask")


def test_csv_ticks_replay_in_order_and_filter_symbols() -> None:
    ticks = take(CsvFeed(DATA / "ticks.csv", symbols=["ETH/USDT"]), 10_000)
    assert len(ticks) == 600
    assert {field(t, "symbol") for t in ticks} == {"ETH/USDT"}
    assert [field(t, "seq") for t in ticks[:3]] == [1, 2, 3]


def test_csv_bars_give_one_tick_per_bar_at_the_close() -> None:
    feed = CsvFeed(DATA / "bars.csv")
    ticks = take(feed, 10_000)
    assert len(ticks) == 200
    first_close = float((DATA / "bars.csv").read_text().splitlines()[1].split(",")[5])
    assert field(ticks[0], "price") == first_close


def test_bad_csv_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="cannot read"):
        CsvFeed(tmp_path / "missing.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("time,ticker,last\n1,A,2\n")
    with pytest.raises(FeedError, match="need a header"):
        CsvFeed(wrong)
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,price\nA,2\nA,two\n")
    with pytest.raises(FeedError, match=r"bad\.csv, line 3: price 'two' is not a number"):
        CsvFeed(bad)  # read through before the first tick is sent


@pytest.mark.anyio
async def test_actor_publishes_the_feed_and_answers_quote_requests(bus: AsyncMessageBus) -> None:
    env = Environment()
    market = MarketState(CsvFeed(DATA / "ticks.csv"))
    seen = await collect(bus, MessageTypes.MARKET_DATA_UPDATE)
    await bus.spawn(ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, market)))
    await wait_for(lambda: market.exhausted)
    await wait_for(lambda: len(seen) == 1200)
    assert market.ticks == 1200 == env.published[MessageTypes.MARKET_DATA_UPDATE]
    quote = await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC/USDT"})
    assert field(quote, "seq") == 600
    assert await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "NOPE"}) is None


@pytest.mark.anyio
async def test_a_restarted_feed_continues_where_it_stopped(bus: AsyncMessageBus) -> None:
    env = Environment()
    market = MarketState(SimulatedFeed(["A"], seed=1, prices=PRICES, step=1 / 2000), speed=1.0)
    seen = await collect(bus, MessageTypes.MARKET_DATA_UPDATE)
    tree = await bus.spawn(ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, market)))
    await wait_for(lambda: len(seen) >= 20)
    await bus.stop(tree)
    stopped_at = market.ticks
    await bus.spawn(ChildSpec(MarketDataActor, factory=lambda: MarketDataActor(env, market)))
    await wait_for(lambda: len(seen) >= stopped_at + 20)
    market.stop_feed()
    await wait_for(lambda: market.exhausted)
    await wait_for(lambda: len(seen) == market.ticks)
    assert [field(t, "seq") for _, t in seen] == list(range(1, market.ticks + 1))


def test_consumers_that_only_need_the_latest_price_conflate() -> None:
    for actor in (RiskActor, PositionActor, ExchangeActor):
        assert isinstance(actor.mailbox_policy, Conflate)
        assert MessageTypes.MARKET_DATA_UPDATE in actor.mailbox_policy.types
    assert StrategyActor.mailbox_policy is None  # its averages need every tick
