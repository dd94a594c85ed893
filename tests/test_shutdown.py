"""Shutdown: bounded from every face, and accounting for every message, in both modes.

Each test runs on the in-memory broker and on the real RabbitMQ (unique prefix,
everything declared deleted after). Bounds here only stop hangs: they are the
shutdown's own promise (``timeout`` plus its bounded margin) with room to spare.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from support.rabbit_cleanup import delete_names
from support.waiting import wait_until

from actorbus import (
    Actor,
    ActorStartError,
    AsyncMessageBus,
    BusClosed,
    ChildSpec,
    Envelope,
    MessageBus,
    MessageTypes,
    handles,
)
from actorbus.brokers.memory import InMemoryServer
from actorbus.shutdown import GRACE, ShutdownReport

BusFactory = Callable[..., AsyncMessageBus]

pytestmark = pytest.mark.anyio

HANG_STOP = 2 * GRACE + 2.0
"""Seconds past a shutdown's timeout after which a test calls it hung (promise: 2 * GRACE)."""


@pytest.fixture(params=["in_memory", "rabbitmq"])
async def make_bus(
    request: pytest.FixtureRequest, server: InMemoryServer, unique_prefix: str
) -> AsyncIterator[BusFactory]:
    """Build buses of one mode: in memory on a private server, or on the real RabbitMQ."""
    buses: list[AsyncMessageBus] = []
    url = request.getfixturevalue("rabbitmq_url") if request.param == "rabbitmq" else None

    def factory(**options: Any) -> AsyncMessageBus:
        if url is None:
            bus = AsyncMessageBus(mode="in_memory", server=server, **options)
        else:
            bus = AsyncMessageBus(
                mode="rabbitmq", url=url, prefix=unique_prefix, fallback=False, **options
            )
        buses.append(bus)
        return bus

    yield factory
    queues: set[str] = set()
    exchanges: set[str] = set()
    for bus in buses:
        await bus.shutdown(timeout=1.0)
        broker = bus.broker if bus.broker is not None else None
        if broker is not None and hasattr(broker, "declared_names"):
            declared_queues, declared_exchanges = broker.declared_names()
            queues.update(declared_queues)
            exchanges.update(declared_exchanges)
    if url is not None and (queues or exchanges):
        await delete_names(url, sorted(queues), sorted(exchanges))


async def bounded_shutdown(bus: AsyncMessageBus, timeout: float, **options: Any) -> ShutdownReport:
    """``bus.shutdown(timeout)``, failing the test if it does not keep its bound."""
    return await asyncio.wait_for(bus.shutdown(timeout, **options), timeout + HANG_STOP)


class Hang(Actor):
    """An actor whose ``on_start`` never returns."""

    start_timeout = 60.0

    async def on_start(self) -> None:
        await asyncio.Event().wait()


def _starting(bus: AsyncMessageBus, name: str) -> bool:
    actor = bus.stats().actors.get(name)
    return actor is not None and actor.state == "starting"


# -- item 5: nothing hangs -------------------------------------------------------------------


async def test_on_start_that_never_returns_fails_the_spawn_naming_its_timeout(
    make_bus: BusFactory,
) -> None:
    class Stuck(Actor):
        start_timeout = 0.2

        async def on_start(self) -> None:
            await asyncio.Event().wait()

    bus = make_bus()
    with pytest.raises(ActorStartError, match=r"stuck could not start: .* within 0\.2s"):
        await asyncio.wait_for(bus.spawn(Stuck), 10)
    with pytest.raises(ActorStartError, match=r"late could not start: .* within 0\.1s"):
        await asyncio.wait_for(bus.spawn(ChildSpec(Stuck, name="late", start_timeout=0.1)), 10)
    assert Actor.start_timeout == 10.0  # the default


async def test_shutdown_returns_with_a_spawn_pending_in_a_task(make_bus: BusFactory) -> None:
    bus = make_bus()
    spawning = asyncio.ensure_future(bus.spawn(Hang))
    await wait_until(lambda: _starting(bus, "hang"))
    await bounded_shutdown(bus, 0.5)
    with pytest.raises(BusClosed, match="shut down while hang started"):
        await asyncio.wait_for(spawning, 5)


