"""Connection settings: defaults, the AMQP URLs that override them, TLS, and redaction.

Precedence follows the rest of actorbus: the ``url=`` argument, else the
``TRADING_SYSTEM_RABBITMQ_URL`` variable, else :data:`DEFAULT_CONNECTION_PARAMS`.
A URL only overrides what it spells out (``amqp://broker-host`` keeps the
default port, virtual host and credentials). Passwords never leave this module
except inside the URL handed to the AMQP client: :func:`redact` (the project's one
redaction, :func:`actorbus.config.redact_url`) is what logs see.

A cluster is given as several URLs, one per node: a list, or one string of
URLs separated by commas (the only form the environment variable can hold).
:func:`node_settings` turns either into one :class:`ConnectionSettings` per
node, in order; a malformed entry is a ``ConfigurationError`` that names its
position and never repeats its password. A comma inside a password or a
virtual host is written ``%2C``.
"""

from __future__ import annotations

import os
import random
import re
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from yarl import URL

from ...config import URL_VARIABLE
from ...config import redact_url as redact
from ...errors import ConfigurationError

__all__ = ["DEFAULT_CONNECTION_PARAMS", "ConnectionSettings", "NodeUrls", "node_settings", "redact"]

NodeUrls = str | Sequence[str]
"""One AMQP URL, several separated by commas, or a list of them (one per node)."""

DEFAULT_CONNECTION_PARAMS: dict[str, Any] = {
    "host": "localhost",
    "port": 5672,
    "virtual_host": "/",
    "username": "guest",
    "password": "guest",
}
"""Where the broker is when neither ``url=`` nor ``TRADING_SYSTEM_RABBITMQ_URL`` says."""

_SCHEMES = {"amqp": 5672, "amqps": 5671}


class ConnectionSettings:
    """The resolved settings of one broker connection."""

    def __init__(
        self,
        url: str | None = None,
        *,
        heartbeat: int = 3,
        ssl_context: ssl.SSLContext | None = None,
        ssl_options: dict[str, Any] | None = None,
        connection_name: str | None = None,
    ) -> None:
        raw = url or os.environ.get(URL_VARIABLE)
        if raw and "," in raw:
            raise ConfigurationError(
                "several AMQP URLs given where one is expected: pass the list as the "
                "broker's url= (or give one URL here)"
            )
        params = dict(DEFAULT_CONNECTION_PARAMS)
        scheme = "amqp"
        query: dict[str, str] = {}
        if raw:
            try:
                parsed = URL(raw)
            except ValueError as exc:
                raise ConfigurationError(f"malformed AMQP URL: {exc}") from None
            if parsed.scheme not in _SCHEMES:
                raise ConfigurationError(
                    f"AMQP URL scheme must be amqp or amqps, not {parsed.scheme!r}"
                )
            scheme = parsed.scheme
            if scheme == "amqps":
                params["port"] = _SCHEMES["amqps"]
            if parsed.host:
                params["host"] = parsed.host
            if parsed.explicit_port:
                params["port"] = parsed.explicit_port
            if parsed.raw_user:
                params["username"] = unquote(parsed.raw_user)
            if parsed.raw_password is not None:
                params["password"] = unquote(parsed.raw_password)
            path = parsed.raw_path
            if path not in ("", "/"):
                params["virtual_host"] = unquote(path[1:])
            query = dict(parsed.query)
        self.scheme = scheme
        """``amqp`` or ``amqps``."""
        self.host: str = params["host"]
        """Broker host."""
        self.port: int = int(params["port"])
        """Broker port."""
        self.virtual_host: str = params["virtual_host"]
        """Virtual host."""
        self.username: str = params["username"]
        """User name (may appear in logs)."""
        self._password: str = params["password"]
        self.heartbeat = int(query.pop("heartbeat", heartbeat))
        """Heartbeat in seconds; a silent link is noticed after about three of them."""
        self.connection_name = connection_name
        """Name shown for the connection in the broker's management tools."""
        self.ssl_context = ssl_context
        """TLS context for ``amqps`` (built from ``ssl_options`` or the URL when not given)."""
        if scheme == "amqps" and ssl_context is None:
            options = {**_ssl_options_from_query(query), **(ssl_options or {})}
            self.ssl_context = _make_ssl_context(options)
        for key in ("cafile", "capath", "keyfile", "certfile", "no_verify_ssl", "verify"):
            query.pop(key, None)
        self._query = query

    def amqp_url(self) -> URL:
        """The URL handed to the AMQP client (holds the password: never log it)."""
        vhost = "" if self.virtual_host == "/" else self.virtual_host  # the client reads path[1:]
        query = {**self._query, "heartbeat": str(self.heartbeat)}
        if self.connection_name:
            query["name"] = self.connection_name
        return URL.build(
            scheme=self.scheme,
            user=self.username,
            password=self._password,
            host=self.host,
            port=self.port,
            path="/" + vhost,
            query=query,
            encoded=False,
        )

    def __str__(self) -> str:
        return redact(str(self.amqp_url()))

    def __repr__(self) -> str:
        return f"ConnectionSettings({self})"


