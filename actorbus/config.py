"""Configuration: constructor argument, then environment variable, then default."""

from __future__ import annotations

import os
from typing import Literal

from .errors import ConfigurationError

__all__ = ["MODES", "MODE_VARIABLE", "URL_VARIABLE", "Mode", "resolve_mode", "resolve_url"]

Mode = Literal["in_memory", "rabbitmq"]
MODES: tuple[Mode, ...] = ("in_memory", "rabbitmq")
MODE_VARIABLE = "TRADING_SYSTEM_MESSAGE_BUS_MODE"
"""Environment variable choosing the mode when the constructor does not."""
URL_VARIABLE = "TRADING_SYSTEM_RABBITMQ_URL"
"""Environment variable holding the AMQP URL when the constructor does not."""
DEFAULT_URL = "amqp://guest:guest@localhost:5672/"


def resolve_mode(mode: str | None) -> Mode:
    """Return the mode in effect: ``mode``, else the environment variable, else in memory."""
    chosen = mode if mode is not None else os.environ.get(MODE_VARIABLE) or "in_memory"
    normalised = chosen.strip().lower().replace("-", "_")
    if normalised == "memory":
        normalised = "in_memory"
    if normalised not in MODES:
        source = "mode argument" if mode is not None else MODE_VARIABLE
        raise ConfigurationError(
            f"unknown message bus mode {chosen!r} (from {source}): use 'in_memory' or 'rabbitmq'"
        )
    return normalised


def resolve_url(url: str | None) -> str:
    """Return the AMQP URL in effect: ``url``, else the environment variable, else localhost."""
    return url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
