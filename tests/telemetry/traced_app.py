"""Part of the trading system in a process of its own, traced, for the tracing test.

``python traced_app.py URL PREFIX ACTORS OUT SECONDS`` runs the actors named
(comma-separated) over RabbitMQ with tracing on, for SECONDS (0: until standard
input closes), prints ``ready`` once they run, and at the end writes every span
it made to OUT as JSON, one record per line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tracing import as_record, memory_provider

from actorbus import AsyncMessageBus
from actorbus.telemetry.otel import instrument_tracing
from actorbus_trading import TradingConfig, TradingSystem, register_schemas, run_trading_system


async def main(url: str, prefix: str, actors: list[str], seconds: float) -> list[str]:
    """Run; return the spans made, as JSON lines."""
    provider, exporter = memory_provider(service="+".join(actors))
    register_schemas()
    system = TradingSystem(TradingConfig(rate=40.0, seed=3))
    stop = asyncio.Event()
    if seconds == 0:
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(None, sys.stdin.read)
        waiting.add_done_callback(lambda _: stop.set())
    started = False

    def progress(numbers: object) -> None:
        nonlocal started
        if not started:
            started = True
            print("ready", flush=True)

    async with AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False) as bus:
        instrument_tracing(bus, provider)
        await run_trading_system(
            bus,
            system,
            duration=seconds or 3600.0,
            only=actors,
            progress=progress,
            interval=0.1,
            stop=stop,
        )
    return [json.dumps(as_record(span)) for span in exporter.get_finished_spans()]


if __name__ == "__main__":
    url, prefix, names, out, seconds = sys.argv[1:6]
    lines = asyncio.run(main(url, prefix, names.split(","), float(seconds)))
    with open(out, "w") as file:
        file.writelines(line + "\n" for line in lines)
