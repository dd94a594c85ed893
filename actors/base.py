"""What every trading actor shares: fault injection, publish accounting, status reports.

:class:`TradingActor` is an :class:`actorbus.Actor` with three additions:

- ``fault_point()``, called first thing in every handler: under ``--chaos`` it
  raises :class:`ChaosError` at random (retried by the runtime, then
  dead-lettered) and, now and then, :class:`ChaosCrash`, which the retry policy
  marks fatal so the actor crashes and its supervisor restarts it. Faults are
  injected before a handler has done anything, so a retry repeats no effect.
- ``publish`` and ``ask`` count what the actor sends, per message type, in the
  shared :class:`Environment`; the run's audit checks those counts against what
  the receiving actors handled (nothing may go missing).
- On start the actor publishes COMPONENT_STATUS (``running``, with its
  incarnation number), so anyone can watch restarts happen.
- ``self.clock`` is the system's clock (:attr:`Environment.clock`): the
  feed's time when market data runs in this process (see :mod:`actorbus_trading.clock`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

from actorbus import REAL_CLOCK, Actor, Clock, MessageTypes, RetryPolicy, Unroutable

__all__ = ["Chaos", "ChaosCrash", "ChaosError", "Environment", "TradingActor"]


class ChaosError(RuntimeError):
    """A handler failure injected by ``--chaos``; retried, then dead-lettered."""


class ChaosCrash(RuntimeError):
    """An injected crash: fatal under the trading actors' retry policy, so the actor restarts."""


class Chaos:
    """Decides, per handler call, whether to inject a failure.

    ``rate`` is the probability that a handler call fails. One failure in
    ``1 / crash_share`` is a crash instead, but each actor crashes at most once
    per ``crash_interval`` seconds, so chaos stays inside the supervisors'
    restart intensity (a crash loop is a different test). Seeded, so a run's
    sequence of decisions repeats (their timing, and so their effect, may not).
    """

    def __init__(
        self,
        rate: float = 0.0,
        *,
        seed: int = 0,
        crash_share: float = 0.1,
        crash_interval: float = 2.0,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"chaos rate must be between 0 and 1, not {rate}")
        self.rate = rate
        """Probability that a handler call fails."""
        self.crash_share = crash_share
        """Share of failures that are crashes (subject to ``crash_interval``)."""
        self.crash_interval = crash_interval
        """Shortest time between two crashes of one actor, in seconds."""
        self.enabled = rate > 0.0
        """Switched off at the end of a run, before the final replay of dead letters."""
        self.injected = 0
        """Failures injected so far (crashes included)."""
        self.crashes = 0
        """Crashes injected so far."""
        self._random = random.Random(seed * 7919 + 17)
        self._last_crash: dict[str, float] = {}
        self._lock = threading.Lock()

    def point(self, actor: str) -> None:
        """Maybe raise ``ChaosError`` or ``ChaosCrash`` for ``actor``."""
        if not self.enabled:
            return
        with self._lock:
            draw = self._random.random()
            if draw >= self.rate:
                return
            self.injected += 1
            now = time.monotonic()
            if draw < self.rate * self.crash_share and (
                now - self._last_crash.get(actor, -1e9) >= self.crash_interval
            ):
                self._last_crash[actor] = now
                self.crashes += 1
                raise ChaosCrash(f"chaos: {actor} crashed on purpose")
        raise ChaosError(f"chaos: {actor} failed on purpose")


class Environment:
    """What every actor of one trading system shares: chaos, the clock, the publish counters."""

    def __init__(self, chaos: Chaos | None = None, clock: Clock | None = None) -> None:
        self.chaos = chaos or Chaos()
        """Fault injection (off by default)."""
        self.clock: Clock = clock or REAL_CLOCK
        """The clock every actor of the system reads (the feed's, when the feed runs here)."""
        self.published: Counter[str] = Counter()
        """Messages published by the actors of this process, per type (asks included)."""
        self.incarnations: Counter[str] = Counter()
        """Starts per actor name (1 + restarts)."""


class TradingActor(Actor):
    """Base class of the trading actors; see the module documentation."""

    retry = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.05, fatal=(ChaosCrash,))

    def __init__(self, env: Environment) -> None:
        super().__init__()
        self.env = env
        """The shared environment."""
        self.clock = env.clock

    def fault_point(self) -> None:
        """Where ``--chaos`` strikes: first thing in every handler."""
        self.env.chaos.point(self.context.name)

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        mandatory: bool = False,
    ) -> None:
        """Publish, and count the message once the bus has it."""
        await super().publish(
            message_type, data, correlation_id=correlation_id, headers=headers, mandatory=mandatory
        )
        self.env.published[str(message_type)] += 1

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Ask, counting the request (unless nobody was there to take it)."""
        try:
            result = await super().ask(message_type, data, timeout=timeout)
        except Unroutable:
            raise
        except BaseException:
            self.env.published[str(message_type)] += 1
            raise
        self.env.published[str(message_type)] += 1
        return result

    async def on_start(self) -> None:
        """Announce the new incarnation with COMPONENT_STATUS."""
        name = self.context.name
        self.env.incarnations[name] += 1
        await self.publish(
            MessageTypes.COMPONENT_STATUS,
            {"component": name, "state": "running", "incarnation": self.env.incarnations[name]},
        )