async def test_shutdown_returns_with_a_spawn_pending_in_an_anyio_task(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    outcome: list[BaseException] = []

    async def spawn() -> None:
        try:
            await bus.spawn(Hang)
        except BusClosed as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(spawn)
        await wait_until(lambda: _starting(bus, "hang"))
        await bounded_shutdown(bus, 0.5)
    assert len(outcome) == 1


def _sync_options(request: pytest.FixtureRequest, unique_prefix: str) -> dict[str, Any]:
    if request.node.callspec.params["sync_mode"] == "in_memory":
        return {"mode": "in_memory", "server": InMemoryServer()}
    url = request.getfixturevalue("rabbitmq_url")
    return {"mode": "rabbitmq", "url": url, "prefix": unique_prefix, "fallback": False}


@pytest.mark.parametrize("sync_mode", ["in_memory", "rabbitmq"])
def test_sync_shutdown_from_a_thread_returns_with_a_spawn_pending(
    sync_mode: str, request: pytest.FixtureRequest, unique_prefix: str
) -> None:
    bus = MessageBus(**_sync_options(request, unique_prefix))
    bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})  # started
    errors: list[BaseException] = []

    def spawn() -> None:
        try:
            bus.spawn(Hang)
        except BaseException as exc:
            errors.append(exc)

    spawner = threading.Thread(target=spawn, daemon=True)
    spawner.start()
    core = bus._bus
    assert core is not None
    for _ in range(2000):
        if _starting(core, "hang"):
            break
        threading.Event().wait(0.005)
    reports: list[ShutdownReport] = []
    stopper = threading.Thread(target=lambda: reports.append(bus.shutdown(timeout=0.5)))
    stopper.start()
    stopper.join(timeout=0.5 + HANG_STOP)
    assert not stopper.is_alive(), "MessageBus.shutdown hung"
    spawner.join(timeout=5)
    assert not spawner.is_alive()
    assert [type(e) for e in errors] == [BusClosed]
    assert isinstance(reports[0], ShutdownReport)
    assert bus.shutdown() is reports[0]  # a second call: the same report


async def test_on_stop_that_never_returns_is_abandoned_at_the_timeout(
    make_bus: BusFactory,
) -> None:
    stopping = asyncio.Event()

    class Sticky(Actor):
        async def on_stop(self) -> None:
            stopping.set()
            await asyncio.Event().wait()

    bus = make_bus()
    await bus.spawn(Sticky)
    await bounded_shutdown(bus, 0.5)
    assert stopping.is_set()


