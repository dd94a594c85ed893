"""One service with a module-level ``handler``, run as its own process by a test.

``python subscriber_app.py URL PREFIX TYPE`` subscribes ``handler`` to ``TYPE``
over RabbitMQ, prints ``ready``, then one line ``<type> <count>`` per message
received (the count so far of that type). When its standard input closes it
prints a JSON summary (counts by type, the queues it declared) and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from typing import Any

from actorbus import AsyncMessageBus

received: Counter[str] = Counter()


async def handler(message_type: str, data: Any) -> None:
    """The service's subscriber: counts and reports each message."""
    received[str(message_type)] += 1
    print(f"{message_type} {received[str(message_type)]}", flush=True)


async def main(url: str, prefix: str, message_type: str) -> None:
    """Subscribe, say ready, run until standard input closes, print the summary."""
    async with AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False) as bus:
        await bus.subscribe(message_type, handler)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
        queues, _ = bus.broker.declared_names()  # type: ignore[union-attr, attr-defined]
    print(json.dumps({"received": dict(received), "queues": queues}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
