"""The trading system over RabbitMQ: the demo, under chaos, split over two processes; dlq, stats.

Every test uses its own prefix and deletes what it declared on the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from trading_helpers import ROOT, actorbus_command, cli_env, delete_prefix, run_cli, wait_for

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, RetryPolicy, handles
from actorbus_trading import audit

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def prefix(rabbitmq_url: str, unique_prefix: str) -> Iterator[str]:
    """A fresh prefix; everything under it is deleted afterwards."""
    yield unique_prefix
    asyncio.run(
        delete_prefix(rabbitmq_url, unique_prefix, queues=[f"{unique_prefix}.actor.broken"])
    )


def rabbit_args(url: str, prefix: str) -> list[str]:
    return ["--mode", "rabbitmq", "--url", url, "--prefix", prefix]


def run_report(url: str, prefix: str, *args: str) -> dict[str, Any]:
    done = run_cli("run", *rabbit_args(url, prefix), *args, "--json", "--quiet", timeout=90)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    report["exit_code"] = done.returncode
    return report


def test_demo_over_rabbitmq_leaves_a_consistent_book(rabbitmq_url: str, prefix: str) -> None:
    report = run_report(rabbitmq_url, prefix, "--duration", "3", "--seed", "1")
    assert report["mode"] == "rabbitmq"
    assert report["problems"] == []
    assert report["exit_code"] == 0
    assert report["counts"]["ticks"] > 0
    assert report["counts"]["fills"] > 0


def test_demo_over_rabbitmq_under_chaos(rabbitmq_url: str, prefix: str) -> None:
    report = run_report(rabbitmq_url, prefix, "--duration", "3", "--seed", "2", "--chaos", "0.05")
    assert report["problems"] == []
    assert report["chaos"]["injected"] > 0
    assert report["dead_letters"]["remaining"] == 0


def start_run(url: str, prefix: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        actorbus_command("run", *rabbit_args(url, prefix), *args, "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=ROOT,
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode in (0, 1, 130), err
    report: dict[str, Any] = json.loads(out)
    return report


def test_demo_split_over_two_processes(rabbitmq_url: str, prefix: str) -> None:
    book = start_run(
        rabbitmq_url, prefix, "--only", "risk,execution,exchange,position", "--duration", "60"
    )
    assert book.stderr is not None
    first = book.stderr.readline()  # a progress line: the book side's queues are bound
    assert "ticks" in first, first + (book.stderr.read() if book.poll() is not None else "")
    market = start_run(rabbitmq_url, prefix, "--only", "market_data,strategy", "--duration", "2")
    market_report = finish(market)
    book.send_signal(signal.SIGINT)  # the feed is done: wind the book side down (Ctrl-C)
    book_report = finish(book)
    assert book_report["ended_by"] == "interrupted"
    assert market_report["placed"] == ["market_data", "strategy"]
    assert book_report["counts"]["fills"] > 0
    assert market_report["problems"] == []
    assert book_report["problems"] == []
    assert audit([market_report, book_report]) == []


class Broken(Actor):
    retry = RetryPolicy(max_attempts=1)

    @handles(MessageTypes.POSITION_UPDATE, MessageTypes.POSITION_CLOSE)
    async def on_anything(self, msg: Envelope) -> None:
        raise RuntimeError("ledger is down")


@pytest.mark.anyio
async def test_dlq_commands_over_rabbitmq(rabbitmq_url: str, prefix: str) -> None:
    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=prefix, fallback=False
    ) as bus:
        await bus.spawn(Broken)
        await bus.publish(MessageTypes.POSITION_UPDATE, {"symbol": "X"})
        await bus.publish(MessageTypes.POSITION_CLOSE, {"symbol": "X"})
        await wait_for(lambda: bus.stats().actors["broken"].dead_lettered == 2, 10)

    def cli(*args: str) -> Any:
        done = await_cli(*args)
        return json.loads(done)

    def await_cli(*args: str) -> str:
        done = run_cli("dlq", *args, *rabbit_args(rabbitmq_url, prefix), "--json")
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = cli("list")
    assert listed["count"] == 2
    assert {entry["error_type"] for entry in listed["dead_letters"]} == {"RuntimeError"}
    assert cli("list", "--actor", "someone_else")["count"] == 0
    assert cli("list", "--type", "position.close")["count"] == 1
    assert cli("replay", "--type", "position.close") == {"replayed": 1}
    assert cli("purge", "--actor", "broken") == {"purged": 1}
    assert cli("list")["count"] == 0
    text = run_cli("dlq", "list", *rabbit_args(rabbitmq_url, prefix))
    assert text.stdout.startswith("0 dead letter(s)")


def test_stats_hears_a_running_system(rabbitmq_url: str, prefix: str) -> None:
    running = start_run(rabbitmq_url, prefix, "--duration", "5", "--quiet")
    try:
        time.sleep(1.5)
        done = run_cli("stats", *rabbit_args(rabbitmq_url, prefix), "--json", "--wait", "2")
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout)
    finally:
        report = finish(running)
    assert report["problems"] == []
    (system,) = stats["systems"].values()
    assert set(system["placed"]) == {
        "market_data", "strategy", "risk", "execution", "exchange", "position"
    }  # fmt: skip
    assert system["actors"]["strategy"]["processed"] > 0
    assert stats["dead_letters"] == {}


def test_messages_waiting_from_before_the_run_are_accounted_for(
    rabbitmq_url: str, prefix: str
) -> None:
    first = run_report(rabbitmq_url, prefix, "--duration", "1", "--rate", "500")
    assert first["problems"] == []  # the queues exist now, durable

    async def leave_signals() -> None:  # as `dlq replay` does when no run is there to take them
        async with AsyncMessageBus(mode="rabbitmq", url=rabbitmq_url, prefix=prefix) as bus:
            for _ in range(5):
                await bus.publish(
                    MessageTypes.STRATEGY_SIGNAL,
                    {"symbol": "BTC/USDT", "side": "buy", "quantity": 1, "price": 50_000.0},
                )

    asyncio.run(leave_signals())
    report = run_report(rabbitmq_url, prefix, "--duration", "1", "--rate", "500")
    assert report["problems"] == []
    assert report["carried_over"] == {"risk": 5}
    accounting = report["accounting"]
    assert accounting["delivered"] + accounting["carried_over"] == (
        accounting["handled"] + accounting["conflated"] + accounting["dead_lettered"]
    )


def test_chaos_over_rabbitmq_winds_down_settled_with_balanced_dead_letters(
    rabbitmq_url: str, prefix: str
) -> None:
    report = run_report(rabbitmq_url, prefix, "--duration", "3", "--seed", "2", "--chaos", "0.2")
    assert report["problems"] == []
    assert report["drained"] is True
    dead = report["dead_letters"]
    assert dead["dead_lettered"] == (
        dead["replayed_by_supervisors"] + dead["replayed_at_end"] + dead["remaining"]
    )