async def test_handler_that_never_returns_is_cut_at_the_timeout_and_reported(
    make_bus: BusFactory,
) -> None:
    entered = asyncio.Event()

    class Stuck(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            entered.set()
            await asyncio.Event().wait()

    bus = make_bus()
    await bus.spawn(Stuck)
    for n in range(5):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await asyncio.wait_for(entered.wait(), 10)
    await wait_until(lambda: bus.stats().actors["stuck"].mailbox == 4)
    report = await bounded_shutdown(bus, 0.5)
    assert (report.cut, report.returned, report.handled, report.dropped) == (1, 5, 0, 0)
    assert report.actors["stuck"].cut == 1


async def test_a_handler_that_ignores_cancellation_is_abandoned_not_waited_for(
    make_bus: BusFactory,
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    class Deaf(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            entered.set()
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # swallowed: the worst a handler can do short of blocking

    bus = make_bus()
    await bus.spawn(Deaf)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await asyncio.wait_for(entered.wait(), 10)
    report = await bounded_shutdown(bus, 0.3)
    assert report.abandoned == ("deaf",)
    assert (report.cut, report.returned) == (1, 1)
    release.set()


# -- item 6: nothing is dropped silently ----------------------------------------------------


class _Recorder:
    """Side effects by message number, and the handler calls that completed."""

    def __init__(self) -> None:
        self.effects: Counter[int] = Counter()
        self.completed: list[int] = []


def _slow_actor(
    recorder: _Recorder, seconds: float, name: str = "slow", gate: asyncio.Event | None = None
) -> type[Actor]:
    class Slow(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            recorder.effects[msg.data["n"]] += 1  # the side effect, before the wait
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(seconds)
            recorder.completed.append(msg.data["n"])

    Slow.name = name
    return Slow


async def _take_the_rest(bus: AsyncMessageBus, actor: type[Actor], recorder: _Recorder) -> None:
    """Drain what is left in the actor's queue with a fresh consumer on a new bus."""
    before = len(recorder.completed)
    await bus.spawn(actor)
    # nothing new arrives: once the queue and the mailbox are empty and the actor idle, done
    while True:
        await asyncio.sleep(0.2)
        queued = (await bus.queued())[actor.default_name()]
        actors = bus.stats().actors[actor.default_name()]
        if not queued and not actors.mailbox and not actors.busy:
            break
    assert len(recorder.completed) >= before


async def test_300_waiting_for_a_slow_actor_are_all_accounted_for(make_bus: BusFactory) -> None:
    recorder = _Recorder()
    gate = asyncio.Event()  # opened as shutdown begins: all 300 wait until then
    slow = _slow_actor(recorder, 0.01, gate=gate)
    bus = make_bus()
    await bus.spawn(slow)
    for n in range(300):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: bus.stats().actors["slow"].mailbox == 299)
    gate.set()
    report = await bounded_shutdown(bus, 1.0)
    print(report.summary())
    assert report.handled + report.returned + report.dead_lettered + report.dropped == 300
    assert report.returned > 0  # 300 x 10 ms do not fit in 1 s
    assert report.cut == 0  # the handler in progress had time to finish
    assert report.actors["slow"].returned == report.returned
    handled_here = set(recorder.completed)
    assert len(handled_here) == report.handled
    # what was returned waits in the queue (the in-memory server keeps a durable queue)
    later = make_bus()
    await _take_the_rest(later, slow, recorder)
    assert len(recorder.completed) == 300
    assert set(recorder.completed) == set(range(300))
    assert max(recorder.effects.values()) == 1  # no side effect ran twice


async def test_a_handler_in_progress_finishes_and_the_rest_stays_queued(
    make_bus: BusFactory,
) -> None:
    recorder = _Recorder()
    slow = _slow_actor(recorder, 0.3, name="careful")
    bus = make_bus()
    await bus.spawn(slow)
    for n in range(20):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: bus.stats().actors["careful"].mailbox == 19)
    assert sum(recorder.effects.values()) == 1
    report = await bounded_shutdown(bus, 3.0, drain=0)
    assert recorder.completed == [0]  # let finish, not cut
    assert (report.handled, report.cut, report.returned) == (1, 0, 19)
    later = make_bus()
    await _take_the_rest(later, slow, recorder)
    assert sorted(recorder.completed) == list(range(20))
    assert max(recorder.effects.values()) == 1


async def test_messages_of_a_non_durable_subscription_are_counted_as_dropped(
    make_bus: BusFactory,
) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def handler(message_type: str, data: Any) -> None:  # nested: a non-durable queue
        await gate.wait()
        seen.append(data["n"])

    bus = make_bus()
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
    for n in range(30):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: sum(a.mailbox for a in bus.stats().actors.values()) == 29)
    report = await bounded_shutdown(bus, 0.3)
    assert (report.dropped, report.returned, report.cut) == (30, 0, 1)
    (entry,) = report.actors.values()
    assert not entry.durable
    assert entry.dropped == 30
    assert "30 dropped" in report.summary()


# -- Ctrl-C ---------------------------------------------------------------------------------

BLOCKED_PROGRAM = """
import asyncio
from actorbus import Actor, MessageBus

class Hang(Actor):
    start_timeout = 600.0

    async def on_start(self):
        await asyncio.Event().wait()

bus = MessageBus(mode="in_memory")
bus.stats()
print("blocking", flush=True)
bus.spawn(Hang)  # blocks: Ctrl-C must end the program
"""


def test_ctrl_c_ends_a_program_blocked_in_the_sync_face(tmp_path: Any) -> None:
    import os
    import signal
    import subprocess
    import sys

    program = tmp_path / "blocked.py"
    program.write_text(BLOCKED_PROGRAM)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, str(program)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            assert process.stdout.readline() == "blocking\n"
            threading.Event().wait(0.5)  # inside spawn by now
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # a second Ctrl-C at worst
                process.send_signal(signal.SIGINT)
                process.wait(timeout=15)
            stderr = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr


def test_sync_shutdown_returns_when_a_plain_handler_blocks_the_loop(
    server: InMemoryServer,
) -> None:
    entered = threading.Event()
    release = threading.Event()

    class Blocking(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        def on_signal(self, msg: Envelope) -> None:  # plain def: runs on the loop, blocks it
            entered.set()
            release.wait(30)

    bus = MessageBus(mode="in_memory", server=server)
    try:
        bus.spawn(Blocking)
        publisher = threading.Thread(  # its publish_sync waits for the blocked loop
            target=bus.publish_sync, args=(MessageTypes.STRATEGY_SIGNAL, {}), daemon=True
        )
        publisher.start()
        assert entered.wait(10)
        reports: list[ShutdownReport] = []
        stopper = threading.Thread(target=lambda: reports.append(bus.shutdown(timeout=0.3)))
        stopper.start()
        stopper.join(timeout=0.3 + HANG_STOP + 2 * GRACE)
        assert not stopper.is_alive(), "MessageBus.shutdown hung on a blocked loop"
        assert reports[0].abandoned == ("event loop",)
    finally:
        release.set()
