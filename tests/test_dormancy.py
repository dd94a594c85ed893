"""Idle actors hold no task: activations start on a delivery and end after a sweep.

Each test drives the runtime's sweep by hand (``runtime.sweep()``), so dormancy
happens when the test says, not after a timer.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, ClassVar

import pytest
from support.waiting import wait_until

from actorbus import Actor, ActorState, AsyncMessageBus, Envelope, RetryPolicy, handles
from actorbus.cell import ActorCell
from actorbus.messages import register_message_type
from actorbus.runtime import Runtime

pytestmark = pytest.mark.anyio

PING = register_message_type("dormancy.ping")


class Boom(Exception):
    """Crashes the actor (fatal)."""


class Sleeper(Actor):
    """Counts what it handles, its starts and its stops; crashes on request."""

    retry = RetryPolicy(max_attempts=1, fatal=(Boom,))
    seen: ClassVar[list[Any]] = []
    starts: ClassVar[int] = 0
    stops: ClassVar[int] = 0
    gate: ClassVar[asyncio.Event | None] = None

    async def on_start(self) -> None:
        type(self).starts += 1

    async def on_stop(self) -> None:
        type(self).stops += 1

    @handles(PING)
    async def on_ping(self, envelope: Envelope) -> Any:
        if envelope.data.get("crash"):
            raise Boom("told to")
        if envelope.data.get("hold") and self.gate is not None:
            await self.gate.wait()
        self.seen.append(envelope.data["n"])
        return envelope.data["n"]


@pytest.fixture(autouse=True)
def _reset() -> None:
    Sleeper.seen, Sleeper.starts, Sleeper.stops, Sleeper.gate = [], 0, 0, None


def parts(bus: AsyncMessageBus) -> tuple[Runtime, ActorCell]:
    assert bus._parts is not None
    runtime = bus._parts.runtime
    [cell] = [cell for cell in runtime.cells if cell.name == "sleeper"]
    return runtime, cell


def sweep_twice(runtime: Runtime) -> None:
    """Two sweeps: an actor idle across a whole sweep period goes dormant."""
    runtime.sweep()
    runtime.sweep()


async def test_an_actor_never_sent_anything_has_no_task(bus: AsyncMessageBus) -> None:
    await bus.spawn(Sleeper)
    _, cell = parts(bus)
    assert cell.state is ActorState.RUNNING
    assert cell._task is None
    assert not [task for task in asyncio.all_tasks() if "_drain" in repr(task.get_coro())]


async def test_a_delivery_wakes_it_and_an_idle_sweep_lets_the_task_go(
    bus: AsyncMessageBus,
) -> None:
    await bus.spawn(Sleeper)
    runtime, cell = parts(bus)
    await bus.publish(PING, {"n": 1})
    await wait_until(lambda: Sleeper.seen == [1])
    assert cell._task is not None, "a busy actor keeps its task a while"
    runtime.sweep()
    await asyncio.sleep(0.01)
    assert cell._task is not None, "one sweep is not a whole idle period"
    runtime.sweep()
    await wait_until(lambda: cell._task is None)
    assert cell.state is ActorState.RUNNING
    assert (Sleeper.starts, Sleeper.stops) == (1, 0), "dormant is not stopped"
    for n in (2, 3):
        await bus.publish(PING, {"n": n})
    await wait_until(lambda: Sleeper.seen == [1, 2, 3])
    assert await bus.ask(PING, {"n": 4}) == 4


async def test_a_busy_actor_is_never_put_to_sleep(bus: AsyncMessageBus) -> None:
    Sleeper.gate = asyncio.Event()
    await bus.spawn(Sleeper)
    runtime, cell = parts(bus)
    await bus.publish(PING, {"n": 1, "hold": True})
    await wait_until(lambda: cell.busy)
    for _ in range(3):
        runtime.sweep()
    await asyncio.sleep(0.01)
    assert cell._task is not None
    Sleeper.gate.set()
    await wait_until(lambda: Sleeper.seen == [1])


async def test_a_dormant_actor_stops_once_with_its_tree(bus: AsyncMessageBus) -> None:
    tree = await bus.spawn(Sleeper)
    runtime, cell = parts(bus)
    await bus.publish(PING, {"n": 1})
    await wait_until(lambda: Sleeper.seen == [1])
    sweep_twice(runtime)
    await wait_until(lambda: cell._task is None)
    await bus.stop(tree)
    assert (Sleeper.starts, Sleeper.stops) == (1, 1)
    assert cell.state is ActorState.STOPPED


async def test_a_dormant_actor_that_asks_to_stop_is_restarted_by_its_supervisor(
    bus: AsyncMessageBus,
) -> None:
    await bus.spawn(Sleeper)
    _, cell = parts(bus)
    cell.request_stop()  # as Actor.stop() would, on a dormant actor
    await wait_until(lambda: Sleeper.starts == 2)  # permanent: started again
    assert Sleeper.stops == 1
    await bus.publish(PING, {"n": 7})
    await wait_until(lambda: Sleeper.seen == [7])


async def test_a_crash_after_dormancy_is_restarted_and_its_message_retried(
    bus: AsyncMessageBus,
) -> None:
    await bus.spawn(Sleeper)
    runtime, _ = parts(bus)
    sweep_twice(runtime)
    await bus.publish(PING, {"n": 1, "crash": True})
    await wait_until(lambda: Sleeper.starts >= 2)
    await bus.publish(PING, {"n": 2})
    await wait_until(lambda: 2 in Sleeper.seen)
    assert bus.stats().actors["sleeper"].restarts >= 1


async def test_shutdown_stops_dormant_actors_cleanly(bus: AsyncMessageBus) -> None:
    await bus.spawn(Sleeper)
    runtime, cell = parts(bus)
    await bus.publish(PING, {"n": 1})
    await wait_until(lambda: Sleeper.seen == [1])
    sweep_twice(runtime)
    await wait_until(lambda: cell._task is None)
    report = await bus.shutdown(timeout=2)
    assert (report.handled, report.returned, report.cut) == (0, 0, 0)
    assert (Sleeper.starts, Sleeper.stops) == (1, 1)
    gc.collect()
    assert not [task for task in asyncio.all_tasks() if "_drain" in repr(task.get_coro())]
