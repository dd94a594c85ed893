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

Time and pacing: every tick carries a timestamp (``ts``: a CSV file's own, or
the simulated feed's, ``1 / rate`` apart from :data:`SIM_START`, or
:data:`UNPACED_STEP` apart with ``rate`` 0), and the actor moves the system's
:class:`~actorbus_trading.clock.FeedClock` to it before publishing, so the actors run on
the feed's time. ``duration`` is measured on that time too: the feed ends at
the first tick at or past ``duration`` seconds after the first one. ``speed``
says how fast the feed's time passes on the wall clock (1: real time; 0: as
fast as the consumers take the ticks; the strategy does not conflate, so its
mailbox pushes back on the feed). Consumers that only need the latest price
(risk, position) conflate ticks per symbol in their mailboxes instead of
falling behind.

Validation: every tick is a valid :class:`~actorbus_trading.schemas.Tick` (finite
prices in (0, 1e9), ``bid <= ask``). A CSV file is read through once when it is
opened, so a bad row (a non-numeric, non-finite or absurd price, a bad
timestamp, bytes that are not UTF-8) is an error before the run starts, naming
the file and the line; so is a file with no data rows, or none of the symbols
asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec

from actorbus import Envelope, MessageTypes, handles

from .base import Environment, TradingActor
from .clock import FeedClock
from .schemas import QuoteRequest, Tick, as_struct

__all__ = [
    "DEFAULT_PRICES",
    "SIM_START",
    "UNPACED_STEP",
    "CsvFeed",
    "Feed",
    "FeedError",
    "MarketDataActor",
    "MarketState",
    "SimulatedFeed",
]

logger = logging.getLogger(__name__)

