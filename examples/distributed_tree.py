"""One supervisor tree spread over processes through RabbitMQ.

Every process builds the same tree and places part of it with
``bus.spawn(tree, actors=[...])``; the rest runs wherever the same tree is
spawned with the other names. Messages between the parts cross RabbitMQ, and
``ask`` works across processes (reply_to + correlation_id).

Run, each in its own terminal (a RabbitMQ broker on localhost, or set
``TRADING_SYSTEM_RABBITMQ_URL``):

    python examples/distributed_tree.py risk
    python examples/distributed_tree.py strategy
    python examples/distributed_tree.py feed       # publishes ticks, prints the signals

Start a second ``risk`` process and the two share the risk queue as competing
consumers: that is how a subsystem scales out. Names on the broker start with
ACTORBUS_EXAMPLE_PREFIX (default ``example``).
"""

import asyncio
import contextlib
import os
import sys
from typing import Any

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, Supervisor, handles

PREFIX = os.environ.get("ACTORBUS_EXAMPLE_PREFIX", "example")


class Strategy(Actor):
    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        verdict = await self.ask(MessageTypes.RISK_EXPOSURE_UPDATE, msg.data, timeout=5.0)
        if verdict["approved"]:
            await self.publish(
                MessageTypes.STRATEGY_SIGNAL,
                {
                    "symbol": msg.data["symbol"],
                    "action": "BUY",
                    "strategy_pid": os.getpid(),
                    "risk_pid": verdict["pid"],
                },
            )


class Risk(Actor):
    @handles(MessageTypes.RISK_EXPOSURE_UPDATE)
    async def on_check(self, msg: Envelope) -> dict[str, Any]:
        return {"approved": msg.data["price"] < 60_000, "pid": os.getpid()}


def tree() -> Supervisor:
    return Supervisor([Strategy, Risk], name="trading")


async def feed(bus: AsyncMessageBus) -> None:
    async def on_signal(message_type: str, data: dict[str, Any]) -> None:
        print("signal:", data)

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, on_signal)
    for n in range(10):
        await bus.publish(
            MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC/USDT", "price": 55_000.0 + n * 1_000}
        )
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)


async def main(role: str) -> None:
    async with AsyncMessageBus(mode="rabbitmq", prefix=PREFIX, fallback=False) as bus:
        if role == "feed":
            await feed(bus)
            return
        await bus.spawn(tree(), actors=[role])
        print(f"{role} running in process {os.getpid()}; Ctrl-C to stop")
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "feed"))
