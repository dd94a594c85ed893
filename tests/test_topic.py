"""The topic matcher: RabbitMQ semantics, '*' one word, '#' zero or more."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorbus.topic import is_pattern, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("*.b", "a.b", True),
        ("*.*", "a.b", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.#", "a", True),
        ("a.#", "a.b", True),
        ("a.#", "a.b.c.d", True),
        ("a.#", "b.a", False),
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("#", "", True),
        ("#.b", "b", True),
        ("#.b", "a.b", True),
        ("#.b", "a.b.c", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.c", True),
        ("a.#.c", "a.b.b.c", True),
        ("a.#.c", "a.b.d", False),
        ("a.*.c", "a.c", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("a.*.#", "a.b.c.d", True),
        ("#.#", "a", True),
        ("market_data.#", "market_data", True),
        ("market_data.#", "market_data.update", True),
        ("market_data.*", "market_data.update", True),
        ("*.error", "risk.error", True),
        ("*.error", "risk.limit_breach", False),
        ("strategy.signal", "strategy.signals", False),
        ("a*.b", "ab.b", False),
    ],
)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_is_pattern() -> None:
    assert is_pattern("a.*")
    assert is_pattern("#")
    assert is_pattern("a.#.b")
    assert not is_pattern("a.b")
    assert not is_pattern("a*.b")  # a wildcard is a whole word, never part of one


def reference_match(pattern: str, key: str) -> bool:
    """RabbitMQ's topic semantics by dynamic programming, independent of the matcher."""
    p = pattern.split(".")
    k = key.split(".")
    # table[i][j]: the first i pattern words match the first j key words
    table = [[False] * (len(k) + 1) for _ in range(len(p) + 1)]
    table[0][0] = True
    for i in range(1, len(p) + 1):
        word = p[i - 1]
        for j in range(len(k) + 1):
            if word == "#":
                table[i][j] = table[i - 1][j] or (j > 0 and table[i][j - 1])
            elif j > 0:
                table[i][j] = table[i - 1][j - 1] and word in ("*", k[j - 1])
    return table[len(p)][len(k)]


words = st.sampled_from(["a", "b", "c"])
patterns = st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=6).map(".".join)
keys = st.lists(words, min_size=1, max_size=6).map(".".join)


@settings(max_examples=500, deadline=None)
@given(pattern=patterns, key=keys)
def test_matcher_agrees_with_the_reference(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key) is reference_match(pattern, key)
