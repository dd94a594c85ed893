"""A first actor: declare what it handles, spawn it, publish to it.

An actor handles one message at a time from its own mailbox; its handlers are
methods marked with @handles. It publishes through its own context (never the
bus object), and its state is private: no locks needed.
"""

import asyncio

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, handles


class Counter(Actor):
    """Counts ticks per symbol and reports every third one as a signal."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, int] = {}

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, msg: Envelope) -> None:
        symbol = msg.data["symbol"]
        self.seen[symbol] = self.seen.get(symbol, 0) + 1
        if self.seen[symbol] % 3 == 0:
            await self.publish(
                MessageTypes.STRATEGY_SIGNAL,
                {"symbol": symbol, "action": "BUY", "price": msg.data["price"]},
            )


async def main() -> None:
    signals: list[dict] = []

    async def on_signal(message_type: str, data: dict) -> None:
        signals.append(data)

    async with AsyncMessageBus(mode="in_memory") as bus:
        await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, on_signal)
        await bus.spawn(Counter)  # returns once the actor has started
        for price in (100.0, 101.0, 102.0, 103.0, 104.0, 105.0):
            await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "ABC", "price": price})
        # publish returns once the message is in the mailbox; leaving the block
        # (shutdown) waits until every mailbox is drained
    print(f"signals: {signals}")


if __name__ == "__main__":
    asyncio.run(main())
