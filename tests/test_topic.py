"""The topic matcher: RabbitMQ semantics, '*' one word, '#' zero or more."""

from __future__ import annotations

import pytest

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
