"""MessageBus, the sync face: threads, handlers, running loops, and the async face."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.waiting import wait_for

from actorbus import (
    Actor,
    ActorStartError,
    AsyncMessageBus,
    BusClosed,
    Envelope,
    MessageBus,
    MessageTypes,
    RetryPolicy,
    Supervisor,
    UnknownMessageType,
    handles,
)
from actorbus.brokers.memory import InMemoryServer


class Inbox:
    """A thread-safe list of what a handler received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)


@pytest.fixture(autouse=True)
def _no_loop_thread_outlives_its_test() -> Iterator[None]:
    before = {t for t in threading.enumerate() if t.name == "actorbus-loop"}
    yield
    after = {t for t in threading.enumerate() if t.name == "actorbus-loop"}
    assert after <= before, "a MessageBus was not shut down: its loop thread is still running"


@pytest.fixture
def sync_bus(server: InMemoryServer) -> Iterator[MessageBus]:
    bus = MessageBus(mode="in_memory", server=server)
    try:
        yield bus
    finally:
        bus.shutdown()


def test_publish_and_subscribe(sync_bus: MessageBus) -> None:
    inbox = Inbox()

    async def handler(message_type: str, data: Any) -> None:
        inbox.add((message_type, data))

    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
    message_id = sync_bus.publish_sync(
        message_type=MessageTypes.STRATEGY_SIGNAL, data={"symbol": "BTC/USDT", "action": "BUY"}
    )
    assert isinstance(message_id, str)
    wait_for(lambda: len(inbox) == 1)
    assert inbox.items == [(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC/USDT", "action": "BUY"})]
    assert MessageBus.publish is MessageBus.publish_sync  # the seed's other name for it
    assert sync_bus.mode == "in_memory"


def test_bad_input_raises_in_the_caller(sync_bus: MessageBus) -> None:
    with pytest.raises(UnknownMessageType):
        sync_bus.publish_sync("strategy.nope", {})
    with pytest.raises(UnknownMessageType):
        sync_bus.subscribe("strategy.nope", lambda t, d: None)
    inbox = Inbox()
    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    wait_for(lambda: len(inbox) == 1)


def test_many_threads_publish_and_subscribe_at_once(sync_bus: MessageBus) -> None:
    threads_count = 8
    per_thread = 200
    inboxes = [Inbox() for _ in range(threads_count)]
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inboxes[index].add(d))
            barrier.wait(timeout=10)  # every subscriber is in place
            for n in range(per_thread):
                sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"thread": index, "n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "deadlock"
    assert errors == []
    total = threads_count * per_thread
    wait_for(lambda: all(len(inbox) == total for inbox in inboxes))
    for inbox in inboxes:
        # no loss, no duplicates, and each thread's messages in its order
        assert len({(d["thread"], d["n"]) for d in inbox.items}) == total
        for index in range(threads_count):
            ns = [d["n"] for d in inbox.items if d["thread"] == index]
            assert ns == list(range(per_thread))


def test_publish_and_subscribe_from_inside_sync_and_async_handlers(
    sync_bus: MessageBus,
) -> None:
    inbox = Inbox()

    def late(message_type: str, data: Any) -> None:
        inbox.add(("late", data))

    def later(message_type: str, data: Any) -> None:
        inbox.add(("later", data))

    def sync_handler(message_type: str, data: Any) -> None:
        sync_bus.subscribe(MessageTypes.RISK_ERROR, late)
        sync_bus.publish_sync(MessageTypes.RISK_LIMIT_BREACH, {"from": "sync"})

    async def async_handler(message_type: str, data: Any) -> None:
        sync_bus.subscribe(MessageTypes.POSITION_ERROR, later)
        sync_bus.publish_sync(MessageTypes.RISK_LIMIT_BREACH, {"from": "async"})

    sync_bus.subscribe(MessageTypes.RISK_LIMIT_BREACH, lambda t, d: inbox.add(("breach", d)))
    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, sync_handler)
    sync_bus.subscribe(MessageTypes.STRATEGY_STATUS, async_handler)
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    sync_bus.publish_sync(MessageTypes.STRATEGY_STATUS, {})
    wait_for(lambda: len(inbox) == 2)
    assert sorted(d["from"] for _, d in inbox.items) == ["async", "sync"]
    # the subscriptions made inside the handlers are live
    wait_for(lambda: any(".late." in n for n in sync_bus.stats().actors))
    wait_for(lambda: any(".later." in n for n in sync_bus.stats().actors))
    sync_bus.publish_sync(MessageTypes.RISK_ERROR, {"n": 1})
    sync_bus.publish_sync(MessageTypes.POSITION_ERROR, {"n": 2})
    wait_for(lambda: ("late", {"n": 1}) in inbox.items and ("later", {"n": 2}) in inbox.items)


