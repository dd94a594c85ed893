"""Scenario 7: the broker is down when the bus starts.

A refused port makes the bus fall back to memory within 1 s; a port that
accepts but never answers (a silent listener) within the connect timeout. With
``fallback=False`` the same two raise ``BrokerUnavailable`` as quickly. Every
message published after the fallback is handled: none is lost on the way.
"""

from __future__ import annotations

import socket
import time

import pytest
from support.checker import LossChecker, record_row
from support.scenario import Publisher, counting_actor, slack
from support.tcp_proxy import TcpProxy

from actorbus import AsyncMessageBus, BrokerUnavailable

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 2000
REFUSED_WITHIN = 1.0
CONNECT_TIMEOUT = 1.5
SLACK = 0.75


def refused_url() -> str:
    """An AMQP URL on a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


async def start_timed(bus: AsyncMessageBus) -> float:
    began = time.monotonic()
    await bus.start()
    return time.monotonic() - began


async def run_fallback(url: str, label: str, limit: float) -> None:
    checker = LossChecker(f"7. down at start, {label}")
    bus = AsyncMessageBus(mode="rabbitmq", url=url, connect_timeout=CONNECT_TIMEOUT)
    try:
        took = await start_timed(bus)
        assert bus.mode == "in_memory"
        await bus.spawn(counting_actor(checker, "counter"))
        await Publisher(bus, [checker]).run(MESSAGES)
        assert await checker.wait_for(MESSAGES, timeout=30)
    finally:
        await bus.shutdown()
    result = checker.result()
    record_row(
        f"7. Broker down at start ({label}): fallback to memory",
        messages=MESSAGES,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=took,
        note="recovery = time to fall back",
        result=result,
    )
    assert took <= limit, took
    assert (result.confirmed, result.received, result.lost, result.duplicated) == (
        MESSAGES,
        MESSAGES,
        0,
        0,
    ), result.summary()


async def test_refused_port_falls_back_within_1s() -> None:
    await run_fallback(refused_url(), "refused port", slack(REFUSED_WITHIN))


async def test_silent_port_falls_back_within_the_connect_timeout() -> None:
    async with TcpProxy("127.0.0.1", 9) as silent:
        silent.blackhole()
        await run_fallback(silent.url(), "silent port", CONNECT_TIMEOUT + SLACK)


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
async def test_without_fallback_the_start_fails_in_time(silent: bool) -> None:
    async with TcpProxy("127.0.0.1", 9) as listener:
        listener.blackhole()
        url = listener.url() if silent else refused_url()
        bus = AsyncMessageBus(
            mode="rabbitmq", url=url, connect_timeout=CONNECT_TIMEOUT, fallback=False
        )
        began = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await bus.start()
        took = time.monotonic() - began
        await bus.shutdown()
    assert took <= (CONNECT_TIMEOUT + SLACK if silent else slack(REFUSED_WITHIN)), took
