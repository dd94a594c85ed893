"""Connection settings, redaction, and falling back to memory when the broker is refused."""

from __future__ import annotations

import logging
import socket

import pytest

from actorbus import AsyncMessageBus, BrokerRefused, BrokerUnavailable, MessageTypes
from actorbus.brokers.rabbitmq import DEFAULT_CONNECTION_PARAMS, ConnectionSettings, redact
from actorbus.config import URL_VARIABLE
from actorbus.errors import ConfigurationError


def refused_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    settings = ConnectionSettings()
    assert DEFAULT_CONNECTION_PARAMS == {
        "host": "localhost",
        "port": 5672,
        "virtual_host": "/",
        "username": "guest",
        "password": "guest",
    }
    assert (settings.host, settings.port, settings.virtual_host) == ("localhost", 5672, "/")
    assert settings.username == "guest"


def test_url_overrides_only_what_it_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_VARIABLE, "amqp://env-host/")
    assert ConnectionSettings().host == "env-host"
    settings = ConnectionSettings("amqp://bob:s3cr%40t@broker:5673/trading%2Fprod?heartbeat=3")
    assert (settings.host, settings.port, settings.virtual_host) == ("broker", 5673, "trading/prod")
    assert settings.username == "bob"
    assert settings.heartbeat == 3
    url = settings.amqp_url()
    assert url.password == "s3cr@t"
    assert url.path[1:] == "trading/prod"  # what the AMQP client takes as the vhost
    assert ConnectionSettings("amqp://broker").port == 5672


def test_amqps_builds_a_tls_context() -> None:
    settings = ConnectionSettings("amqps://broker/?no_verify_ssl=1")
    assert settings.port == 5671
    assert settings.ssl_context is not None
    assert settings.ssl_context.check_hostname is False
    assert "no_verify_ssl" not in str(settings.amqp_url())
    with pytest.raises(ConfigurationError):
        ConnectionSettings("amqps://broker/", ssl_options={"bogus": 1})
    with pytest.raises(ConfigurationError):
        ConnectionSettings("http://broker/")


def test_credentials_never_printed() -> None:
    settings = ConnectionSettings("amqp://bob:hunter2@broker:5673/")
    assert "hunter2" not in str(settings)
    assert "hunter2" not in repr(settings)
    assert "bob" not in redact("amqp://bob:hunter2@broker/")
    assert "hunter2" not in redact("amqp://bob:hunter2@broker/")


@pytest.mark.anyio
async def test_refused_broker_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    url = f"amqp://guest:topsecret@127.0.0.1:{refused_port()}/"
    with caplog.at_level(logging.WARNING):
        async with AsyncMessageBus(mode="rabbitmq", url=url, connect_timeout=2.0) as bus:
            assert bus.mode == "in_memory"
            got: list[object] = []

            async def on_signal(message_type: str, data: object) -> None:
                got.append(data)

            await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, on_signal)
            await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"ok": True})
    assert "running in memory" in caplog.text
    assert "topsecret" not in caplog.text


@pytest.mark.anyio
async def test_refused_broker_without_fallback_raises() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{refused_port()}/"
    bus = AsyncMessageBus(mode="rabbitmq", url=url, fallback=False, connect_timeout=2.0)
    with pytest.raises(BrokerUnavailable):
        await bus.start()
    await bus.shutdown()


@pytest.mark.anyio
async def test_silent_listener_times_out() -> None:
    """A port that accepts but never answers must not hang the start."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        bus = AsyncMessageBus(mode="rabbitmq", url=f"amqp://127.0.0.1:{port}/", connect_timeout=0.5)
        await bus.start()
        assert bus.mode == "in_memory"
        await bus.shutdown()


@pytest.mark.anyio
@pytest.mark.rabbitmq
async def test_wrong_password_is_refused_never_a_fallback_and_not_logged(
    rabbitmq_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = rabbitmq_url.replace("guest:guest@", "guest:wrong-s3cret@")
    bus = AsyncMessageBus(mode="rabbitmq", url=url, connect_timeout=5.0)  # fallback on
    with caplog.at_level(logging.DEBUG), pytest.raises(BrokerRefused) as raised:
        await bus.start()
    await bus.shutdown()
    assert "wrong-s3cret" not in str(raised.value)
    assert "wrong-s3cret" not in caplog.text


@pytest.mark.anyio
@pytest.mark.rabbitmq
async def test_missing_vhost_is_refused_never_a_fallback(rabbitmq_url: str) -> None:
    bus = AsyncMessageBus(mode="rabbitmq", url=f"{rabbitmq_url}no-such-vhost", connect_timeout=5.0)
    with pytest.raises(BrokerRefused, match="no-such-vhost"):
        await bus.start()
    await bus.shutdown()
