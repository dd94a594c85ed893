"""The one topic matcher, with RabbitMQ's semantics.

Words are separated by dots; in a pattern ``*`` matches exactly one word and
``#`` matches zero or more words, so ``"market_data.#"`` matches
``"market_data"`` itself. The in-memory broker and the actors' handler lookup use
this function, and an integration test checks it against the real broker.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["is_pattern", "topic_matches"]


def is_pattern(key: str) -> bool:
    """Tell whether ``key`` holds a wildcard word (``*`` or ``#``)."""
    return any(word in ("*", "#") for word in key.split("."))


@lru_cache(maxsize=65536)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """Tell whether a binding ``pattern`` matches a ``routing_key``."""
    if pattern == routing_key:
        return True
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[skip:]) for skip in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
