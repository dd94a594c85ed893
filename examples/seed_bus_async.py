"""The bus API of the system actorbus replaces, async face: runs exactly as it did there.

The code below is the original snippet, character for character, so it is kept
out of the formatter's and the linter's hands.
"""
# ruff: noqa
# fmt: off

import asyncio
from actorbus.message_bus import get_async_message_bus, MessageTypes

async def async_handler(message_type, data):
    print(f"Async handler received: {data}")

async def main():
    bus = get_async_message_bus()
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, async_handler)
    await bus.publish(message_type=MessageTypes.STRATEGY_SIGNAL,
                      data={"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0})
    await bus.shutdown()

asyncio.run(main())
