"""A real terminal for command-line tests: a tmux session to start, read and type into.

:class:`Terminal` runs one command in a detached tmux session (160x50) on a
private server socket, so tests never touch the user's tmux. When the command
ends the pane prints ``exited <code>`` and stays open to be read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest


class Terminal:
    """One tmux session on a private server socket, 160x50, running ``command``."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("this test needs tmux (scripts/ensure-tools.sh installs it)")
        self.socket = f"actorbus-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd
        self.env = dict(os.environ) if env is None else env
        line = f"{shlex.join(command)}; echo exited $?; sleep 120"
        self._tmux("new-session", "-d", "-s", "test", "-x", "160", "-y", "50", line)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            cwd=self.cwd,
            env=self.env,
        ).stdout

    def screen(self, history: bool = False) -> str:
        """What the pane shows now (with ``history``, the lines scrolled off it too)."""
        return self._tmux("capture-pane", "-p", "-t", "test", *(("-S", "-") if history else ()))

    def press(self, key: str) -> None:
        """Type ``key`` (a tmux key name: ``q``, ``C-c``)."""
        self._tmux("send-keys", "-t", "test", key)

    def wait_for(self, pattern: str, timeout: float = 90.0, history: bool = False) -> re.Match[str]:
        """Wait until ``pattern`` is on the screen; fail after ``timeout`` s (a hang guard)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(history)
            found = re.search(pattern, screen)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the screen:\n{screen}")
            time.sleep(0.3)

    def close(self) -> None:
        """Kill the session's tmux server (and so the command, if still running)."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)
