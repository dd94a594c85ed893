"""Standby actors (``single_active``): one instance handles, the others stand by, on both brokers.

Two buses share one broker (a private in-memory server, or RabbitMQ under a
test prefix); each runs the same ``single_active`` actor, as two processes
would. The first to subscribe handles everything; when it stops, the other
takes over with the messages it had not finished first, in order, and never
while the first is still handling one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, QueueOptions, handles

BusFactory = Callable[..., AsyncMessageBus]

pytestmark = pytest.mark.anyio

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
COUNT = 120


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


class Tally:
    """What every instance handled, and how many handled at once."""

    def __init__(self) -> None:
        self.by_instance: dict[str, list[int]] = {}
        self.handling = 0
        self.most_at_once = 0
        self.finished: dict[str, float] = {}


def standby_actor(tally: Tally, label: str, delay: float) -> type[Actor]:
    """A ``single_active`` actor class recording each message it finished under ``label``."""

    class Ordered(Actor):
        name = "ordered"
        queue_options = QueueOptions(single_active=True)
        mailbox_size: ClassVar[int] = 10

        @handles(ORDER)
        async def on_order(self, msg: Envelope) -> None:
            tally.handling += 1
            tally.most_at_once = max(tally.most_at_once, tally.handling)
            try:
                await asyncio.sleep(delay)
                tally.by_instance.setdefault(label, []).append(int(msg.data["i"]))
                tally.finished[label] = time.monotonic()
            finally:
                tally.handling -= 1

    return Ordered


def role(stats: dict[str, Any]) -> str:
    return str(stats.actors["ordered"].role)


async def test_one_handles_the_other_stands_by_then_takes_over(make_bus: BusFactory) -> None:
    tally = Tally()
    first, second, publisher = make_bus(), make_bus(), make_bus()
    tree = await first.spawn(standby_actor(tally, "first", 0.002))
    await second.spawn(standby_actor(tally, "second", 0.0))
    assert role(first.stats()) == "active"
    assert role(second.stats()) == "standby"

    for i in range(COUNT):
        await publisher.publish(ORDER, {"i": i})
    await wait_until(lambda: len(tally.by_instance.get("first", [])) >= COUNT // 3)
    assert "second" not in tally.by_instance, "the standby handled while the active one ran"

    await first.stop(tree)  # the active instance goes, mid-stream
    stopped_at = time.monotonic()
    await wait_until(
        lambda: (
            len(tally.by_instance.get("first", [])) + len(tally.by_instance.get("second", []))
            >= COUNT
        )
    )
    handled_first = tally.by_instance["first"]
    handled_second = tally.by_instance["second"]
    # Every message once, in publish order across the takeover: what the first had
    # not finished (its mailbox, its message in flight) came first to the second.
    assert handled_first + handled_second == list(range(COUNT))
    assert tally.most_at_once == 1
    assert tally.finished["first"] <= stopped_at
    assert role(second.stats()) == "active"


async def test_without_single_active_both_compete(make_bus: BusFactory) -> None:
    """The negative control: the same two instances without the option share the work."""
    tally = Tally()
    first, second, publisher = make_bus(), make_bus(), make_bus()

    def competing(label: str) -> type[Actor]:
        cls = standby_actor(tally, label, 0.001)
        cls.queue_options = QueueOptions(single_active=False)
        return cls

    await first.spawn(competing("first"))
    await second.spawn(competing("second"))
    assert first.stats().actors["ordered"].role is None
    for i in range(COUNT):
        await publisher.publish(ORDER, {"i": i})
    await wait_until(lambda: sum(len(v) for v in tally.by_instance.values()) >= COUNT)
    assert tally.by_instance.get("first")
    assert tally.by_instance.get("second")


async def test_two_instances_on_one_bus(make_bus: BusFactory) -> None:
    """A second instance in the same bus stands by too, listed as ``ordered#2``."""
    tally = Tally()
    bus = make_bus()
    tree = await bus.spawn(standby_actor(tally, "first", 0.0))
    await bus.spawn(standby_actor(tally, "second", 0.0))
    actors = bus.stats().actors
    assert (actors["ordered"].role, actors["ordered#2"].role) == ("active", "standby")
    for i in range(10):
        await bus.publish(ORDER, {"i": i})
    await wait_until(lambda: len(tally.by_instance.get("first", [])) == 10)
    await bus.stop(tree)
    for i in range(10, 20):
        await bus.publish(ORDER, {"i": i})
    await wait_until(lambda: len(tally.by_instance.get("second", [])) == 10)
    assert tally.by_instance == {"first": list(range(10)), "second": list(range(10, 20))}


async def test_shutdown_of_the_active_bus_hands_over_in_order(make_bus: BusFactory) -> None:
    """A graceful shutdown (drain, pause, finish) of the active instance's bus, mid-stream."""
    tally = Tally()
    first, second, publisher = make_bus(), make_bus(), make_bus()
    await first.spawn(standby_actor(tally, "first", 0.002))
    await second.spawn(standby_actor(tally, "second", 0.0))

    async def publish_all() -> None:
        for i in range(COUNT):
            await publisher.publish(ORDER, {"i": i})
            await asyncio.sleep(0.001)

    publishing = asyncio.create_task(publish_all())
    await wait_until(lambda: len(tally.by_instance.get("first", [])) >= COUNT // 4)
    await first.shutdown(timeout=2.0)
    await publishing
    await wait_until(
        lambda: (
            len(tally.by_instance.get("first", [])) + len(tally.by_instance.get("second", []))
            >= COUNT
        )
    )
    await asyncio.sleep(0.2)
    handled = tally.by_instance["first"] + tally.by_instance.get("second", [])
    assert handled == list(range(COUNT)), "lost, doubled or reordered across the hand-over"
    assert tally.most_at_once == 1
