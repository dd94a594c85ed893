"""Every program in examples/ runs, and says what its docstring promises."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from trading_helpers import ROOT, cli_env, delete_prefix

EXAMPLES = ROOT / "examples"


def run_example(name: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or cli_env(),
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_seed_bus_api_sync() -> None:
    out = run_example("seed_bus_sync.py")
    assert out == "Received signal: {'symbol': 'BTC/USDT', 'action': 'BUY', 'price': 50000.0}\n"


def test_seed_bus_api_async() -> None:
    out = run_example("seed_bus_async.py")
    assert (
        out == "Async handler received: {'symbol': 'BTC/USDT', 'action': 'BUY', 'price': 50000.0}\n"
    )


SYNC_SNIPPET = """\
from actorbus.message_bus import message_bus, MessageTypes

async def handle_strategy_signal(message_type, data):
    print(f"Received signal: {data}")

message_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handle_strategy_signal)
message_bus.publish_sync(message_type=MessageTypes.STRATEGY_SIGNAL,
                         data={"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0})
message_bus.shutdown()
"""

ASYNC_SNIPPET = """\
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


def test_seed_snippets_are_exactly_the_ones_of_the_system_replaced() -> None:
    assert (EXAMPLES / "seed_bus_sync.py").read_text().endswith(SYNC_SNIPPET)
    assert (EXAMPLES / "seed_bus_async.py").read_text().endswith(ASYNC_SNIPPET)


def test_first_actor() -> None:
    out = run_example("first_actor.py")
    assert "'price': 102.0" in out
    assert "'price': 105.0" in out


def test_supervisor_tree_with_a_crashing_actor() -> None:
    out = run_example("supervisor_tree.py")
    assert out.count("flaky: started") == 3  # first start and two restarts
    assert "flaky: restarts 2, processed 10" in out
    assert "steady: restarts 0, processed 10" in out
    assert "dead letters left: 0" in out


def test_request_reply() -> None:
    out = run_example("request_reply.py")
    assert "reply: {'symbol': 'BTC/USDT', 'price': 50000.0}" in out
    assert "trader: ETH/USDT is at 3000.0" in out
    assert "failed: KeyError" in out
    assert "timeout: no reply" in out


def test_dead_letters_and_replay() -> None:
    out = run_example("dead_letters.py")
    assert out.count("dead letter: position.update") == 2
    assert "replayed 2" in out
    assert "booked BTC/USDT" in out
    assert "booked ETH/USDT" in out
    assert "left: 0" in out


def test_trading_system_from_code() -> None:
    out = run_example("trading_system.py")
    assert "audit: consistent" in out


@pytest.mark.rabbitmq
def test_two_processes_over_rabbitmq(rabbitmq_url: str, unique_prefix: str) -> None:
    env = cli_env()
    env["TRADING_SYSTEM_RABBITMQ_URL"] = rabbitmq_url
    env["ACTORBUS_EXAMPLE_PREFIX"] = unique_prefix
    try:
        out = run_example("two_processes_rabbitmq.py", env)
    finally:
        asyncio.run(
            delete_prefix(rabbitmq_url, unique_prefix, queues=[f"{unique_prefix}.actor.venue"])
        )
    lines = out.splitlines()
    client_pid = lines[0].split()[1].rstrip(":")
    server_pid = lines[0].split()[-1]
    assert client_pid != server_pid
    assert lines[1:] == [f"client: order {n} filled by process {server_pid}" for n in (1, 2, 3)]