def test_blocking_calls_inside_a_handler_are_a_clear_error(sync_bus: MessageBus) -> None:
    outcome: list[BaseException] = []

    def handler(message_type: str, data: Any) -> None:
        assert sync_bus.stats().mode == "in_memory"  # reading counters never blocks: allowed here
        for call in (lambda: sync_bus.ask(MessageTypes.RISK_ERROR, {}), sync_bus.shutdown):
            try:
                call()
            except RuntimeError as exc:
                outcome.append(exc)

    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    wait_for(lambda: len(outcome) == 2)
    assert "async API" in str(outcome[0])
    assert "handler" in str(outcome[1])
    # the refused shutdown left the bus open, and a later one from outside works
    assert not sync_bus.closed
    sync_bus.publish_sync(MessageTypes.STRATEGY_STATUS, {})
    sync_bus.shutdown()
    assert sync_bus.closed


def test_publish_from_a_thread_running_its_own_event_loop(sync_bus: MessageBus) -> None:
    inbox = Inbox()
    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))

    async def elsewhere() -> None:
        for n in range(50):
            sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": n})
        with pytest.raises(UnknownMessageType):  # still validated right away
            sync_bus.publish_sync("bad.type", {})
        sync_bus.subscribe(MessageTypes.STRATEGY_STATUS, lambda t, d: inbox.add(d))

    thread = threading.Thread(target=lambda: asyncio.run(elsewhere()))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    wait_for(lambda: len(inbox) == 50)
    assert [d["n"] for d in inbox.items] == list(range(50))
    sync_bus.publish_sync(MessageTypes.STRATEGY_STATUS, {"status": "ok"})
    wait_for(lambda: {"status": "ok"} in inbox.items)


def test_first_use_from_inside_a_running_loop(server: InMemoryServer) -> None:
    inbox = Inbox()

    async def main() -> None:
        bus = MessageBus(mode="in_memory", server=server)
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
        bus.shutdown()  # drains the background publish

    asyncio.run(main())
    assert inbox.items == [{"n": 1}]


def test_sync_face_reaches_async_subscribers_and_back(server: InMemoryServer) -> None:
    to_async = Inbox()
    to_sync = Inbox()
    sync_bus = MessageBus(mode="in_memory", server=server)
    sync_bus.subscribe(MessageTypes.RISK_ERROR, lambda t, d: to_sync.add(d))

    async def main() -> None:
        async with AsyncMessageBus(mode="in_memory", server=server) as bus:
            await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: to_async.add(d))
            await asyncio.to_thread(sync_bus.publish_sync, MessageTypes.STRATEGY_SIGNAL, {"a": 1})
            await bus.publish(MessageTypes.RISK_ERROR, {"b": 2})
            await asyncio.to_thread(wait_for, lambda: bool(len(to_async) and len(to_sync)))

    asyncio.run(main())
    sync_bus.shutdown()
    assert to_async.items == [{"a": 1}]
    assert to_sync.items == [{"b": 2}]


def test_default_buses_share_the_process_server() -> None:
    sync_bus = MessageBus(mode="in_memory")
    inbox = Inbox()
    sync_bus.subscribe(MessageTypes.POSITION_CLOSE, lambda t, d: inbox.add(("sync", d)))

    async def main() -> None:
        bus = AsyncMessageBus(mode="in_memory")
        await bus.subscribe(MessageTypes.POSITION_UPDATE, lambda t, d: inbox.add(("async", d)))
        await bus.publish(MessageTypes.POSITION_CLOSE, {"from": "async"})
        await asyncio.to_thread(
            sync_bus.publish_sync, MessageTypes.POSITION_UPDATE, {"from": "sync"}
        )
        await asyncio.to_thread(wait_for, lambda: len(inbox) == 2)
        await bus.shutdown()

    try:
        asyncio.run(main())
    finally:
        sync_bus.shutdown()
    assert sorted(inbox.items) == [("async", {"from": "sync"}), ("sync", {"from": "async"})]


