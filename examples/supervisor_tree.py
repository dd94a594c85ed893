"""A supervisor tree with a crashing actor: the crash restarts it, nothing else notices.

``Flaky`` crashes on every fifth order (an exception its retry policy marks
fatal). Its supervisor restarts it with a fresh instance (one_for_one: the
sibling keeps running) and then replays the message it crashed on from the
dead-letter queue. A fourth crash within ten seconds would exceed
``max_restarts=3``: the supervisor would give up, stop its children and
escalate to its parent (the root publishes SYSTEM_ERROR).
"""

import asyncio

from actorbus import (
    Actor,
    AsyncMessageBus,
    Envelope,
    MessageTypes,
    RetryPolicy,
    Supervisor,
    handles,
)


class Corrupted(Exception):
    """Something the actor cannot recover from by retrying: crash and start afresh."""


class Flaky(Actor):
    retry = RetryPolicy(max_attempts=1, fatal=(Corrupted,))
    crashed_on: set[str] = set()  # class-level: survives restarts, unlike instance state

    def __init__(self) -> None:
        super().__init__()
        self.handled = 0  # instance state: fresh after every restart

    async def on_start(self) -> None:
        print("flaky: started")

    @handles(MessageTypes.EXECUTION_ORDER_REQUEST)
    async def on_order(self, msg: Envelope) -> None:
        number = msg.data["n"]
        if number % 5 == 0 and msg.id not in Flaky.crashed_on:
            Flaky.crashed_on.add(msg.id)
            raise Corrupted(f"order {number} hit a corrupted cache")
        self.handled += 1
        print(f"flaky: order {number} done ({self.handled} since my last start)")


class Steady(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.handled = 0

    @handles(MessageTypes.EXECUTION_ORDER_REQUEST)
    async def on_order(self, msg: Envelope) -> None:
        self.handled += 1


async def main() -> None:
    async with AsyncMessageBus(mode="in_memory") as bus:
        tree = Supervisor([Flaky, Steady], strategy="one_for_one", max_restarts=3, within=10.0)
        await bus.spawn(tree)
        for n in range(1, 11):
            await bus.publish(MessageTypes.EXECUTION_ORDER_REQUEST, {"n": n})
        await asyncio.sleep(0.3)
        actors = bus.stats().actors
        for name in ("flaky", "steady"):
            counters = actors[name]
            print(f"{name}: restarts {counters.restarts}, processed {counters.processed}")
        print(f"dead letters left: {len(await bus.dead_letters())}")


if __name__ == "__main__":
    asyncio.run(main())
