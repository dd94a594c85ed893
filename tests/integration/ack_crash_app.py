"""An actor whose handler never awaits, and that dies after a number of messages.

``python ack_crash_app.py URL PREFIX LOG DIE_AFTER ACK_COUNT`` consumes the
queue of actor ``crasher``: its ``on_start`` waits a second, so the queue's
messages gather in the mailbox (a backlog, as after a pause), then a
synchronous handler works through them without the loop ever turning; it appends each
message's number to ``LOG`` (one line per handling, written straight to the
file) and calls ``os._exit`` right after handling ``DIE_AFTER`` messages (0:
never). ``ACK_COUNT`` is the broker's ``ack_flush_count``. It prints ``ready``
and runs until its standard input closes.
"""

from __future__ import annotations

import asyncio
import os
import sys

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, Supervisor, handles
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

WORK = MessageTypes.EXCHANGE_ORDER_SUBMIT


class Crasher(Actor):
    """Records each message, never awaits, and dies after ``die_after`` of them."""

    name = "crasher"
    log_fd = -1
    die_after = 0
    handled = 0

    async def on_start(self) -> None:
        await asyncio.sleep(1.0)  # the backlog gathers in the mailbox meanwhile

    @handles(WORK)
    def on_work(self, envelope: Envelope) -> None:
        os.write(Crasher.log_fd, f"{envelope.data['n']}\n".encode())
        Crasher.handled += 1
        if Crasher.handled == Crasher.die_after:
            os._exit(17)


async def main(url: str, prefix: str, log: str, die_after: int, ack_count: int) -> None:
    """Consume until standard input closes (or the handler ends the process)."""
    Crasher.log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    Crasher.die_after = die_after
    broker = AsyncRabbitMQBroker(url, prefix=prefix, ack_flush_count=ack_count)
    async with AsyncMessageBus(broker=broker, prefix=prefix, fallback=False) as bus:
        await bus.spawn(Supervisor([Crasher], name="app"))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
