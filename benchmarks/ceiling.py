"""The broker's own per-message ceiling, measured by a fast non-Python client.

``benchmarks/node/ceiling.js`` (Node.js, amqplib pinned in ``package.json``)
moves persistent messages through a durable topic exchange to a durable queue
with publisher confirms (up to 1000 unconfirmed) and consumer acks batched by
100 (``multiple``), prefetch 1000: about as fast as the broker takes messages
with those guarantees. The actorbus RabbitMQ rows are reported as a fraction of
it. The scenario runs only where ``node`` and ``npm`` are on the PATH; its first
run installs amqplib with ``npm install`` into ``benchmarks/node/node_modules``
(git-ignored).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .harness import Metrics
from .rabbit import BODY, TIME_LIMIT, URL, rabbitmq_down

__all__ = ["node_ceiling", "node_missing"]

NODE_DIR = Path(__file__).resolve().parent / "node"


def node_missing() -> str | None:
    """Why the Node.js ceiling cannot run (installing amqplib first if needed), or ``None``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "Node.js (node and npm) is not installed"
    if not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            return f"npm install of amqplib failed: {done.stderr.strip()[-500:]}"
    return rabbitmq_down()


def node_ceiling(n: int) -> Metrics:
    """Messages per second end to end, as the Node.js client moves them."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed")
    done = subprocess.run(
        [node, "ceiling.js", URL, str(n), BODY.hex()],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ceiling.js failed: {done.stderr.strip()[-1000:]}")
    rate = float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])
    return {"rate": rate}
