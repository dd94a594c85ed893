"""``request_stop``: one ``system.stop`` reaches every other bus of the prefix, on both brokers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from actorbus import AsyncMessageBus

pytestmark = pytest.mark.anyio

BusFactory = Callable[..., AsyncMessageBus]


async def test_every_other_bus_of_the_prefix_hears_a_stop(make_bus: BusFactory) -> None:
    asker, first, second = make_bus(), make_bus(), make_bus()
    heard: list[tuple[str, str]] = []
    for name, bus in (("first", first), ("second", second)):
        await bus.start()
        bus.add_stop_listener(lambda reason, name=name: heard.append((name, reason)))
    await asker.start()

    await asker.request_stop("maintenance")
    await asyncio.wait_for(
        asyncio.gather(first.stop_requested.wait(), second.stop_requested.wait()), 10
    )
    await asyncio.sleep(0.2)  # a second delivery, if any, would show up
    assert sorted(heard) == [("first", "maintenance"), ("second", "maintenance")]
    assert not asker.stop_requested.is_set(), "the asking bus asked itself"
    assert first.stats().actors == {}, "the control queue is not an actor"
