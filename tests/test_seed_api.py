"""The seed's API: the issue's examples, run as written, and the module's exports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import actorbus
import actorbus.message_bus as seed
from actorbus.config import MODE_VARIABLE

SYNC_EXAMPLE = """
from actorbus.message_bus import message_bus, MessageTypes

async def handle_strategy_signal(message_type, data):
    print(f"Received signal: {data}")

message_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handle_strategy_signal)
message_bus.publish_sync(message_type=MessageTypes.STRATEGY_SIGNAL,
                         data={"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0})
message_bus.shutdown()
"""

ASYNC_EXAMPLE = """
import asyncio
from actorbus.message_bus import get_async_message_bus, MessageTypes

async def async_handler(message_type, data):
    print(f"Async handler received: {data}")

async def main():
    bus = get_async_message_bus()
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, async_handler)
    await bus.publish(message_type=MessageTypes.STRATEGY_SIGNAL,
                      data={"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0})
    await bus.shutdown()

asyncio.run(main())
"""

ACTOR_EXAMPLE = """
import asyncio
from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, Supervisor, handles

class Strategy(Actor):
    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        await self.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": msg.data["symbol"], "action": "BUY"})

class Risk(Actor):
    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, msg: Envelope) -> None:
        print(f"Risk saw: {msg.data}")

async def main():
    async with AsyncMessageBus(mode="in_memory") as bus:
        await bus.spawn(Supervisor([Strategy, Risk], strategy="one_for_one", max_restarts=3, within=5.0))
        await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC/USDT", "price": 50000.0})

asyncio.run(main())
"""  # noqa: E501

# Both snippets together: the sync face's subscriber sees what the async face publishes.
CROSS_EXAMPLE = """
import asyncio
from actorbus.message_bus import get_async_message_bus, message_bus, MessageTypes

def on_signal(message_type, data):
    print(f"sync subscriber got: {data}")

message_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, on_signal)

async def main():
    bus = get_async_message_bus()
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"from": "async"})
    await bus.shutdown()

asyncio.run(main())
message_bus.shutdown()
"""


def run_example(source: str, mode: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != MODE_VARIABLE}
    if mode is not None:
        env[MODE_VARIABLE] = mode
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("mode", [None, "in_memory"])
def test_sync_example_runs_as_written(mode: str | None) -> None:
    output = run_example(SYNC_EXAMPLE, mode)
    assert output == (
        "Received signal: {'symbol': 'BTC/USDT', 'action': 'BUY', 'price': 50000.0}\n"
    )


@pytest.mark.parametrize("mode", [None, "in_memory"])
def test_async_example_runs_as_written(mode: str | None) -> None:
    output = run_example(ASYNC_EXAMPLE, mode)
    assert output == (
        "Async handler received: {'symbol': 'BTC/USDT', 'action': 'BUY', 'price': 50000.0}\n"
    )


def test_actor_example_runs_as_written() -> None:
    output = run_example(ACTOR_EXAMPLE)
    assert output == "Risk saw: {'symbol': 'BTC/USDT', 'action': 'BUY'}\n"


def test_default_faces_reach_each_other() -> None:
    assert run_example(CROSS_EXAMPLE) == "sync subscriber got: {'from': 'async'}\n"


def test_unknown_mode_in_the_environment_is_a_clear_error() -> None:
    env = {**os.environ, MODE_VARIABLE: "carrier_pigeon"}
    result = subprocess.run(
        [sys.executable, "-c", SYNC_EXAMPLE],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "carrier_pigeon" in result.stderr
    assert "in_memory" in result.stderr


def test_message_bus_module_exports() -> None:
    assert set(seed.__all__) >= {
        "message_bus",
        "get_async_message_bus",
        "MessageTypes",
        "MessageBus",
        "AsyncMessageBus",
    }
    assert isinstance(seed.message_bus, actorbus.MessageBus)
    assert seed.MessageTypes is actorbus.MessageTypes
    assert seed.MessageBus is actorbus.MessageBus
    assert seed.AsyncMessageBus is actorbus.AsyncMessageBus


def test_get_async_message_bus_is_process_wide() -> None:
    first = seed.get_async_message_bus()
    assert first is seed.get_async_message_bus()
    assert isinstance(first, actorbus.AsyncMessageBus)


def test_front_door() -> None:
    for name in actorbus.__all__:
        assert getattr(actorbus, name) is not None
    for name in (
        "Actor",
        "AsyncMessageBus",
        "Envelope",
        "MessageBus",
        "MessageTypes",
        "Supervisor",
        "handles",
    ):
        assert name in actorbus.__all__
