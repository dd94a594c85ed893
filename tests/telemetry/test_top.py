"""``actorbus top`` in a real terminal (tmux): start it, read the screen, quit with ``q``."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from support.terminal import Terminal
from trading_helpers import ROOT, actorbus_command, cli_env, delete_prefix

from actorbus.telemetry.view import SystemView


def _terminal(command: list[str]) -> Terminal:
    return Terminal(command, cwd=ROOT, env=cli_env())


@pytest.fixture
def prefix(rabbitmq_url: str, unique_prefix: str) -> Iterator[str]:
    yield unique_prefix
    asyncio.run(delete_prefix(rabbitmq_url, unique_prefix))


@pytest.mark.rabbitmq
def test_top_shows_a_running_system_and_quits_on_q(rabbitmq_url: str, prefix: str) -> None:
    demo = subprocess.Popen(
        actorbus_command(
            *("run", "--mode", "rabbitmq", "--url", rabbitmq_url, "--prefix", prefix),
            *("--duration", "120", "--rate", "300", "--quiet"),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_env(),
        cwd=ROOT,
    )
    terminal = _terminal(actorbus_command("top", "--url", rabbitmq_url, "--prefix", prefix))
    try:
        source = re.escape(f"{socket.gethostname()}.{demo.pid}")
        terminal.wait_for(rf"{source}\s+running\s+up \d+s")
        row = r"strategy\s+running\s+-\s+[\d,]+\s+([\d,]+)\s+\d+"
        first = int(terminal.wait_for(row).group(1).replace(",", ""))
        # The view is live: the count moves on while the system trades.
        deadline = time.monotonic() + 60
        later = first
        while later <= first and time.monotonic() < deadline:
            time.sleep(0.5)
            later = int(terminal.wait_for(row).group(1).replace(",", ""))
        assert later > first
        screen = terminal.screen()
        for actor in ("market_data", "risk", "execution", "exchange", "position"):
            assert re.search(rf"{actor}\s+running", screen), screen
        # The supervisor tree of the process, and the broker node it is connected to.
        for supervisor in ("trading", "book", "market"):
            assert re.search(rf"{supervisor} \(one_for_one\)\s+running", screen), screen
        assert re.search(r"127\.0\.0\.1:\d+\s+connected", screen), screen
        assert "q quits" in screen
        terminal.press("q")
        terminal.wait_for(r"exited 0", timeout=30)
    finally:
        terminal.close()
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def test_top_watches_a_demo_in_memory_and_quits_on_q() -> None:
    terminal = _terminal(actorbus_command("top", "--demo", "60"))
    try:
        terminal.wait_for(r"running\s+up \d+s\s+in_memory connected")
        handled = r"strategy\s+running\s+-\s+[\d,]+\s+([1-9][\d,]*)\s+\d+"
        terminal.wait_for(handled)
        assert re.search(r"position\s+running", terminal.screen())
        terminal.press("q")
        # The demo winds down, then the last frame stays printed below.
        terminal.wait_for(r"exited 0", timeout=60)
        assert re.search(r"ran \d+\.\ds", terminal.screen())
    finally:
        terminal.close()


def test_the_view_renders_a_tree_rates_and_the_broker() -> None:
    from rich.console import Console

    view = SystemView("actorbus top  prefix desk")
    actors = {
        "strategy": {"state": "running", "processed": 100, "mailbox": 3, "restarts": 1},
        "risk": {"state": "failed", "processed": 7, "dead_lettered": 2, "role": "standby"},
    }
    tree = {
        "supervisor": "trading",
        "strategy": "one_for_one",
        "state": "running",
        "children": [{"actor": "strategy"}, {"actor": "risk"}, {"actor": "exchange"}],
    }
    broker = {"mode": "rabbitmq", "node": "10.0.0.5:5672", "connected": True, "outbox": 4}
    snapshot = {"source": "host.1", "state": "running", "elapsed": 3.0, "tree": tree}
    view.update({**snapshot, "actors": actors, "broker": broker}, now=10.0)
    later = {**actors, "strategy": {**actors["strategy"], "processed": 300}}
    view.update({**snapshot, "actors": later, "broker": broker}, now=12.0)
    view.event("host.1: risk restarted (restarts 1)")
    console = Console(width=140, record=True, color_system=None)
    console.print(view.render(now=12.5))
    text = console.export_text()
    assert "host.1  running  up 3s  rabbitmq 10.0.0.5:5672 connected" in text
    assert "outbox 4" in text
    assert re.search(r"trading \(one_for_one\)\s+running", text)
    assert re.search(r"strategy\s+running\s+-\s+100\s+300\s+3\b", text)
    assert re.search(r"risk\s+failed\s+standby\s+0\s+7\s+0", text)
    assert re.search(r"exchange\s+elsewhere", text)
    assert "risk restarted (restarts 1)" in text
    console = Console(width=140, record=True, color_system=None)
    console.print(view.render(now=20.0))
    assert "silent for 8s" in console.export_text()


def test_the_view_renders_counts_with_rates_and_positions_with_their_pnl() -> None:
    from rich.console import Console

    view = SystemView("actorbus run · in_memory")
    positions = {
        "BTC/USDT": {"quantity": 2, "avg_price": 100.0, "mark": 110.0,
                     "realised_pnl": 5.0, "unrealised_pnl": 20.0},
        "ETH/USDT": {"quantity": -1, "avg_price": 50.0, "mark": 52.5,
                     "realised_pnl": -1.5, "unrealised_pnl": -2.5},
    }  # fmt: skip
    view.update(
        {
            "source": "host.2",
            "state": "running",
            "actors": {"strategy": {"state": "running", "processed": 9}},
            "counts": {"ticks": 1200, "fills": 3},
            "count_rates": {"ticks": 600.0, "fills": 1.5},
            "positions": positions,
        }
    )
    console = Console(width=140, record=True, color_system=None)
    console.print(view)
    text = console.export_text()
    assert "ticks 1,200 (600/s)  fills 3 (2/s)" in text
    assert re.search(r"position\s+qty\s+avg price\s+mark\s+realised\s+unrealised", text)
    assert re.search(r"BTC/USDT\s+2\s+100\.00\s+110\.00\s+5\.00\s+20\.00", text)
    assert re.search(r"ETH/USDT\s+-1\s+50\.00\s+52\.50\s+-1\.50\s+-2\.50", text)
    assert re.search(r"P&L total\s+21\.00", text)
    assert re.search(r"strategy\s+running", text)
