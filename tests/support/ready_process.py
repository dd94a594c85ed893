"""Start a helper program that prints ``ready`` once it is set up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_ready(app: Path, *args: str, what: str) -> subprocess.Popen[str]:
    """Run ``app`` with ``args`` in a new Python process; return once it printed ``ready``."""
    process = subprocess.Popen(
        [sys.executable, str(app), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        process.wait(5)
        process.stdout.close()
        raise AssertionError(f"{what} did not start: {line!r}")
    return process