def node_settings(
    url: NodeUrls | None = None, *, shuffle: bool = False, **options: Any
) -> list[ConnectionSettings]:
    """The settings of every node: ``url``, else ``TRADING_SYSTEM_RABBITMQ_URL``, else default.

    ``url`` is one URL, a comma-separated string of them, or a list (whose items
    may themselves hold commas). ``shuffle`` puts the nodes in a random order,
    so many clients given the same list spread over the cluster; otherwise the
    first node that answers is the one used. ``options`` are the
    :class:`ConnectionSettings` keywords, shared by every node.
    """
    source = "url"
    if url is None or (isinstance(url, str) and not url.strip()):
        url, source = os.environ.get(URL_VARIABLE) or "", URL_VARIABLE
    items = [url] if isinstance(url, str) else list(url)
    if not items:
        raise ConfigurationError(f"{source} is an empty list of AMQP URLs")
    entries = [entry.strip() for item in items for entry in str(item).split(",")]
    if entries == [""]:  # nothing given anywhere: the default node
        return [ConnectionSettings(None, **options)]
    nodes: list[ConnectionSettings] = []
    for position, entry in enumerate(entries, 1):
        where = f"entry {position} of {len(entries)} in {source}"
        if not entry:
            raise ConfigurationError(f"{where} is empty (a stray comma?)")
        try:
            nodes.append(ConnectionSettings(entry, **options))
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{where} ({_scrub(entry)}): {_safe_reason(exc, entry)}"
            ) from None
    if shuffle:
        random.shuffle(nodes)
    return nodes


def _scrub(entry: str) -> str:
    """An entry fit for an error message: whatever stands between ``://`` and ``@`` is gone."""
    scrubbed = re.sub(r"://[^@]*@", "://***@", entry)
    if "@" not in entry:
        scrubbed = re.sub(r"(://[^/:?#]*):[^/?#]*", r"\1:***", scrubbed)
    return scrubbed


def _safe_reason(exc: ConfigurationError, entry: str) -> str:
    """The parser's reason, unless it quotes a piece of the entry (which may be a password)."""
    reason = str(exc)
    authority = entry.split("://", 1)[-1].split("/", 1)[0]
    if any(len(piece) >= 2 and piece in reason for piece in re.split(r"[:@]", authority)):
        return "not a valid AMQP URL"
    return reason


def _ssl_options_from_query(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in ("cafile", "capath", "keyfile", "certfile"):
        if key in query:
            options[key] = query[key]
    if query.get("no_verify_ssl", "0") not in ("0", "false", ""):
        options["verify"] = False
    return options


def _make_ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """Build a client TLS context from ``cafile``/``capath``/``certfile``/``keyfile``/``verify``."""
    unknown = set(options) - {"cafile", "capath", "cadata", "certfile", "keyfile", "verify"}
    if unknown:
        raise ConfigurationError(f"unknown TLS option(s): {', '.join(sorted(unknown))}")
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=options.get("cafile"),
        capath=options.get("capath"),
        cadata=options.get("cadata"),
    )
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if options.get("verify", True) is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
