"""Two processes over RabbitMQ: a venue actor in one, its client in the other.

Needs RabbitMQ (localhost:5672, or the URL in TRADING_SYSTEM_RABBITMQ_URL)::

    python examples/two_processes_rabbitmq.py

The script starts a second copy of itself (``serve``) that runs the ``Venue``
actor; then, as the client, it asks the venue for a quote (request/reply
across processes) and sends orders that the venue confirms with
EXECUTION_ORDER_STATUS, which the client receives through a subscription.
The same code runs in memory in one process: only ``mode`` changes.
Names on the broker start with ACTORBUS_EXAMPLE_PREFIX (default ``example``).
"""

import asyncio
import os
import subprocess
import sys

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, handles

PREFIX = os.environ.get("ACTORBUS_EXAMPLE_PREFIX", "example")
ORDERS = 3


class Venue(Actor):
    @handles(MessageTypes.MARKET_DATA_REQUEST)
    async def on_quote(self, msg: Envelope) -> dict:
        return {"symbol": msg.data["symbol"], "price": 50_000.0, "pid": os.getpid()}

    @handles(MessageTypes.EXECUTION_ORDER_REQUEST)
    async def on_order(self, msg: Envelope) -> None:
        await self.publish(
            MessageTypes.EXECUTION_ORDER_STATUS,
            {"order": msg.data["n"], "state": "filled", "pid": os.getpid()},
        )


async def serve() -> None:
    async with AsyncMessageBus(mode="rabbitmq", prefix=PREFIX, fallback=False) as bus:
        await bus.spawn(Venue)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed


async def client() -> None:
    async with AsyncMessageBus(mode="rabbitmq", prefix=PREFIX, fallback=False) as bus:
        confirmed: list[dict] = []
        all_in = asyncio.Event()

        async def on_status(message_type, data) -> None:
            confirmed.append(data)
            if len(confirmed) == ORDERS:
                all_in.set()

        await bus.subscribe(MessageTypes.EXECUTION_ORDER_STATUS, on_status)
        quote = await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC/USDT"})
        print(f"client {os.getpid()}: quote {quote['price']} from process {quote['pid']}")
        for n in range(1, ORDERS + 1):
            await bus.publish(MessageTypes.EXECUTION_ORDER_REQUEST, {"n": n})
        await asyncio.wait_for(all_in.wait(), timeout=10)
    for status in sorted(confirmed, key=lambda s: s["order"]):
        print(f"client: order {status['order']} {status['state']} by process {status['pid']}")


def main() -> None:
    """Start the venue process, run the client against it, then stop the venue."""
    server = subprocess.Popen(
        [sys.executable, __file__, "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the venue process did not start (is RabbitMQ running?)")
        asyncio.run(client())
    finally:
        server.stdin.close()  # the venue's signal to shut down
        server.wait(timeout=20)
        server.stdout.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        asyncio.run(serve())
    else:
        main()
