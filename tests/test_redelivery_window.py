"""The redelivery window keeps the order of deliveries while it narrows and widens."""

from __future__ import annotations

import asyncio

import pytest

from actorbus.brokers.rabbitmq._window import RedeliveryWindow

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_delivery_after_the_window_widens_does_not_overtake_one_held_before() -> None:
    resized: list[int] = []

    async def resize(size: int) -> None:
        resized.append(size)

    window = RedeliveryWindow(10, resize)
    handed_on: list[str] = []
    settles: dict[str, object] = {}

    async def deliver(name: str, first: bool = True) -> None:
        # What the consumer does with each delivery, in its own task (as aiormq runs them).
        def settle(ok: bool) -> None:
            pass

        if window.passes(first):
            settles[name] = window.track(settle, first)
            handed_on.append(name)
            return
        async with window.alone(first):
            settles[name] = window.track(settle, first)
            handed_on.append(name)

    a = asyncio.create_task(deliver("a"))  # narrow at the start: handed on alone
    await asyncio.sleep(0)
    b = asyncio.create_task(deliver("b"))  # holds the gate until "a" is settled
    await asyncio.sleep(0)
    c = asyncio.create_task(deliver("c"))  # waits for the gate behind "b"
    await asyncio.sleep(0)
    assert handed_on == ["a"]
    settles["a"](True)  # type: ignore[operator]  # a first delivery succeeded: the window widens
    assert not window.narrow
    d = asyncio.create_task(deliver("d"))  # came after "c": must not pass it at the gate
    # "b" stays unsettled: "c" and "d", first deliveries in a now wide window, only keep
    # their place in line behind it; they need not wait for it to be handled.
    await asyncio.wait_for(asyncio.gather(a, b, c, d), 5)
    assert handed_on == ["a", "b", "c", "d"]
    assert resized == [10]


async def test_a_redelivery_narrows_the_window_and_waits_for_what_came_before() -> None:
    window = RedeliveryWindow(10, lambda size: asyncio.sleep(0))
    order: list[str] = []

    async def deliver(name: str, first: bool) -> None:
        if window.passes(first):
            window.track(lambda ok: None, first)
            order.append(name)
            return
        async with window.alone(first):
            done = window.track(lambda ok: None, first)
            order.append(name)
            done(True)

    window.narrow = False  # widened earlier
    await deliver("fresh", True)
    assert window.passes(True)
    redelivered = asyncio.create_task(deliver("redelivered", False))
    await asyncio.sleep(0.01)
    assert window.narrow
    assert order == ["fresh"]  # "fresh" is not settled yet: the redelivered one waits
    redelivered.cancel()
