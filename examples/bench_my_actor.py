"""Benchmark an actor of your own: `actorbus bench` pointed at this module.

    actorbus bench examples.bench_my_actor:Pricer pricing.quote \
        --payload '{"symbol": "BTC-USD", "bid": 64000.5, "ask": 64001.0}' --count 20000
    actorbus bench examples.bench_my_actor:Pricer pricing.quote \
        --payload examples.bench_my_actor:quote --rate 1000 --duration 5 --mode rabbitmq

or from Python (and, with pytest-benchmark, `bench_actor(benchmark, ...)` in a test).
"""

from __future__ import annotations

import itertools
from typing import Any

from actorbus import Actor, ChildSpec, Envelope, Supervisor, handles, register_message_type
from actorbus.bench import run_bench

QUOTE = register_message_type("pricing.quote")

_sequence = itertools.count()


def quote() -> dict[str, Any]:
    """A fresh quote per message (a payload factory: called once per message)."""
    n = next(_sequence)
    return {"symbol": "BTC-USD", "bid": 64_000.5 + n % 7, "ask": 64_001.0 + n % 7}


class Pricer(Actor):
    """Keeps the mid price per symbol: a small actor with a little real work."""

    def __init__(self) -> None:
        super().__init__()
        self.mids: dict[str, float] = {}

    @handles(QUOTE)
    async def on_quote(self, message: Envelope) -> None:
        data = message.data
        self.mids[data["symbol"]] = (data["bid"] + data["ask"]) / 2


def tree() -> Supervisor:
    """Two pricers on the same type: every quote makes two deliveries."""
    return Supervisor(
        [ChildSpec(actor=Pricer, name="pricer_a"), ChildSpec(actor=Pricer, name="pricer_b")],
        name="pricing",
    )


if __name__ == "__main__":
    result = run_bench(Pricer, QUOTE, quote, count=20_000)
    latency = result.latency_us
    print(
        f"{result.throughput:,.0f} msgs/s, {result.cpu_us_per_message:.1f} us CPU/msg, "
        f"p50 {latency.p50:.0f} us, p99 {latency.p99:.0f} us"
    )
