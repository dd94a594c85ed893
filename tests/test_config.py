"""What actorbus is configured with: prefixes that make valid names, and redaction."""

from __future__ import annotations

import pytest

from actorbus import AsyncMessageBus, ConfigurationError, MessageBus
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker, ConnectionSettings, redact
from actorbus.config import MAX_PREFIX_LENGTH, check_prefix, redact_url

BAD_PREFIXES = [
    "desk(eu)",
    "x" * 300,
    "",
    "desk*",
    "désk",
    "desk\neu",
    "a" * (MAX_PREFIX_LENGTH + 1),
]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
@pytest.mark.parametrize("mode", ["in_memory", "rabbitmq"])
def test_a_prefix_amqp_cannot_name_is_refused_at_construction(mode: str, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        AsyncMessageBus(mode=mode, prefix=prefix)


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_the_broker_and_the_sync_bus_refuse_it_too(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        AsyncRabbitMQBroker(prefix=prefix)
    with pytest.raises(ConfigurationError):
        MessageBus(mode="rabbitmq", prefix=prefix)


@pytest.mark.parametrize("prefix", ["trading", "desk-eu", "desk_eu.2", "a:b/c@d#e,f+g h"])
def test_prefixes_amqp_takes_are_accepted(prefix: str) -> None:
    assert check_prefix(prefix) == prefix
    AsyncRabbitMQBroker(prefix=prefix)


def test_a_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="desk"):
        check_prefix("desk(eu)")


PASSWORDS = ["p@ss:w0rd", "p@ss/w0rd", "100%pass", "pässwörd€", "a:b@c/d%e", "@@::"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_redaction_shows_no_part_of_a_password(password: str) -> None:
    raw = f"amqp://guest:{password}@broker.example:5672/desk"
    shown = redact_url(raw)
    assert shown == "amqp://***@broker.example:5672/desk"
    assert redact is redact_url  # one redaction for the whole project


@pytest.mark.parametrize("password", PASSWORDS)
def test_settings_print_without_the_password(password: str) -> None:
    from urllib.parse import quote

    settings = ConnectionSettings(f"amqp://guest:{quote(password, safe='')}@broker/")
    printed = f"{settings} {settings!r}"
    for part in (password, quote(password, safe=""), password[1:-1]):
        assert part not in printed


def test_redaction_keeps_what_is_not_secret() -> None:
    assert redact_url("amqp://broker/") == "amqp://broker/"
    assert redact_url("amqps://u:p@h/v?cafile=/x.pem") == "amqps://***@h/v"
    assert redact_url("u:p@ss@h/v") == "***@h/v"
