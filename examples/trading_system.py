"""The trading system from code: what `actorbus run` does, in a dozen lines.

Runs the default supervisor tree (market data, strategy, risk, execution,
exchange, position) in memory for two seconds, flattens the positions, then
prints the P&L and what the audit of the book found.
"""

import asyncio

from actorbus import AsyncMessageBus
from actorbus_trading import TradingConfig, TradingSystem, register_schemas, run_trading_system


async def main() -> None:
    register_schemas()  # validate every payload against its msgspec schema
    system = TradingSystem(TradingConfig(symbols=("BTC/USDT", "ETH/USDT"), seed=7))
    async with AsyncMessageBus(mode="in_memory") as bus:
        report = await run_trading_system(bus, system, duration=2.0, flatten=True)
    counts = report["counts"]
    print(
        f"{counts['ticks']} ticks, {counts['signals']} signals, {counts['orders']} orders, "
        f"{counts['fills']} fills"
    )
    for symbol, position in report["positions"].items():
        print(f"{symbol}: quantity {position['quantity']}, realised {position['realised_pnl']:.2f}")
    print("audit:", "consistent" if not report["problems"] else report["problems"])


if __name__ == "__main__":
    asyncio.run(main())
