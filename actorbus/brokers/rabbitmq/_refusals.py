"""Tell a broker that refuses from a broker that cannot be reached, by exception type.

Only a broker that cannot be reached (connection refused, DNS, a timeout, a
connection dropped mid-handshake) is an outage the bus may ride out in memory:
:class:`~actorbus.errors.BrokerUnavailable`. Everything the broker (or the TLS
layer in front of it) answered with a no is a mistake to fix, and may be an
attack: :class:`~actorbus.errors.BrokerRefused`, whatever ``fallback`` says. A
name the AMQP client refuses is a :class:`~actorbus.errors.ConfigurationError`.
Messages name the cause and never the password.
"""

from __future__ import annotations

import ssl
from typing import TypeVar

from aiormq.exceptions import (
    ChannelAccessRefused,
    ConnectionNotAllowed,
    InvalidFrameError,
    ProbableAuthenticationError,
)

from ...errors import ActorbusError, BrokerRefused, BrokerUnavailable, ConfigurationError
from ._params import ConnectionSettings

__all__ = ["classify", "refused_declaration"]

_E = TypeVar("_E", bound=BaseException)


def classify(exc: BaseException, settings: ConnectionSettings) -> ActorbusError:
    """The actorbus error for a failed connect (and first declarations) to ``settings``."""
    if isinstance(exc, ActorbusError):
        return exc
    where = f"RabbitMQ at {settings}"
    certificate = _cause(exc, ssl.SSLCertVerificationError)
    if certificate is not None:
        detail = certificate.verify_message or certificate.reason or str(certificate)
        return BrokerRefused(
            f"the TLS certificate of {where} did not verify (CERTIFICATE_VERIFY_FAILED: "
            f"{detail}): check the CA given (cafile) and the host name; never turn "
            "verification off to get past this, it may be an attack"
        )
    tls = _cause(exc, ssl.SSLError)
    if tls is not None and not isinstance(tls, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return BrokerRefused(
            f"the TLS handshake with {where} failed ({tls.reason or tls}): is port "
            f"{settings.port} a TLS listener, and are the TLS options right?"
        )
    if isinstance(exc, ProbableAuthenticationError):
        return BrokerRefused(
            f"{where} refused the login of user {settings.username!r}: "
            "check the username and password"
        )
    if isinstance(exc, InvalidFrameError | ConnectionNotAllowed):
        # The handshake went through to connection.open, which was answered with a close.
        return BrokerRefused(
            f"{where} refused the virtual host {settings.virtual_host!r}: it does not "
            f"exist, or user {settings.username!r} may not use it"
        )
    if isinstance(exc, ChannelAccessRefused):
        return refused_declaration(exc, settings)
    if isinstance(exc, ValueError) and not isinstance(exc, OSError):
        return ConfigurationError(f"a name the bus needs is not a valid AMQP name: {exc}")
    return BrokerUnavailable(f"cannot connect to {where}: {type(exc).__name__}: {exc}")


def refused_declaration(exc: ChannelAccessRefused, settings: ConnectionSettings) -> BrokerRefused:
    """The error for a declaration the user's permissions refuse."""
    return BrokerRefused(
        f"RabbitMQ at {settings} refused user {settings.username!r} a declaration "
        f"(ACCESS_REFUSED: {_reply_text(exc)}): grant the user configure permission on the "
        "prefix's names, or have them declared by an administrator (`actorbus topology` "
        "prints them) and run the bus with declare='passive'"
    )


def _reply_text(exc: BaseException) -> str:
    return " ".join(str(arg) for arg in exc.args if arg is not None) or type(exc).__name__


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first exception it was raised from (or during) that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
