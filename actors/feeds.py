"""Feeds: where the market data actor's ticks come from.

- :class:`SimulatedFeed`: a seeded geometric random walk per symbol, the
  symbols taking turns; the same seed gives the same prices.
- :class:`CsvFeed`: replays a CSV file of ticks (``symbol,price`` and optional
  ``timestamp,bid,ask,volume``) or OHLCV bars (``symbol,open,high,low,close``
  and optional ``timestamp,volume``; one tick per bar, at the close).

Time: every tick carries a timestamp (``ts``): a CSV file's own (or
:data:`CSV_STEP` apart when it has none), or the simulated feed's, ``step``
apart from :data:`SIM_START` (:data:`UNPACED_STEP` by default).

Validation: every tick is a valid :class:`~actorbus_trading.schemas.Tick` (finite
prices in (0, 1e9), ``bid <= ask``). A CSV file is read through once when it is
opened, so a bad row (a non-numeric, non-finite or absurd price, a bad
timestamp, bytes that are not UTF-8) is an error before the run starts, naming
the file and the line; so is a file with no data rows, or none of the symbols
asked for.
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import msgspec

from .schemas import Tick

__all__ = [
    "DEFAULT_PRICES",
    "SIM_START",
    "UNPACED_STEP",
    "CsvFeed",
    "Feed",
    "FeedError",
    "SimulatedFeed",
]

DEFAULT_PRICES: dict[str, float] = {"BTC/USDT": 50_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0}
"""Starting prices of the simulated feed (give others as ``SYMBOL=PRICE``)."""

SIM_START = 1_767_225_600.0
"""Timestamp of the simulated feed's first tick (2026-01-01 00:00 UTC): fixed, so a
simulated run's times repeat."""
UNPACED_STEP = 1e-5
"""Feed time between two simulated ticks with ``rate`` 0 (100,000 ticks a second)."""
CSV_STEP = 1e-3
"""Feed time between two rows of a CSV file without timestamps."""


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
