"""Dead letters and replay: nothing is dropped silently, and a fix can take the backlog.

A handler that raises is retried with backoff; after the last attempt the
message goes to the dead-letter queue with the reason. Once the cause is
fixed, ``replay_dead_letters`` sends the messages back to the actor's queue.
"""

import asyncio

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, RetryPolicy, handles

BROKEN = True


class Booker(Actor):
    retry = RetryPolicy(max_attempts=3, backoff=0.01)

    def __init__(self) -> None:
        super().__init__()
        self.booked: list[str] = []

    @handles(MessageTypes.POSITION_UPDATE)
    async def on_update(self, msg: Envelope) -> None:
        if BROKEN:
            raise ConnectionError("ledger database is down")
        self.booked.append(msg.data["symbol"])
        print("booked", msg.data["symbol"])


async def main() -> None:
    global BROKEN
    async with AsyncMessageBus(mode="in_memory") as bus:
        await bus.spawn(Booker)
        for symbol in ("BTC/USDT", "ETH/USDT"):
            await bus.publish(MessageTypes.POSITION_UPDATE, {"symbol": symbol, "quantity": 1})
        await asyncio.sleep(0.3)  # three attempts each, with backoff
        for entry in await bus.dead_letters(actor="booker"):
            print(
                f"dead letter: {entry.envelope.type} {entry.envelope.data} after "
                f"{entry.attempts} attempts: {entry.error_type}: {entry.reason}"
            )
        BROKEN = False  # the database is back
        print("replayed", await bus.replay_dead_letters(actor="booker"))
        await asyncio.sleep(0.1)
        print("left:", len(await bus.dead_letters()))


if __name__ == "__main__":
    asyncio.run(main())
