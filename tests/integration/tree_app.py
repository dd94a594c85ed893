"""A small two-actor tree, run as a separate process by the distribution test.

``python tree_app.py URL PREFIX ACTOR[,ACTOR...]`` spawns the tree with only the
named actors placed in this process, prints ``ready`` and runs until its
standard input closes. The same file is imported by the test for the tree's
message types.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, Supervisor, handles

TICK = MessageTypes.MARKET_DATA_UPDATE
CHECK = MessageTypes.RISK_EXPOSURE_UPDATE
SIGNAL = MessageTypes.STRATEGY_SIGNAL


class Strategy(Actor):
    """Turns each tick into a signal, after asking risk (wherever it runs)."""

    name = "strategy"

    @handles(TICK)
    async def on_tick(self, envelope: Envelope) -> None:
        verdict = await self.ask(CHECK, {"n": envelope.data["n"]}, timeout=10)
        await self.publish(
            SIGNAL,
            {"n": envelope.data["n"], "strategy_pid": os.getpid(), "risk": verdict},
        )


class Risk(Actor):
    """Answers every check with its verdict and its process id."""

    name = "risk"

    @handles(CHECK)
    async def on_check(self, envelope: Envelope) -> dict[str, Any]:
        return {"approved": envelope.data["n"] % 2 == 0, "pid": os.getpid()}


def tree() -> Supervisor:
    """The same tree definition in every process."""
    return Supervisor([Strategy, Risk], name="app")


async def main(url: str, prefix: str, actors: list[str]) -> None:
    """Run the placed part of the tree until standard input closes."""
    async with AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False) as bus:
        await bus.spawn(tree(), actors=actors)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(",")))
