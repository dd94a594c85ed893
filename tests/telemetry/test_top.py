"""``actorbus top`` in a real terminal (tmux): start it, read the screen, quit with ``q``."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from trading_helpers import ROOT, actorbus_command, cli_env, delete_prefix

from actorbus.telemetry.view import SystemView


class Terminal:
    """One tmux session on a private server socket, 160x50."""

    def __init__(self, command: list[str]) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("this test needs tmux (scripts/ensure-tools.sh installs it)")
        self.socket = f"actorbus-test-{uuid.uuid4().hex[:8]}"
        line = f"{shlex.join(command)}; echo top exited $?; sleep 120"
        self._tmux("new-session", "-d", "-s", "top", "-x", "160", "-y", "50", line)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            cwd=ROOT,
            env=cli_env(),
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "top")

    def press(self, key: str) -> None:
        self._tmux("send-keys", "-t", "top", key)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = re.search(pattern, screen)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the screen:\n{screen}")
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


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
    terminal = Terminal(actorbus_command("top", "--url", rabbitmq_url, "--prefix", prefix))
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
        terminal.wait_for(r"top exited 0", timeout=30)
    finally:
        terminal.close()
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def test_top_watches_a_demo_in_memory_and_quits_on_q() -> None:
    terminal = Terminal(actorbus_command("top", "--demo", "60"))
    try:
        terminal.wait_for(r"running\s+up \d+s\s+in_memory connected")
        handled = r"strategy\s+running\s+-\s+[\d,]+\s+([1-9][\d,]*)\s+\d+"
        terminal.wait_for(handled)
        assert re.search(r"position\s+running", terminal.screen())
        terminal.press("q")
        # The demo winds down, then the last frame stays printed below.
        terminal.wait_for(r"top exited 0", timeout=60)
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
