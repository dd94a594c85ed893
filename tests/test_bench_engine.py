"""The benchmark engine as a library: failures, factories, schemas, the pytest-benchmark helper."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import uvloop

from actorbus import Actor, ChildSpec, Envelope, RetryPolicy, Supervisor, handles
from actorbus.bench import BenchError, bench_actor, paced, run_bench
from actorbus.messages import register_message_type
from examples.bench_my_actor import QUOTE, Pricer, quote

FLAKY = register_message_type("benchtest.flaky")


class Quote(msgspec.Struct, frozen=True):
    symbol: str
    bid: float


TYPED = register_message_type("benchtest.typed", Quote)


class Failing(Actor):
    retry = RetryPolicy(max_attempts=2, backoff=0.0)

    @handles(FLAKY)
    def on_message(self, message: Envelope) -> None:
        if message.data % 2:
            raise ValueError("odd")


class Typed(Actor):
    @handles(TYPED)
    async def on_quote(self, message: Envelope) -> None:
        assert isinstance(message.data, Quote)


def test_failing_deliveries_are_counted_not_waited_for() -> None:
    numbers = iter(range(1000))
    result = run_bench(Failing, FLAKY, lambda: next(numbers), count=100)
    # The schema check takes the first payload (0); the run publishes 1..100.
    assert result.messages == 100
    assert result.failed == 50
    assert result.deliveries == 50
    assert result.errors == 100  # two attempts per odd number
    assert result.first_error == "ValueError: odd"
    assert result.unfinished == 0


def test_a_child_built_by_its_factory_is_timed_too() -> None:
    made: list[Pricer] = []

    def build() -> Pricer:
        made.append(Pricer())
        return made[-1]

    tree = Supervisor([ChildSpec(actor=Pricer, factory=build, name="made")], name="factory")
    result = run_bench(tree, QUOTE, quote, count=200)
    assert result.deliveries == 200
    assert len(made) == 1
    assert made[0].mids  # the user's own handler ran on the instance the factory built


def test_a_payload_not_fitting_the_schema_is_refused_before_the_run() -> None:
    with pytest.raises(BenchError, match="does not fit the type's schema"):
        run_bench(Typed, TYPED, lambda: {"symbol": 1}, count=10)
    result = run_bench(Typed, TYPED, lambda: {"symbol": "X", "bid": 1.0}, count=10)
    assert result.deliveries == 10


def test_bench_actor_in_a_pytest_benchmark(benchmark: Any) -> None:
    result = bench_actor(benchmark, Pricer, QUOTE, quote, count=500, rounds=2)
    assert result.messages == result.deliveries == 500
    assert benchmark.extra_info["messages"] == 500
    assert benchmark.extra_info["p50_us"] <= benchmark.extra_info["p999_us"]


def test_a_payload_function_that_raises_is_refused_before_the_run() -> None:
    def broken() -> Any:
        raise KeyError("price")

    with pytest.raises(BenchError, match="the payload function raised KeyError"):
        run_bench(Pricer, QUOTE, broken, count=10)


def test_paced_sends_each_message_on_or_after_its_deadline_and_exactly_the_count() -> None:
    async def main() -> tuple[list[float], float, int]:
        sent: list[float] = []

        async def publish() -> None:
            sent.append(time.perf_counter())

        published, start = await paced(publish, count=300, duration=None, rate=3000, window=1)
        return sent, start, published

    sent, start, published = uvloop.run(main())  # the bench's loop, whose timers tick in ms
    assert published == len(sent) == 300
    assert all(at >= start + i / 3000 for i, at in enumerate(sent))


def test_paced_for_a_duration_stops_at_the_last_deadline_inside_it() -> None:
    async def publish() -> None:
        pass

    published, _ = uvloop.run(paced(publish, count=None, duration=0.2, rate=1000, window=4))
    assert published == 200