DEFAULT_PRICES: dict[str, float] = {"BTC/USDT": 50_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
"""Starting prices of the simulated feed (give others as ``SYMBOL=PRICE``)."""

SIM_START = 1_767_225_600.0
"""Timestamp of the simulated feed's first tick (2026-01-01 00:00 UTC): fixed, so a
simulated run's times repeat."""
UNPACED_STEP = 1e-5
"""Feed time between two simulated ticks with ``rate`` 0 (100,000 ticks a second)."""
CSV_STEP = 1e-3
"""Feed time between two rows of a CSV file without timestamps."""

YIELD_EVERY = 64
"""Ticks published between two turns given to the rest of the event loop when the
feed is unthrottled or behind schedule (publishing to a mailbox with room never
waits, so without these turns the consumers would starve)."""
SLEEP_SLICE = 0.05
"""Longest real sleep of a paced feed before it looks again whether it was stopped."""


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
        step: float = UNPACED_STEP,
    ) -> None:
        if not symbols:
            raise FeedError("the simulated feed needs at least one symbol")
        start = {**DEFAULT_PRICES, **(prices or {})}
        unknown = [symbol for symbol in symbols if symbol not in start]
        if unknown:
            raise FeedError(
                f"no start price for {', '.join(unknown)}: give it as SYMBOL=PRICE "
                f"(known: {', '.join(DEFAULT_PRICES)})"
            )
        self.symbols = list(symbols)
        """Symbols, in turn order."""
        self.volatility = volatility
        """Standard deviation of one tick's log return."""
        self.spread = spread_bps / 10_000
        """Bid/ask spread as a fraction of the price."""
        self.step = step
        """Feed time between two ticks."""
        self._prices = {symbol: start[symbol] for symbol in self.symbols}
        self._seq = dict.fromkeys(self.symbols, 0)
        self._random = random.Random(seed)
        self._turn = 0
        self._count = 0

    def next_tick(self) -> Tick:
        """Move the next symbol's price one step and return its tick."""
        symbol = self.symbols[self._turn]
        self._turn = (self._turn + 1) % len(self.symbols)
        price = self._prices[symbol] * math.exp(self._random.gauss(0.0, self.volatility))
        price = round(price, 2) or 0.01
        self._prices[symbol] = price
        self._seq[symbol] += 1
        half = price * self.spread / 2
        ts = SIM_START + self._count * self.step
        self._count += 1
        return Tick(
            symbol=symbol,
            price=price,
            bid=round(price - half, 4),
            ask=round(price + half, 4),
            volume=round(self._random.uniform(0.1, 5.0), 3),
            seq=self._seq[symbol],
            ts=ts,
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
        self.counts: Counter[str] = self._check()
        """Ticks per symbol the replay will publish (the file was read through once)."""
        self._file = self._open()
        self._rows = self._ticks(csv.DictReader(self._file))
        self.rows = 0
        """Data rows read so far."""

    def _open(self) -> Any:
        try:
            return self.path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise FeedError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def _check(self) -> Counter[str]:
        """Read the file through: every row valid, some rows of the symbols asked for."""
        counts: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        with self._open() as file:
            reader = csv.DictReader(file)
            try:
                for tick in self._ticks(reader, seen):
                    counts[tick.symbol] += 1
            except UnicodeDecodeError as exc:
                raise FeedError(
                    f"{self.path}, line {reader.line_num + 1}: not UTF-8 text "
                    f"(byte {exc.object[exc.start]:#04x}); is it a CSV file?"
                ) from None
        if not seen:
            raise FeedError(f"{self.path}: no data rows after the header")
        if not counts:
            raise FeedError(
                f"{self.path}: no rows of {', '.join(sorted(self.symbols or ()))}; "
                f"the file has {', '.join(sorted(seen))}"
            )
        if self.symbols is not None and self.symbols - counts.keys():
            raise FeedError(
                f"{self.path}: no rows of {', '.join(sorted(self.symbols - counts.keys()))}; "
                f"the file has {', '.join(sorted(seen))}"
            )
        return counts

    def _ticks(
        self, reader: csv.DictReader[str], seen: Counter[str] | None = None
    ) -> Iterator[Tick]:
        fields = {name.strip().lower() for name in reader.fieldnames or ()}
        if "symbol" not in fields or not ({"price", "close"} & fields):
            raise FeedError(
                f"{self.path}: need a header with 'symbol' and 'price' (ticks) or "
                f"'close' (OHLCV bars); found {sorted(fields) or 'no header'}"
            )
        sequence: dict[str, int] = {}
        last_ts: float | None = None
        for raw in reader:
            row = {key.strip().lower(): (value or "").strip() for key, value in raw.items() if key}
            symbol = row.get("symbol", "")
            where = f"{self.path}, line {reader.line_num}"
            if not symbol:
                raise FeedError(f"{where}: no symbol")
            if seen is not None:
                seen[symbol] += 1
            else:
                self.rows += 1
            if self.symbols is not None and symbol not in self.symbols:
                continue
            try:
                price = _number(row.get("price") or row.get("close", ""), "price")
                half = price * self.spread / 2
                bid = _number(row["bid"], "bid") if row.get("bid") else round(price - half, 6)
                ask = _number(row["ask"], "ask") if row.get("ask") else round(price + half, 6)
                volume = _number(row["volume"], "volume") if row.get("volume") else 0.0
                stamp = row.get("timestamp") or row.get("time") or ""
                ts = _timestamp(stamp) if stamp else (last_ts or 0.0) + CSV_STEP
                if bid > ask:
                    raise ValueError(f"bid {bid} above ask {ask}")
                sequence[symbol] = sequence.get(symbol, 0) + 1
                tick = Tick(
                    symbol=symbol, price=price, bid=bid, ask=ask, volume=volume,
                    seq=sequence[symbol], ts=ts,
                )  # fmt: skip
            except (ValueError, msgspec.ValidationError) as exc:
                raise FeedError(f"{where}: {exc}") from None
            last_ts = ts if last_ts is None else max(last_ts, ts)
            yield tick

    def next_tick(self) -> Tick | None:
        """The next tick of a selected symbol, or ``None`` at the end of the file."""
        tick = next(self._rows, None)
        if tick is None:
            self._file.close()
        return tick

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not finite")
    return value


def _timestamp(text: str) -> float:
    """Epoch seconds, or an ISO 8601 date and time (UTC unless it says otherwise)."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"timestamp {text!r} is neither epoch seconds nor ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"timestamp {text!r} is not finite")
    return value


class MarketState:
    """The feed and the latest quotes, kept across restarts of the market data actor."""

    def __init__(
        self,
        feed: Feed | None,
        *,
        speed: float = 0.0,
        duration: float | None = None,
        clock: FeedClock | None = None,
    ) -> None:
        self.feed = feed
        """Where ticks come from (``None``: answer requests only)."""
        self.speed = speed
        """Feed seconds per wall second (1: real time); 0 for as fast as consumers take them."""
        self.duration = duration
        """Feed seconds to run, from the first tick (``None``: to the end of the feed)."""
        self.clock = clock or FeedClock()
        """The system's clock, moved to each tick's timestamp."""
        self.window = 1
        """Publishes in flight at once: 1 in memory; more over a network, where each
        publish waits for the broker's confirm (the ticks still leave in order)."""
        self.quotes: dict[str, Tick] = {}
        """Latest tick per symbol."""
        self.ticks = 0
        """Ticks published."""
        self.first_ts: float | None = None
        """Timestamp of the first tick."""
        self.started_at: float | None = None
        """Monotonic (wall) time of the first tick."""
        self.ended_at: float | None = None
        """Monotonic (wall) time the feed ended (its last publish confirmed)."""
        self.ended_by: str | None = None
        """Why the feed ended: ``duration``, ``end of feed``, ``stopped`` or ``error``."""
        self.stopping = False
        """Set by :meth:`stop_feed`; the feed ends at its next tick."""
        self.exhausted = False
        """Whether the feed came to its end (or was stopped, or failed)."""
        self.error: str | None = None
        """Why the feed failed, if it did."""
        self._held: Tick | None = None

    def stop_feed(self) -> None:
        """End the feed at its next tick (or now, when it is waiting for one)."""
        self.stopping = True

    def take(self) -> Tick | None:
        """The next tick of the feed (one looked at but not sent comes first)."""
        tick, self._held = self._held, None
        if tick is None and self.feed is not None:
            tick = self.feed.next_tick()
        return tick

    def hold(self, tick: Tick) -> None:
        """Keep a tick taken but not sent, for the next incarnation of the feed."""
        self._held = tick


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
            self.state.clock.resume()
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

    def _stopped(self) -> bool:
        return self.state.stopping or self._halt

    async def _run_feed(self) -> None:
        state = self.state
        clock = state.clock
        loop = asyncio.get_running_loop()
        window = state.window
        in_flight: set[asyncio.Task[None]] = set()
        began = loop.time()
        if state.started_at is None:
            state.started_at = time.monotonic()
        resumed_ts: float | None = None
        ended_by = "stopped"
        sent = 0
        try:
            while not self._stopped():
                tick = state.take()
                if tick is None:
                    ended_by = "end of feed"
                    break
                if state.first_ts is None:
                    state.first_ts = tick.ts
                if resumed_ts is None:
                    resumed_ts = tick.ts
                end = None if state.duration is None else state.first_ts + state.duration
                due = tick.ts if end is None else min(tick.ts, end)
                if state.speed > 0 and not await self._wait(
                    began + (due - resumed_ts) / state.speed
                ):
                    state.hold(tick)
                    break
                if end is not None and tick.ts >= end:
                    clock.advance(end)
                    state.hold(tick)
                    ended_by = "duration"
                    break
                clock.advance(tick.ts)
                state.quotes[tick.symbol] = tick
                if window <= 1:
                    await self.publish(MessageTypes.MARKET_DATA_UPDATE, tick)
                    state.ticks += 1
                else:
                    while len(in_flight) >= window:
                        await self._settle(in_flight, asyncio.FIRST_COMPLETED)
                    in_flight.add(loop.create_task(self._publish_tick(tick)))
                sent += 1
                if sent % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # unthrottled or behind: let the consumers run
        except FeedError as exc:
            ended_by = "error"
            state.error = str(exc)
            logger.error("market data feed failed: %s", exc)
            await self.publish(MessageTypes.MARKET_DATA_ERROR, {"error": str(exc)})
        finally:
            if in_flight:
                await self._settle(in_flight, asyncio.ALL_COMPLETED)
        if not self._halt or state.stopping:
            state.ended_by = ended_by
            state.ended_at = time.monotonic()
            state.exhausted = True
            clock.release()

    async def _wait(self, until: float) -> bool:
        """Sleep until the loop's time ``until``; False when the feed is stopped meanwhile."""
        loop = asyncio.get_running_loop()
        while (delay := until - loop.time()) > 0.001:
            if self._stopped():
                return False
            await asyncio.sleep(min(delay, SLEEP_SLICE))
        return not self._stopped()

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
