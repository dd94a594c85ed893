"""Starting, killing and reading the worker processes of the process-death tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")


@dataclass(frozen=True)
class Record:
    """One message a worker finished: its sequence number, the worker's pid, when."""

    seq: int
    pid: int
    start: float
    end: float


class Worker:
    """A worker process (see ``worker.py``), started and waited for until it is ready."""

    def __init__(self, *args: str, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline()
        if not line.startswith("ready") or time.monotonic() > deadline:
            self.kill()
            raise AssertionError(f"worker {args[0]} did not start: {line!r}")
        self.role = line.split()[1] if len(line.split()) > 1 else ""
        """What the worker said it is (``active``/``standby``/``competing``)."""

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def kill(self) -> float:
        """``kill -9`` the worker; return the epoch time of the kill."""
        at = time.time()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._close_pipes()
        return at

    def stop(self) -> None:
        """Close its standard input (its signal to shut down cleanly) and wait."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.close()
                self.process.wait(20)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


def records(path: Path) -> list[Record]:
    """The whole lines of a records file, in the order they were written."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 4:
            out.append(Record(int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3])))
    return out


def confirmed(path: Path) -> list[int]:
    """The sequence numbers a publisher wrote as confirmed."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split()]