def test_shutdown_twice_and_publish_after(server: InMemoryServer) -> None:
    bus = MessageBus(mode="in_memory", server=server)
    inbox = Inbox()
    bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))
    for n in range(100):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    bus.shutdown()
    assert len(inbox) == 100  # drained
    bus.shutdown()
    with pytest.raises(BusClosed):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
    with pytest.raises(BusClosed):
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: None)
    MessageBus(mode="in_memory", server=server).shutdown()  # never started: nothing to do


def test_context_manager(server: InMemoryServer) -> None:
    inbox = Inbox()
    with MessageBus(mode="in_memory", server=server) as bus:
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    assert bus.closed
    assert inbox.items == [{"n": 1}]


def test_spawn_ask_dead_letters_and_stats(sync_bus: MessageBus) -> None:
    class Pricer(Actor):
        retry = RetryPolicy(max_attempts=2, backoff=0.001)

        @handles(MessageTypes.MARKET_DATA_REQUEST)
        def on_request(self, msg: Envelope) -> float:
            if msg.data.get("fail"):
                raise LookupError("unknown symbol")
            return 42.0

    supervisor = sync_bus.spawn(Supervisor([Pricer]))
    assert isinstance(supervisor, Supervisor)
    assert sync_bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC"}, timeout=2) == 42.0
    sync_bus.publish_sync(MessageTypes.MARKET_DATA_REQUEST, {"fail": True})
    wait_for(lambda: sync_bus.stats().actors["pricer"].dead_lettered == 1)
    (entry,) = sync_bus.dead_letters(actor="pricer")
    assert entry.error_type == "LookupError"
    assert sync_bus.replay_dead_letters(type=MessageTypes.MARKET_DATA_REQUEST) == 1
    wait_for(lambda: sync_bus.stats().actors["pricer"].dead_lettered == 2)
    assert sync_bus.purge_dead_letters() == 1
    assert sync_bus.dead_letters() == []
    stats = sync_bus.stats()
    assert stats.actors["pricer"].processed == 1


def test_spawn_raises_start_errors(sync_bus: MessageBus) -> None:
    class Never(Actor):
        async def on_start(self) -> None:
            raise OSError("no connection")

    with pytest.raises(ActorStartError, match="no connection"):
        sync_bus.spawn(Supervisor([Never], max_restarts=1))
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})  # still working


def test_unsubscribe(sync_bus: MessageBus) -> None:
    inbox = Inbox()

    def handler(message_type: str, data: Any) -> None:
        inbox.add(data)

    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    wait_for(lambda: len(inbox) == 1)
    sync_bus.unsubscribe(MessageTypes.STRATEGY_SIGNAL, handler)
    sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": 2})
    sync_bus.publish_sync(MessageTypes.RISK_ERROR, {})  # round trip through the loop
    assert inbox.items == [{"n": 1}]


def test_ask_across_threads(sync_bus: MessageBus, server: InMemoryServer) -> None:
    class Pricer(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> float:
            return 99.0

    sync_bus.spawn(Pricer)  # runs on the sync face's loop thread

    async def main() -> Any:
        async with AsyncMessageBus(mode="in_memory", server=server) as bus:
            return await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=2)

    assert asyncio.run(main()) == 99.0


def test_shutdown_releases_a_thread_blocked_on_a_full_prefetch(server: InMemoryServer) -> None:
    release = threading.Event()
    handled = Inbox()

    class Stuck(Actor):
        mailbox_size = 1

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            while not release.is_set():  # noqa: ASYNC110 - the event is set from another thread
                await asyncio.sleep(0.001)
            handled.add(msg.data["n"])

    bus = MessageBus(mode="in_memory", server=server)
    bus.spawn(Stuck)
    published = Inbox()

    def publisher() -> None:
        for n in range(2):  # one handled (the prefetch is one), then it blocks
            bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": n})
            published.add(n)

    thread = threading.Thread(target=publisher)
    thread.start()
    wait_for(lambda: len(published) == 1)
    bus.shutdown(timeout=0.05)
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(published) == 2
    release.set()
    with MessageBus(mode="in_memory", server=server) as later:
        later.spawn(Stuck)
        wait_for(lambda: len(handled) == 2)
    assert handled.items == [0, 1]


