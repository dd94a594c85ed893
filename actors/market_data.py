"""Market data: a simulated or replayed feed, and the latest quote on request.

:class:`MarketDataActor` runs a feed while it lives (a task started in
``on_start`` and cancelled in ``on_stop``), publishing one MARKET_DATA_UPDATE
per tick, and answers MARKET_DATA_REQUEST with the latest :class:`Tick` of a
symbol (request/reply: the handler's return value is the reply).

Feeds:

- :class:`SimulatedFeed`: a seeded geometric random walk per symbol, the
  symbols taking turns; the same seed gives the same prices.
- :class:`CsvFeed`: replays a CSV file of ticks (``symbol,price`` and optional
  ``timestamp,bid,ask,volume``) or OHLCV bars (``symbol,open,high,low,close``
  and optional ``timestamp,volume``; one tick per bar, at the close).

Pacing: ``rate`` ticks per second in all (0: as fast as the consumers take
them; the strategy does not conflate, so its mailbox pushes back on the feed).
Consumers that only need the latest price (risk, position) conflate ticks per
symbol in their mailboxes instead of falling behind.

The feed and the latest quotes live in a :class:`MarketState` that outlives the
actor: a restarted market data actor continues the same feed where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from actorbus import Envelope, MessageTypes, handles

from .base import Environment, TradingActor
from .schemas import QuoteRequest, Tick, as_struct

__all__ = [
    "DEFAULT_PRICES",
    "CsvFeed",
    "Feed",
    "FeedError",
    "MarketDataActor",
    "MarketState",
    "SimulatedFeed",
]

logger = logging.getLogger("actors.market_data")

DEFAULT_PRICES: dict[str, float] = {"BTC/USDT": 50_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
"""Starting prices of the simulated feed; other symbols start at 100."""


YIELD_EVERY = 64
"""Ticks published between two turns given to the rest of the event loop when the
feed is unthrottled or behind schedule (publishing to a mailbox with room never
waits, so without these turns the consumers would starve)."""


class FeedError(ValueError):
    """A feed that cannot be read (missing file, unknown columns, bad row)."""


class Feed(Protocol):
    """A source of ticks."""

    def next_tick(self) -> Tick | None:
        """The next tick, or ``None`` when the feed is exhausted."""


class SimulatedFeed:
    """A seeded random walk per symbol; see the module documentation."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        seed: int = 1,
        volatility: float = 0.0002,
        spread_bps: float = 2.0,
        prices: dict[str, float] | None = None,
    ) -> None:
        if not symbols:
            raise FeedError("the simulated feed needs at least one symbol")
        start = prices or DEFAULT_PRICES
        self.symbols = list(symbols)
        """Symbols, in turn order."""
        self.volatility = volatility
        """Standard deviation of one tick's log return."""
        self.spread = spread_bps / 10_000
        """Bid/ask spread as a fraction of the price."""
        self._prices = {symbol: start.get(symbol, 100.0) for symbol in self.symbols}
        self._seq = dict.fromkeys(self.symbols, 0)
        self._random = random.Random(seed)
        self._turn = 0

    def next_tick(self) -> Tick:
        """Move the next symbol's price one step and return its tick."""
        symbol = self.symbols[self._turn]
        self._turn = (self._turn + 1) % len(self.symbols)
        price = self._prices[symbol] * math.exp(self._random.gauss(0.0, self.volatility))
        price = round(price, 2) or 0.01
        self._prices[symbol] = price
        self._seq[symbol] += 1
        half = price * self.spread / 2
        return Tick(
            symbol=symbol,
            price=price,
            bid=round(price - half, 4),
            ask=round(price + half, 4),
            volume=round(self._random.uniform(0.1, 5.0), 3),
            seq=self._seq[symbol],
            ts=time.time(),
        )


