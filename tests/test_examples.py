"""Every program in examples/ runs, and says what its docstring promises."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.rabbitmq
def test_one_tree_spread_over_three_processes(rabbitmq_url: str, unique_prefix: str) -> None:
    env = cli_env()
    env["TRADING_SYSTEM_RABBITMQ_URL"] = rabbitmq_url
    env["ACTORBUS_EXAMPLE_PREFIX"] = unique_prefix
    program = str(EXAMPLES / "distributed_tree.py")
    parts: list[subprocess.Popen[str]] = []
    try:
        for role in ("risk", "strategy"):
            part = subprocess.Popen(
                [sys.executable, "-u", program, role],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
            )  # fmt: skip
            parts.append(part)
            assert part.stdout is not None
            assert part.stdout.readline().startswith(f"{role} running in process")
        out = run_example("distributed_tree.py", env)
    finally:
        for part in parts:
            part.send_signal(signal.SIGINT)
        for part in parts:
            try:
                part.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                part.kill()
                part.communicate()
        names = [f"{unique_prefix}.actor.strategy", f"{unique_prefix}.actor.risk"]
        asyncio.run(delete_prefix(rabbitmq_url, unique_prefix, queues=names))
    signals = [line for line in out.splitlines() if line.startswith("signal:")]
    assert len(signals) == 5  # prices 55k..59k pass the risk check, 60k..64k do not
    risk_pid, strategy_pid = (str(part.pid) for part in parts)
    assert all(f"'risk_pid': {risk_pid}" in line for line in signals)
    assert all(f"'strategy_pid': {strategy_pid}" in line for line in signals)


def test_every_example_is_run_by_a_test_here_and_listed_in_the_readme() -> None:
    source = Path(__file__).read_text()
    readme = (EXAMPLES / "README.md").read_text()
    for program in sorted(EXAMPLES.glob("*.py")):
        assert f'"{program.name}"' in source, f"{program.name} has no test"
        assert f"`{program.name}`" in readme, f"{program.name} is not in examples/README.md"


def test_bench_my_actor() -> None:
    out = run_example("bench_my_actor.py")
    assert "msgs/s" in out
    assert "p99" in out
