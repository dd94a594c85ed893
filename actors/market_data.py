"""Market data: the feed's ticks, published, and the latest quote on request.

:class:`MarketDataActor` runs a feed (see :mod:`~actorbus_trading.feeds`) while
it lives (a task started in ``on_start`` and cancelled in ``on_stop``),
publishing one MARKET_DATA_UPDATE per tick, and answers MARKET_DATA_REQUEST
with the latest :class:`Tick` of a symbol (request/reply: the handler's return
value is the reply). :class:`MarketState` keeps the feed, the latest quotes and
the counters across restarts of the actor.

Time and pacing: every tick carries a timestamp (``ts``: a CSV file's own, or
the simulated feed's, ``1 / rate`` apart from :data:`~actorbus_trading.feeds.SIM_START`,
or :data:`~actorbus_trading.feeds.UNPACED_STEP` apart with ``rate`` 0), and the
actor moves the system's :class:`~actorbus_trading.clock.FeedClock` to it before
publishing, so the actors run on the feed's time. ``duration`` is measured on
that time too: the feed ends at the first tick at or past ``duration`` seconds
after the first one. ``speed`` says how fast the feed's time passes on the wall
clock (1: real time; 0: as fast as the consumers take the ticks; the strategy
does not conflate, so its mailbox pushes back on the feed). Consumers that only
need the latest price (risk, position) conflate ticks per symbol in their
mailboxes instead of falling behind.

A feed that fails (see :class:`~actorbus_trading.feeds.FeedError`) ends the
feed: the actor logs it, keeps it in :attr:`MarketState.error` and publishes
MARKET_DATA_ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from actorbus import Envelope, MessageTypes, handles

from .base import Environment, TradingActor
from .clock import FeedClock
from .feeds import Feed, FeedError
from .schemas import QuoteRequest, Tick, as_struct

logger = logging.getLogger(__name__)

YIELD_EVERY = 64
"""Ticks published between two turns given to the rest of the event loop when the
feed is unthrottled or behind schedule (publishing to a mailbox with room never
waits, so without these turns the consumers would starve)."""
SLEEP_SLICE = 0.05
"""Longest real sleep of a paced feed before it looks again whether it was stopped."""


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