class CsvFeed:
    """Replays ticks or OHLCV bars from a CSV file; see the module documentation."""

    def __init__(
        self, path: str | Path, *, symbols: Sequence[str] | None = None, spread_bps: float = 2.0
    ) -> None:
        self.path = Path(path)
        """The file."""
        self.symbols = frozenset(symbols) if symbols else None
        """Only rows of these symbols (all when ``None``)."""
        self.spread = spread_bps / 10_000
        """Spread used when a row has no bid/ask."""
        try:
            self._file = self.path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise FeedError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self._reader = csv.DictReader(self._file)
        fields = {name.strip().lower() for name in self._reader.fieldnames or ()}
        if "symbol" not in fields or not ({"price", "close"} & fields):
            self._file.close()
            raise FeedError(
                f"{self.path}: need a header with 'symbol' and 'price' (ticks) or "
                f"'close' (OHLCV bars); found {sorted(fields) or 'no header'}"
            )
        self._rows: Iterator[dict[str, str]] = iter(self._reader)
        self._seq: dict[str, int] = {}
        self.rows = 0
        """Rows read so far."""

    def next_tick(self) -> Tick | None:
        """The next tick of a selected symbol, or ``None`` at the end of the file."""
        for raw in self._rows:
            self.rows += 1
            row = {key.strip().lower(): (value or "").strip() for key, value in raw.items() if key}
            symbol = row.get("symbol", "")
            if self.symbols is not None and symbol not in self.symbols:
                continue
            try:
                price = float(row.get("price") or row["close"])
                half = price * self.spread / 2
                bid = float(row["bid"]) if row.get("bid") else price - half
                ask = float(row["ask"]) if row.get("ask") else price + half
                volume = float(row["volume"]) if row.get("volume") else 0.0
                stamp = row.get("timestamp") or row.get("time") or ""
                ts = float(stamp) if _is_number(stamp) else time.time()
            except (KeyError, ValueError) as exc:
                self._file.close()
                raise FeedError(f"{self.path}, data row {self.rows}: bad value ({exc})") from None
            if not symbol or price <= 0:
                self._file.close()
                raise FeedError(f"{self.path}, data row {self.rows}: no symbol or price <= 0")
            self._seq[symbol] = self._seq.get(symbol, 0) + 1
            return Tick(
                symbol=symbol, price=price, bid=bid, ask=ask, volume=volume,
                seq=self._seq[symbol], ts=ts,
            )  # fmt: skip
        self._file.close()
        return None

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class MarketState:
    """The feed and the latest quotes, kept across restarts of the market data actor."""

    def __init__(self, feed: Feed | None, *, rate: float = 0.0) -> None:
        self.feed = feed
        """Where ticks come from (``None``: answer requests only)."""
        self.rate = rate
        """Ticks per second in all; 0 for as fast as consumers take them."""
        self.window = 1
        """Publishes in flight at once: 1 in memory; more over a network, where each
        publish waits for the broker's confirm (the ticks still leave in order)."""
        self.quotes: dict[str, Tick] = {}
        """Latest tick per symbol."""
        self.ticks = 0
        """Ticks published."""
        self.started_at: float | None = None
        """Monotonic time of the first tick."""
        self.stopping = False
        """Set by :meth:`stop_feed`; the feed ends at its next tick."""
        self.exhausted = False
        """Whether the feed came to its end (or was stopped, or failed)."""
        self.error: str | None = None
        """Why the feed failed, if it did."""

    def stop_feed(self) -> None:
        """End the feed at its next tick."""
        self.stopping = True


class MarketDataActor(TradingActor):
    """Publishes the feed's ticks and answers latest-quote requests."""

    name = "market_data"

    def __init__(self, env: Environment, state: MarketState) -> None:
        super().__init__(env)
        self.state = state
        """Feed and quotes (outlive this instance)."""
        self._task: asyncio.Task[None] | None = None
        self._halt = False

    async def on_start(self) -> None:
        """Announce, then start the feed (continuing where a previous incarnation stopped)."""
        await super().on_start()
        if self.state.feed is not None and not self.state.exhausted:
            self._task = asyncio.get_running_loop().create_task(self._run_feed())

    async def on_stop(self) -> None:
        """Stop the feed task after the tick it is publishing (cancel it if that takes 1 s).

        Letting the publish finish keeps the books exact: a tick is either sent to
        every subscriber and counted, or not sent.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._halt = True
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run_feed(self) -> None:
        state = self.state
        assert state.feed is not None
        loop = asyncio.get_running_loop()
        rate = state.rate
        began, sent = loop.time(), 0
        window = state.window
        in_flight: set[asyncio.Task[None]] = set()
        if state.started_at is None:
            state.started_at = time.monotonic()
        try:
            while not (state.stopping or self._halt):
                tick = state.feed.next_tick()
                if tick is None:
                    break
                state.quotes[tick.symbol] = tick
                if window <= 1:
                    await self.publish(MessageTypes.MARKET_DATA_UPDATE, tick)
                    state.ticks += 1
                else:
                    while len(in_flight) >= window:
                        await self._settle(in_flight, asyncio.FIRST_COMPLETED)
                    in_flight.add(loop.create_task(self._publish_tick(tick)))
                sent += 1
                delay = began + sent / rate - loop.time() if rate > 0 else 0.0
                if delay > 0.001:
                    await asyncio.sleep(delay)
                elif sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # behind or unthrottled: let the consumers run
        except FeedError as exc:
            state.error = str(exc)
            logger.error("market data feed failed: %s", exc)
            await self.publish(MessageTypes.MARKET_DATA_ERROR, {"error": str(exc)})
        finally:
            if in_flight:
                await self._settle(in_flight, asyncio.ALL_COMPLETED)
        if not self._halt:
            state.exhausted = True

    async def _publish_tick(self, tick: Tick) -> None:
        await self.publish(MessageTypes.MARKET_DATA_UPDATE, tick)
        self.state.ticks += 1

    @staticmethod
    async def _settle(in_flight: set[asyncio.Task[None]], when: str) -> None:
        done, _ = await asyncio.wait(in_flight, return_when=when)
        in_flight.difference_update(done)
        for task in done:
            task.result()  # a failed publish fails the feed, as it would inline

    @handles(MessageTypes.MARKET_DATA_REQUEST)
    async def on_quote_request(self, msg: Envelope) -> Tick | None:
        """Reply with the latest tick of the requested symbol (``None`` before the first)."""
        self.fault_point()
        request = as_struct(msg.data, QuoteRequest)
        return self.state.quotes.get(request.symbol)
