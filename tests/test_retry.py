"""The one backoff every retry loop takes its waits from."""

from __future__ import annotations

import itertools

from actorbus import RetryPolicy
from actorbus._retry import Backoff


def test_waits_grow_by_the_factor_up_to_the_longest() -> None:
    waits = list(itertools.islice(Backoff(0.1, 1.0, jitter=0.0).delays(), 6))
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_jitter_moves_each_wait_within_its_fraction() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.1)
    waits = list(itertools.islice(backoff.delays(), 200))
    assert all(0.9 <= wait <= 1.1 for wait in waits)
    assert len(set(waits)) > 1, "spread at random, so clients do not retry in step"


def test_a_zero_backoff_retries_at_once() -> None:
    assert list(itertools.islice(Backoff(0.0, 0.0).delays(), 3)) == [0.0, 0.0, 0.0]


def test_nth_and_total_state_the_bound_without_jitter() -> None:
    backoff = Backoff(0.05, 10.0)
    assert [backoff.nth(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert round(backoff.total(7), 6) == 6.35  # 0.05 doubling, seven times


def test_an_actors_retry_policy_waits_the_same_way() -> None:
    policy = RetryPolicy(backoff=0.01, multiplier=3.0, max_backoff=0.05)
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.01, 0.03, 0.05]
