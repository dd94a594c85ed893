"""Configuration: constructor argument, then environment variable, then default.

Also the two rules every part of actorbus shares about what it is configured
with: which prefixes make valid broker names (:func:`check_prefix`), and how
a URL is shown without its password (:func:`redact_url`).
"""

from __future__ import annotations

import os
import re
from typing import Literal

from .errors import ConfigurationError

__all__ = [
    "MAX_PREFIX_LENGTH",
    "MODES",
    "MODE_VARIABLE",
    "URL_VARIABLE",
    "Mode",
    "check_prefix",
    "redact_url",
    "resolve_mode",
    "resolve_url",
]

Mode = Literal["in_memory", "rabbitmq"]
MODES: tuple[Mode, ...] = ("in_memory", "rabbitmq")
MODE_VARIABLE = "TRADING_SYSTEM_MESSAGE_BUS_MODE"
"""Environment variable choosing the mode when the constructor does not."""
URL_VARIABLE = "TRADING_SYSTEM_RABBITMQ_URL"
"""Environment variable holding the AMQP URL when the constructor does not."""
DEFAULT_URL = "amqp://guest:guest@localhost:5672/"

MAX_PREFIX_LENGTH = 80
"""Longest prefix: exchange names (``<prefix>.<subsystem>``) may have 127 characters
in AMQP 0-9-1, and queue names (``<prefix>.sub.<module>.<handler>``) 255 bytes."""

_NAME_CHARACTERS = re.compile(r"[a-zA-Z0-9_.:@#,/+ -]+")
"""The characters AMQP 0-9-1 allows in exchange and queue names. RabbitMQ itself takes
any UTF-8, but the client (pamqp) refuses the rest before anything is sent."""


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


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it makes valid exchange and queue names, else ``ConfigurationError``.

    Valid: 1 to :data:`MAX_PREFIX_LENGTH` characters among letters, digits and
    ``_ . : @ # , / + -`` and space. The same rule holds in both modes, so a
    prefix that works in memory also works over RabbitMQ.
    """
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(f"the prefix must be a non-empty string, not {prefix!r}")
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise ConfigurationError(
            f"the prefix has {len(prefix)} characters; at most {MAX_PREFIX_LENGTH} leave room "
            "for the names built from it (exchange names have at most 127)"
        )
    if not _NAME_CHARACTERS.fullmatch(prefix):
        bad = sorted({c for c in prefix if not _NAME_CHARACTERS.fullmatch(c)})
        raise ConfigurationError(
            f"the prefix {prefix!r} holds {''.join(bad)!r}: AMQP names allow only letters, "
            "digits, space and _ . : @ # , / + -"
        )
    return prefix


def redact_url(url: str) -> str:
    """Return ``url`` with no part of its credentials (nor its query), fit for a message.

    Everything between ``://`` and the last ``@`` is credentials (a password
    may hold ``@``, ``:``, ``/`` or ``%``) and becomes ``***``, so
    ``amqp://bob:p@ss:w0rd@host/`` shows as ``amqp://***@host/``. Messages that
    need the user name say it on its own.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        rest = url
    _, at, location = rest.rpartition("@")
    location = (location if at else rest).split("?", 1)[0].split("#", 1)[0]
    return (f"{scheme}://" if sep else "") + ("***@" if at else "") + location
