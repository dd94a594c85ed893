"""Request/reply: ask a question, get the handler's return value back.

``bus.ask`` (or ``self.ask`` inside an actor) publishes a request and waits for
the first reply; the handler's return value is the reply. A handler that fails
for good makes the ask raise ``AskFailed``; no reply in time is ``AskTimeout``.
"""

import asyncio

from actorbus import (
    Actor,
    AskFailed,
    AskTimeout,
    AsyncMessageBus,
    Envelope,
    MessageTypes,
    RetryPolicy,
    handles,
)


class Quotes(Actor):
    retry = RetryPolicy(max_attempts=1)  # a missing quote will not appear by retrying

    def __init__(self) -> None:
        super().__init__()
        self.latest = {"BTC/USDT": 50_000.0, "ETH/USDT": 3_000.0, "SLOW/USDT": 1.0}

    @handles(MessageTypes.MARKET_DATA_REQUEST)
    async def on_request(self, msg: Envelope) -> dict:
        symbol = msg.data["symbol"]
        if symbol == "SLOW/USDT":
            await asyncio.sleep(0.5)
        if symbol not in self.latest:
            raise KeyError(f"no quote for {symbol}")
        return {"symbol": symbol, "price": self.latest[symbol]}


class Trader(Actor):
    """An actor asking another one, from inside a handler."""

    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, msg: Envelope) -> None:
        quote = await self.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": msg.data["symbol"]})
        print(f"trader: {msg.data['symbol']} is at {quote['price']}, sending the order")


async def main() -> None:
    async with AsyncMessageBus(mode="in_memory") as bus:
        await bus.spawn(Quotes)
        await bus.spawn(Trader)
        print("reply:", await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC/USDT"}))
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "ETH/USDT"})
        try:
            await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "DOGE/USDT"})
        except AskFailed as exc:
            print("failed:", exc)
        try:
            await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "SLOW/USDT"}, timeout=0.1)
        except AskTimeout as exc:
            print("timeout:", exc)
        await bus.purge_dead_letters()  # the failed DOGE request was dead-lettered


if __name__ == "__main__":
    asyncio.run(main())
