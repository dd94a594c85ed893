"""The sync face's loop thread: anyio's blocking portal, the kind of loop, and the end of both."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvloop
from anyio.from_thread import BlockingPortal
from support.waiting import wait_for

import actorbus.sync_bus as sync_bus_module
from actorbus import (
    Actor,
    AsyncMessageBus,
    BusClosed,
    Envelope,
    MessageBus,
    MessageTypes,
    UnknownMessageType,
    _loops,
    cli,
    handles,
)
from actorbus.brokers.memory import InMemoryServer
from actorbus.errors import InvalidHandler


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    """The threads alive now that were not alive before."""
    return set(threading.enumerate()) - before


@pytest.fixture
def uvloop_installed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether uvloop can be imported (``False``: made unimportable for the test)."""
    installed: bool = request.param
    if not installed:
        monkeypatch.setitem(sys.modules, "uvloop", None)
    return installed


def test_the_loop_thread_is_the_portals_and_ends_at_shutdown(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sync_bus_module.start_blocking_portal
    portals: list[BlockingPortal] = []
    left: list[BlockingPortal] = []

    @contextmanager
    def recording(*args: Any, **kwargs: Any) -> Iterator[BlockingPortal]:
        with real(*args, **kwargs) as portal:
            portals.append(portal)
            yield portal
        left.append(portal)  # its context is left, its thread joined

    monkeypatch.setattr(sync_bus_module, "start_blocking_portal", recording)
    before = set(threading.enumerate())
    bus = MessageBus(mode="in_memory", server=server)
    handled_on: list[threading.Thread] = []
    bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: handled_on.append(_current()))
    bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    wait_for(lambda: bool(handled_on))
    (portal,) = portals
    loop_thread = portal.call(_current)
    assert handled_on == [loop_thread]
    assert loop_thread.name == "actorbus-loop"
    assert new_threads(before) == {loop_thread}  # the portal's thread, and no other
    bus.shutdown()
    assert left == [portal]
    assert not loop_thread.is_alive()
    assert new_threads(before) == set()  # back to the threads there were
    assert not any(thread.name.startswith("actorbus-loop") for thread in new_threads(before))
    with pytest.raises(BusClosed):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    with pytest.raises(BusClosed):
        bus.stats()
    assert portals == [portal]  # a closed bus starts no loop again


def _current() -> threading.Thread:
    return threading.current_thread()


@pytest.mark.parametrize("uvloop_installed", [True, False], indirect=True)
def test_the_sync_bus_runs_on_uvloop_when_it_is_installed(
    uvloop_installed: bool, server: InMemoryServer
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    with MessageBus(mode="in_memory", server=server) as bus:
        bus.subscribe(
            MessageTypes.STRATEGY_SIGNAL, lambda t, d: loops.append(asyncio.get_running_loop())
        )
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
        wait_for(lambda: bool(loops))
    assert isinstance(loops[0], uvloop.Loop) is uvloop_installed
    if not uvloop_installed:
        assert isinstance(loops[0], asyncio.BaseEventLoop)  # asyncio's own


@pytest.mark.parametrize("uvloop_installed", [True, False], indirect=True)
def test_the_command_and_the_bench_make_the_same_choice(uvloop_installed: bool) -> None:
    async def kind() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert issubclass(cli._runner()(kind()), uvloop.Loop) is uvloop_installed
    assert issubclass(_loops.run(kind()), uvloop.Loop) is uvloop_installed  # run_bench's
    expected = {"loop_factory": uvloop.new_event_loop} if uvloop_installed else {}
    assert _loops.anyio_backend_options() == expected


def test_every_blocking_call_from_a_handler_is_a_clear_error(server: InMemoryServer) -> None:
    refused: list[str] = []

    def handler(message_type: str, data: Any) -> None:
        calls: list[Callable[[], object]] = [
            lambda: bus.spawn(Actor),
            lambda: bus.unsubscribe(MessageTypes.RISK_ERROR, handler),
            lambda: bus.ask(MessageTypes.RISK_ERROR, {}),
            bus.dead_letters,
            bus.replay_dead_letters,
            bus.purge_dead_letters,
        ]
        for call in calls:
            try:
                call()
            except RuntimeError as exc:
                refused.append(str(exc).split()[0])

    with MessageBus(mode="in_memory", server=server) as bus:
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
        wait_for(lambda: len(refused) == 6)
    assert refused == [
        "MessageBus.spawn",
        "MessageBus.unsubscribe",
        "MessageBus.ask",
        "MessageBus.dead_letters",
        "MessageBus.replay_dead_letters",
        "MessageBus.purge_dead_letters",
    ]


def test_a_call_cut_short_by_shutdown_is_bus_closed(server: InMemoryServer) -> None:
    """A loop blocked past the shutdown's bound: the call waiting on it, once the loop
    comes back and the portal stops, fails with ``BusClosed`` (not a bare
    ``CancelledError``), and the loop thread then ends after all."""
    entered = threading.Event()
    release = threading.Event()

    class Blocking(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        def on_signal(self, msg: Envelope) -> None:  # plain def: runs on the loop, blocks it
            entered.set()
            release.wait(30)

    class Slow(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> float:
            await asyncio.sleep(30)
            return 1.0

    before = set(threading.enumerate())
    bus = MessageBus(mode="in_memory", server=server)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            bus.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    try:
        bus.spawn(Blocking)
        bus.spawn(Slow)
        publisher = threading.Thread(  # its publish_sync waits for the blocked loop
            target=bus.publish_sync, args=(MessageTypes.STRATEGY_SIGNAL, {}), daemon=True
        )
        publisher.start()
        assert entered.wait(10)
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        threading.Event().wait(0.1)  # its call waits for the loop to take it
        report = bus.shutdown(timeout=0.05)
        assert report.abandoned == ("event loop",)
    finally:
        release.set()
    asker.join(timeout=10)
    assert [type(exc) for exc in outcome] == [BusClosed]
    wait_for(lambda: not new_threads(before))  # the loop thread ended once it could


@pytest.mark.anyio
async def test_subscribe_soon_from_a_handler() -> None:
    got: list[Any] = []
    refused: list[type[BaseException]] = []

    def late(message_type: str, data: Any) -> None:
        got.append(data)

    async with AsyncMessageBus(mode="in_memory", server=InMemoryServer()) as bus:

        def handler(message_type: str, data: Any) -> None:
            for bad in ((MessageTypes.RISK_ERROR, 42), ("no.such.type", late)):
                try:
                    bus.subscribe_soon(*bad)
                except (InvalidHandler, UnknownMessageType) as exc:
                    refused.append(type(exc))
            bus.subscribe_soon(MessageTypes.RISK_ERROR, late)

        await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
        for _ in range(1000):
            if any(".late." in name for name in bus.stats().actors):
                break
            await asyncio.sleep(0.005)
        await bus.publish(MessageTypes.RISK_ERROR, {"n": 1})
        for _ in range(1000):
            if got:
                break
            await asyncio.sleep(0.005)
    assert refused == [InvalidHandler, UnknownMessageType]
    assert got == [{"n": 1}]
    with pytest.raises(BusClosed):
        bus.subscribe_soon(MessageTypes.RISK_ERROR, late)
