"""The bus API of the system actorbus replaces, sync face: runs exactly as it did there.

The code below is the original snippet, character for character, so it is kept
out of the formatter's and the linter's hands.
"""
# ruff: noqa
# fmt: off

from actorbus.message_bus import message_bus, MessageTypes

async def handle_strategy_signal(message_type, data):
    print(f"Received signal: {data}")

message_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handle_strategy_signal)
message_bus.publish_sync(message_type=MessageTypes.STRATEGY_SIGNAL,
                         data={"symbol": "BTC/USDT", "action": "BUY", "price": 50000.0})
message_bus.shutdown()
