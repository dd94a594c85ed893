"""``actorbus stop``: one command winds down every process of a split system gracefully.

The trading demo runs split over two processes (the book's side, the market's
side) for far longer than the test; ``actorbus stop`` on their prefix makes
both wind down as on Ctrl-C: the feed stops, what is in flight is handled and
acknowledged, each prints its summary and exits 0, and the audit of the two
reports together finds the book and the message counts consistent.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from trading_helpers import ROOT, actorbus_command, cli_env, delete_prefix, run_cli

from actorbus_trading import audit

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def prefix(rabbitmq_url: str, unique_prefix: str) -> Iterator[str]:
    """A fresh prefix; everything under it is deleted afterwards."""
    yield unique_prefix
    asyncio.run(delete_prefix(rabbitmq_url, unique_prefix))


def start_run(url: str, prefix: str, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        actorbus_command(
            "run", "--mode", "rabbitmq", "--url", url, "--prefix", prefix, *args, "--json"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=ROOT,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # the first progress line: its queues are bound
    assert "ticks" in line, line + (process.stderr.read() if process.poll() is not None else "")
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    try:
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, json.loads(out)


def test_actorbus_stop_winds_down_a_split_system(rabbitmq_url: str, prefix: str) -> None:
    book = start_run(
        rabbitmq_url, prefix, "--only", "risk,execution,exchange,position", "--duration", "120"
    )
    market = start_run(
        rabbitmq_url, prefix, "--only", "market_data,strategy", "--duration", "120", "--rate", "500"
    )
    # The book process's order-sensitive actors say what they are (`actorbus stats`).
    heard = run_cli(
        "stats",
        "--mode",
        "rabbitmq",
        "--url",
        rabbitmq_url,
        "--prefix",
        prefix,
        "--json",
        timeout=60,
    )
    assert heard.returncode == 0, heard.stderr
    roles = {
        name: actor.get("role")
        for system in json.loads(heard.stdout)["systems"].values()
        for name, actor in system["actors"].items()
    }
    assert roles["execution"] == roles["position"] == "active"
    assert roles["risk"] is None  # not single_active
    stopped = run_cli(
        "stop",
        "--mode",
        "rabbitmq",
        "--url",
        rabbitmq_url,
        "--prefix",
        prefix,
        "--json",
        "--expect",
        "2",
        "--wait",
        "60",
        timeout=90,
    )
    assert stopped.returncode == 0, stopped.stderr
    book_code, book_report = finish(book)
    market_code, market_report = finish(market)
    gone = json.loads(stopped.stdout)["stopped"]
    assert len(gone) == 2, gone  # both processes announced their shutdown
    assert (book_code, market_code) == (0, 0)
    assert book_report["ended_by"] == market_report["ended_by"] == "stopped"
    assert market_report["counts"]["ticks"] > 0
    assert book_report["counts"]["fills"] > 0
    assert audit([market_report, book_report]) == []


def test_stop_in_memory_or_on_an_idle_prefix(rabbitmq_url: str, unique_prefix: str) -> None:
    in_memory = run_cli("stop", "--mode", "in_memory", timeout=30)
    assert in_memory.returncode == 2, in_memory.stderr
    assert "nothing outlives a process" in in_memory.stderr
    idle = run_cli("stop", "--url", rabbitmq_url, "--prefix", unique_prefix, timeout=30)
    assert idle.returncode == 0, idle.stderr
    assert "no actorbus system has run there" in idle.stderr
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=True
    )
    assert unique_prefix not in listing.stdout, "stop created something on an idle prefix"
