"""The consumer process of scenario C6: handles ticks, and dies on the poison one.

Usage: ``poison_worker.py URLS PREFIX OUT_FILE DELIVERY_LIMIT``. It consumes the
``worker`` actor's quorum queue, appends the id of every message it handled to
``OUT_FILE`` (before the message is acknowledged, as a side effect would be),
prints ``ready`` once consuming, and shuts down when its standard input closes.
A message whose data says ``poison`` ends the process on the spot
(``os._exit``): no exception, no clean-up, nothing the runtime can catch.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.scenario import FAST_RECOVERY, TICK

from actorbus import Actor, AsyncMessageBus, Envelope, handles
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

POISON_EXIT = 17


async def main(urls: str, prefix: str, handled: TextIO, limit: int) -> None:

    class Worker(Actor):
        name = "worker"

        @handles(TICK)
        async def on_tick(self, msg: Envelope) -> None:
            if msg.data.get("poison"):
                os._exit(POISON_EXIT)
            handled.write(msg.id + "\n")
            handled.flush()

    broker = AsyncRabbitMQBroker(
        urls, prefix=prefix, queue_type="quorum", delivery_limit=limit, **FAST_RECOVERY
    )
    async with AsyncMessageBus(broker=broker, prefix=prefix, fallback=False) as bus:
        await bus.spawn(Worker)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)


if __name__ == "__main__":
    with Path(sys.argv[3]).open("a") as out:
        asyncio.run(main(sys.argv[1], sys.argv[2], out, int(sys.argv[4])))