def test_handlers_publish_follow_ups_while_shutdown_drains(server: InMemoryServer) -> None:
    bus = MessageBus(mode="in_memory", server=server)
    follow_ups = Inbox()

    def relay(message_type: str, data: Any) -> None:
        time.sleep(0.001)
        bus.publish_sync(MessageTypes.RISK_ERROR, data)

    bus.subscribe(MessageTypes.STRATEGY_SIGNAL, relay)
    bus.subscribe(MessageTypes.RISK_ERROR, lambda t, d: follow_ups.add(d))
    for n in range(20):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    bus.shutdown()
    assert sorted(d["n"] for d in follow_ups.items) == list(range(20))
    with pytest.raises(BusClosed):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})


def test_sync_face_from_async_code_with_a_system_subscriber_there(
    server: InMemoryServer,
) -> None:
    """Start and shutdown of the sync face announce themselves to a subscriber on the loop
    that is blocked in those very calls: the announcements must not deadlock."""
    seen: list[str] = []
    got = Inbox()

    async def main() -> None:
        async with AsyncMessageBus(mode="in_memory", server=server) as bus:
            await bus.subscribe("system.*", lambda t, d: seen.append(d["source"]))
            sync_bus = MessageBus(mode="in_memory", server=server, source="sync-face")
            sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: got.add(d))
            sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
            await asyncio.to_thread(wait_for, lambda: len(got) == 1)
            sync_bus.shutdown(timeout=1.0)
            await asyncio.to_thread(wait_for, lambda: "sync-face" in seen)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "deadlock"
    assert got.items == [{"n": 1}]


def test_many_threads_each_running_an_event_loop(sync_bus: MessageBus) -> None:
    inbox = Inbox()
    sync_bus.subscribe(MessageTypes.STRATEGY_SIGNAL, lambda t, d: inbox.add(d))
    barrier = threading.Barrier(4)

    async def publish_all(index: int) -> None:
        barrier.wait(timeout=10)
        for n in range(100):
            sync_bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"thread": index, "n": n})
            if n % 10 == 0:
                await asyncio.sleep(0)

    threads = [
        threading.Thread(target=asyncio.run, args=(publish_all(i),), daemon=True) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "deadlock"
    wait_for(lambda: len(inbox) == 400)
    for index in range(4):
        assert [d["n"] for d in inbox.items if d["thread"] == index] == list(range(100))


def test_concurrent_shutdowns_from_threads(server: InMemoryServer) -> None:
    bus = MessageBus(mode="in_memory", server=server)
    handled = Inbox()

    def slowish(message_type: str, data: Any) -> None:
        time.sleep(0.001)
        handled.add(data)

    bus.subscribe(MessageTypes.STRATEGY_SIGNAL, slowish)
    for n in range(30):
        bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    returned: list[int] = []

    def shut() -> None:
        bus.shutdown()
        returned.append(len(handled))

    threads = [threading.Thread(target=shut) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    assert returned == [30, 30, 30]  # none returned before the drain was complete


def loop_threads() -> int:
    return sum(thread.name == "actorbus-loop" for thread in threading.enumerate())


def test_first_use_from_many_threads_at_once_starts_one_bus(server: InMemoryServer) -> None:
    seen = Inbox()
    before = loop_threads()
    with MessageBus(mode="in_memory", server=server) as watcher:
        watcher.subscribe(MessageTypes.SYSTEM_STARTUP, lambda t, d: seen.add(d["source"]))
        bus = MessageBus(mode="in_memory", server=server, source="fresh")
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def first_use() -> None:
            try:
                barrier.wait(timeout=10)
                bus.publish_sync(MessageTypes.STRATEGY_SIGNAL, {})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert errors == []
        assert loop_threads() == before + 2  # the watcher's and the fresh bus's: one each
        bus.shutdown()
        wait_for(lambda: "fresh" in seen.items)
        assert seen.items.count("fresh") == 1
