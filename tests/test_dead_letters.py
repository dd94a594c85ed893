"""Retry with backoff, then the dead-letter queue, then replay after a fix."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.waiting import wait_until

from actorbus import (
    Actor,
    ActorState,
    AsyncMessageBus,
    DeadLetter,
    Envelope,
    MessageTypes,
    RetryPolicy,
    Supervisor,
    handles,
)

pytestmark = pytest.mark.anyio


class Switch:
    """Whether the (simulated) bug is fixed."""

    def __init__(self) -> None:
        self.fixed = False
        self.handled: list[Any] = []
        self.attempts: list[int] = []


def buggy(switch: Switch, name: str, *types: str) -> type[Actor]:
    """An actor handling ``types`` that fails until ``switch.fixed``."""

    async def handle(self: Actor, msg: Envelope) -> None:
        switch.attempts.append(msg.attempt)
        if not switch.fixed:
            raise KeyError(f"no field in {msg.data}")
        switch.handled.append(msg.data)

    return type(
        f"{name}Actor",
        (Actor,),
        {
            "name": name,
            "retry": RetryPolicy(max_attempts=3, backoff=0.001, multiplier=2.0),
            "handle": handles(*(types or (MessageTypes.STRATEGY_SIGNAL,)))(handle),
        },
    )


async def test_retry_then_dead_letter_then_replay_after_a_fix(bus: AsyncMessageBus) -> None:
    switch = Switch()
    await bus.spawn(buggy(switch, "worker"))
    before = time.time()
    message_id = await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC"})
    await wait_until(lambda: bus.stats().actors["worker"].dead_lettered == 1)
    assert switch.attempts == [1, 2, 3]
    (entry,) = await bus.dead_letters()
    assert entry.envelope.id == message_id
    assert entry.envelope.data == {"symbol": "BTC"}
    assert entry.envelope.attempt == 1  # as first delivered
    assert entry.actor == "worker"
    assert entry.error_type == "KeyError"
    assert "no field in" in entry.reason
    assert entry.attempts == 3
    assert before <= entry.first_failure < entry.last_failure <= time.time()
    assert entry.replays == 0
    stats = bus.stats().actors["worker"]
    assert (stats.failed, stats.retried, stats.processed) == (3, 2, 0)

    switch.fixed = True
    assert await bus.replay_dead_letters() == 1
    await wait_until(lambda: switch.handled == [{"symbol": "BTC"}])
    assert await bus.dead_letters() == []
    assert switch.attempts[-1] == 1  # a replay starts its attempts afresh


async def test_replay_filters_and_purge(bus: AsyncMessageBus) -> None:
    first, second = Switch(), Switch()
    await bus.spawn(buggy(first, "first", MessageTypes.STRATEGY_SIGNAL, MessageTypes.RISK_ERROR))
    await bus.spawn(buggy(second, "second", MessageTypes.STRATEGY_SIGNAL))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 2})
    await wait_until(lambda: len(first.attempts) == 6 and len(second.attempts) == 3)
    await wait_until(lambda: bus.stats().actors["first"].dead_lettered == 2)
    await wait_until(lambda: bus.stats().actors["second"].dead_lettered == 1)
    assert len(await bus.dead_letters()) == 3
    assert len(await bus.dead_letters(actor="first")) == 2
    assert len(await bus.dead_letters(type=MessageTypes.RISK_ERROR)) == 1
    assert len(await bus.dead_letters(actor="second", type=MessageTypes.RISK_ERROR)) == 0

    first.fixed = True
    assert await bus.replay_dead_letters(actor="first", type=MessageTypes.RISK_ERROR) == 1
    await wait_until(lambda: first.handled == [{"n": 2}])
    assert await bus.replay_dead_letters(actor="nobody") == 0
    assert await bus.replay_dead_letters(actor="first") == 1
    await wait_until(lambda: first.handled == [{"n": 2}, {"n": 1}])
    # the replay went to `first` only, though `second` handles the type too
    assert second.handled == []
    assert len(second.attempts) == 3
    assert await bus.purge_dead_letters(actor="second") == 1
    assert await bus.dead_letters() == []
    assert await bus.purge_dead_letters() == 0


async def test_replay_cap_through_the_bus(bus: AsyncMessageBus) -> None:
    switch = Switch()
    await bus.spawn(buggy(switch, "poisoned"))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    for replays in range(1, 3):
        await wait_until(lambda r=replays: len(switch.attempts) == 3 * r)  # type: ignore[misc]
        await wait_until(
            lambda r=replays: bus.stats().actors["poisoned"].dead_lettered == r  # type: ignore[misc]
        )
        assert await bus.replay_dead_letters(max_replays=2) == 1
    await wait_until(lambda: bus.stats().actors["poisoned"].dead_lettered == 3)
    assert await bus.replay_dead_letters(max_replays=2) == 0
    (entry,) = await bus.dead_letters()
    assert entry.replays == 2
    # without a cap, an explicit replay still works
    assert await bus.replay_dead_letters() == 1


async def test_replay_of_an_entry_whose_queue_is_gone(bus: AsyncMessageBus) -> None:
    switch = Switch()
    supervisor = await bus.spawn(buggy(switch, "gone"))
    keeper = Switch()
    await bus.spawn(buggy(keeper, "keeper", MessageTypes.RISK_ERROR))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 2})
    await wait_until(lambda: len(switch.attempts) == 3 and len(keeper.attempts) == 3)
    await wait_until(lambda: len(bus.stats().actors) >= 2)
    await wait_until(
        lambda: (
            bus.stats().actors["gone"].dead_lettered + bus.stats().actors["keeper"].dead_lettered
            == 2
        )
    )
    await bus.stop(supervisor)
    (orphan,) = await bus.dead_letters(actor="gone")
    assert bus.broker is not None
    await bus.broker.delete_queue(orphan.queue)  # e.g. removed by an operator
    keeper.fixed = True
    assert await bus.replay_dead_letters() == 1
    await wait_until(lambda: keeper.handled == [{"n": 2}])
    (entry,) = await bus.dead_letters()
    assert entry.actor == "gone"


async def test_subscriber_failures_are_dead_lettered(bus: AsyncMessageBus) -> None:
    calls: list[Any] = []

    async def failing(message_type: str, data: Any) -> None:
        calls.append(data)
        raise RuntimeError("subscriber bug")

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, failing)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await wait_until(lambda: len(calls) == 3)
    await wait_until(lambda: bus.stats().actors and _dead_lettered(bus) == 1)
    (entry,) = await bus.dead_letters()
    assert entry.error_type == "RuntimeError"
    assert entry.reason == "subscriber bug"
    assert entry.actor.startswith("sub.")


def _dead_lettered(bus: AsyncMessageBus) -> int:
    return sum(actor.dead_lettered for actor in bus.stats().actors.values())


class Doomed(Actor):
    """Crashes on every message; its prefetch (mailbox) is tiny."""

    mailbox_size = 2
    retry = RetryPolicy(max_attempts=1, fatal=(RuntimeError,))

    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, envelope: Envelope) -> None:
        raise RuntimeError("doomed")


async def test_a_replay_into_a_full_prefetch_never_blocks_its_supervisor(
    bus: AsyncMessageBus,
) -> None:
    """The supervisor replays dead letters after each restart; the actor it restarts may
    crash again at once with its prefetch full, and nobody else empties it: the replay
    must not wait on that queue (it did, in memory, and the tree hung for good)."""
    assert bus.broker is not None
    for n in range(3):
        await bus.broker.dead_letter(
            DeadLetter.for_failure(
                bus.envelope(MessageTypes.STRATEGY_SIGNAL, {"n": n}),
                queue="trading.actor.doomed",
                actor="doomed",
                error="earlier",
                attempts=1,
            )
        )
    tree = await bus.spawn(Supervisor([Doomed], max_restarts=5, within=30.0, max_replays=3))
    publishing = [
        asyncio.ensure_future(bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n}))
        for n in range(10)
    ]
    await wait_until(lambda: tree.state is ActorState.FAILED, timeout=10)  # gave up, no hang
    for task in publishing:
        task.cancel()
