"""One OS process of the process-death tests: a consumer or a publisher over RabbitMQ.

``python worker.py consume URL PREFIX RECORDS [--single-active] [--delay S]``
runs the actor ``counter`` (a ``single_active`` one with the flag), and for
every message it finished appends ``seq pid start end`` (epoch seconds) to
RECORDS, written before the handler returns, so before the ack: a message
acknowledged is always on record. Prints ``ready`` once consuming.

``python worker.py publish URL PREFIX CONFIRMED COUNT`` publishes COUNT
messages (``seq`` 0..COUNT-1, 32 in flight) and appends each ``seq`` to
CONFIRMED as soon as its publish returned, i.e. RabbitMQ confirmed it.
Prints ``ready`` before the first publish.

Both run until killed, or (consumer) until their standard input closes. Each
record is one ``os.write`` of a whole line, so a ``kill -9`` leaves whole lines.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, QueueOptions, handles

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST


def counter_class(records: int, *, single_active: bool, delay: float) -> type[Actor]:
    """The consuming actor, writing one line per finished message to file descriptor ``records``."""

    class Counter(Actor):
        name = "counter"
        mailbox_size = 20

        @handles(ORDER)
        async def on_order(self, msg: Envelope) -> None:
            start = time.time()
            if delay:
                await asyncio.sleep(delay)
            line = f"{msg.data['seq']} {os.getpid()} {start:.6f} {time.time():.6f}\n"
            os.write(records, line.encode())

    Counter.queue_options = QueueOptions(single_active=single_active)
    return Counter


async def consume(url: str, prefix: str, path: str, single_active: bool, delay: float) -> None:
    records = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False) as bus:
        await bus.spawn(counter_class(records, single_active=single_active, delay=delay))
        role = bus.stats().actors["counter"].role or "competing"
        print(f"ready {role}", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the test closes our input


async def publish(url: str, prefix: str, path: str, count: int) -> None:
    confirmed = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False) as bus:
        print("ready", flush=True)
        in_flight = asyncio.Semaphore(32)

        async def one(seq: int) -> None:
            try:
                await bus.publish(ORDER, {"seq": seq})
                os.write(confirmed, f"{seq}\n".encode())
            finally:
                in_flight.release()

        tasks = []
        for seq in range(count):
            await in_flight.acquire()
            tasks.append(asyncio.create_task(one(seq)))
            await asyncio.sleep(0.0005)
        await asyncio.gather(*tasks)
        print("done", flush=True)
        await asyncio.to_thread(sys.stdin.read)


def main(argv: list[str]) -> None:
    """Parse the command line (see the module docs) and run."""
    kind, url, prefix, path = argv[:4]
    if kind == "consume":
        delay = float(argv[argv.index("--delay") + 1]) if "--delay" in argv else 0.0
        asyncio.run(consume(url, prefix, path, "--single-active" in argv, delay))
    else:
        asyncio.run(publish(url, prefix, path, int(argv[4])))


if __name__ == "__main__":
    main(sys.argv[1:])
