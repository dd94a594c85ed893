"""AsyncMessageBus: mode, lifecycle, subscriptions, shutdown, bad input."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
from support.waiting import wait_until

import actorbus
from actorbus import (
    Actor,
    AsyncMessageBus,
    BusClosed,
    Envelope,
    MessageTypes,
    UnknownMessageType,
    handles,
)
from actorbus.brokers.memory import InMemoryServer
from actorbus.config import MODE_VARIABLE
from actorbus.errors import ConfigurationError, SchemaError
from actorbus.subscription import SUBSCRIPTION_EXPIRY, SUBSCRIPTION_MAX_LENGTH, patterns_hash

pytestmark = pytest.mark.anyio


received: list[tuple[str, Any]] = []


async def module_handler(message_type: str, data: Any) -> None:
    """A module-level subscriber: it gets a durable queue named after it."""
    received.append((message_type, data))


@pytest.fixture(autouse=True)
def _clear_received() -> None:
    received.clear()


# -- mode ----------------------------------------------------------------------------------


async def test_mode_default_is_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODE_VARIABLE, raising=False)
    assert AsyncMessageBus().mode == "in_memory"


async def test_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_VARIABLE, "rabbitmq")
    assert AsyncMessageBus().mode == "rabbitmq"
    monkeypatch.setenv(MODE_VARIABLE, "in_memory")
    assert AsyncMessageBus().mode == "in_memory"
    monkeypatch.setenv(MODE_VARIABLE, "")
    assert AsyncMessageBus().mode == "in_memory"


async def test_mode_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_VARIABLE, "rabbitmq")
    assert AsyncMessageBus(mode="in_memory").mode == "in_memory"
    monkeypatch.setenv(MODE_VARIABLE, "in_memory")
    assert AsyncMessageBus(mode="rabbitmq").mode == "rabbitmq"


async def test_unknown_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"'kafka'.*in_memory.*rabbitmq"):
        AsyncMessageBus(mode="kafka")
    monkeypatch.setenv(MODE_VARIABLE, "zeromq")
    with pytest.raises(ConfigurationError, match=MODE_VARIABLE):
        AsyncMessageBus()
    with pytest.raises(ValueError, match="bogus"):  # ConfigurationError is a ValueError too
        actorbus.MessageBus(mode="bogus").mode  # noqa: B018


async def test_mode_of_a_started_bus(bus: AsyncMessageBus) -> None:
    assert bus.mode == "in_memory"
    assert bus.stats().mode == "in_memory"


# -- lifecycle -----------------------------------------------------------------------------


async def test_starts_lazily_on_first_use(server: InMemoryServer) -> None:
    bus = AsyncMessageBus(mode="in_memory", server=server)
    assert bus.loop is None
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    assert bus.loop is asyncio.get_running_loop()
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"x": 1})
    await wait_until(lambda: len(received) == 1)
    await bus.shutdown()


async def test_concurrent_first_uses_start_once(server: InMemoryServer) -> None:
    bus = AsyncMessageBus(mode="in_memory", server=server)
    startups: list[Any] = []

    def on_startup(message_type: str, data: Any) -> None:
        startups.append(data)

    async with AsyncMessageBus(mode="in_memory", server=server) as watcher:
        await watcher.subscribe(MessageTypes.SYSTEM_STARTUP, on_startup)
        await asyncio.gather(*(bus.publish(MessageTypes.STRATEGY_SIGNAL, {}) for _ in range(10)))
        await wait_until(lambda: len(startups) == 1)
        await bus.shutdown()
    assert startups[0]["mode"] == "in_memory"


async def test_system_startup_and_shutdown_are_published(server: InMemoryServer) -> None:
    seen: list[str] = []

    def on_system(message_type: str, data: Any) -> None:
        seen.append(message_type)

    async with AsyncMessageBus(mode="in_memory", server=server) as watcher:
        await watcher.subscribe("system.*", on_system)
        async with AsyncMessageBus(mode="in_memory", server=server, source="other"):
            pass
        await wait_until(lambda: len(seen) == 2)
    assert seen[:2] == [MessageTypes.SYSTEM_STARTUP, MessageTypes.SYSTEM_SHUTDOWN]
    assert all(isinstance(t, MessageTypes) for t in seen)  # subscribers get the enum member


async def test_shutdown_twice_is_harmless_and_publish_after_is_bus_closed(
    server: InMemoryServer,
) -> None:
    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.start()
    await bus.shutdown()
    await bus.shutdown()
    assert bus.closed
    assert bus.stats().closed is True
    with pytest.raises(BusClosed):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    with pytest.raises(BusClosed):
        await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    with pytest.raises(BusClosed):
        await bus.start()
    with pytest.raises(BusClosed):
        bus.publish_soon(bus.envelope(MessageTypes.STRATEGY_SIGNAL, {}))


async def test_shutdown_of_a_never_started_bus(server: InMemoryServer) -> None:
    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.shutdown()
    with pytest.raises(BusClosed):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})


async def test_shutdown_drains_in_flight_messages(server: InMemoryServer) -> None:
    handled: list[int] = []

    class Slowish(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            await asyncio.sleep(0.001)
            handled.append(msg.data["n"])

    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.spawn(Slowish)
    for n in range(50):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await bus.shutdown()
    assert handled == list(range(50))


async def test_shutdown_gives_unread_messages_back_in_order(server: InMemoryServer) -> None:
    gate = asyncio.Event()
    handled: list[int] = []

    class Stuck(Actor):
        mailbox_size = 100

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            await gate.wait()
            handled.append(msg.data["n"])

    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.spawn(Stuck)
    for n in range(10):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await bus.shutdown(timeout=0.05)  # the drain times out: the handler is stuck
    assert handled == []
    # a later bus on the same server finds every message, in order, in the durable queue
    gate.set()
    async with AsyncMessageBus(mode="in_memory", server=server) as later:
        await later.spawn(Stuck)
        await wait_until(lambda: len(handled) == 10)
    assert handled == list(range(10))


async def test_shutdown_while_a_publish_waits_for_a_full_prefetch(server: InMemoryServer) -> None:
    gate = asyncio.Event()
    handled: list[int] = []

    class Tiny(Actor):
        mailbox_size = 2

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            await gate.wait()
            handled.append(msg.data["n"])

    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.spawn(Tiny)
    for n in range(2):  # one being handled, one in the mailbox: the prefetch is full
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    blocked = asyncio.ensure_future(bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 2}))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await asyncio.wait_for(bus.shutdown(timeout=0.05), 5)
    await asyncio.wait_for(blocked, 5)  # released, not hung
    # nothing is lost: every message waits in the durable queue for the next bus
    gate.set()
    async with AsyncMessageBus(mode="in_memory", server=server) as later:
        await later.spawn(Tiny)
        await wait_until(lambda: len(handled) == 3)
    assert handled == [0, 1, 2]


async def test_using_a_bus_from_another_loop_is_a_clear_error(bus: AsyncMessageBus) -> None:
    def elsewhere() -> None:
        asyncio.run(bus.publish(MessageTypes.STRATEGY_SIGNAL, {}))

    with pytest.raises(RuntimeError, match="another event loop"):
        await asyncio.to_thread(elsewhere)


# -- subscriptions -------------------------------------------------------------------------


async def test_sync_and_async_subscribers(bus: AsyncMessageBus) -> None:
    plain: list[Any] = []

    def sync_handler(message_type: str, data: Any) -> None:
        plain.append((message_type, data))

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, sync_handler)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"a": 1})
    await wait_until(lambda: len(received) == 1 and len(plain) == 1)
    assert received == [(MessageTypes.STRATEGY_SIGNAL, {"a": 1})]
    assert plain == received


async def test_subscribe_to_a_pattern(bus: AsyncMessageBus) -> None:
    await bus.subscribe("risk.*", module_handler)
    await bus.publish(MessageTypes.RISK_ERROR, {})
    await bus.publish(MessageTypes.RISK_LIMIT_BREACH, {})
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: len(received) == 2)
    assert [t for t, _ in received] == ["risk.error", "risk.limit_breach"]


async def test_subscribe_validates_the_type(bus: AsyncMessageBus) -> None:
    with pytest.raises(UnknownMessageType):
        await bus.subscribe("strategy.signalz", module_handler)
    with pytest.raises(UnknownMessageType, match="empty word"):
        await bus.subscribe("risk..*", module_handler)
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: len(received) == 1)


async def test_subscribing_the_same_handler_twice_delivers_once(bus: AsyncMessageBus) -> None:
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await wait_until(lambda: len(received) == 1)
    await bus.subscribe(MessageTypes.RISK_ERROR, module_handler)
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 2})
    await wait_until(lambda: len(received) == 2)
    await asyncio.sleep(0.01)
    assert received == [
        (MessageTypes.STRATEGY_SIGNAL, {"n": 1}),
        (MessageTypes.RISK_ERROR, {"n": 2}),
    ]
    # one subscription per set of types: the second type has its own queue and actor
    assert len([n for n in bus.stats().actors if "module_handler" in n]) == 2


async def test_concurrent_subscribes_of_one_handler_are_ready_when_they_return(
    bus: AsyncMessageBus,
) -> None:
    await asyncio.gather(
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler),
        bus.subscribe(MessageTypes.RISK_ERROR, module_handler),
        bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler),
    )
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 2})
    await wait_until(lambda: len(received) == 2)


async def test_unsubscribe(bus: AsyncMessageBus) -> None:
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.subscribe(MessageTypes.RISK_ERROR, module_handler)
    await bus.unsubscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 2})
    await wait_until(lambda: len(received) == 1)
    await bus.unsubscribe(MessageTypes.RISK_ERROR, module_handler)
    await bus.unsubscribe(MessageTypes.RISK_ERROR, module_handler)  # harmless
    assert not [n for n in bus.stats().actors if "module_handler" in n]
    await bus.publish(MessageTypes.RISK_ERROR, {"n": 3})
    await asyncio.sleep(0.01)
    assert received == [(MessageTypes.RISK_ERROR, {"n": 2})]


async def test_anonymous_handlers_get_private_queues(server: InMemoryServer) -> None:
    got: list[str] = []

    def nested(message_type: str, data: Any) -> None:
        got.append("nested")

    class Callable_:
        def __call__(self, message_type: str, data: Any) -> None:
            got.append("callable")

    handlers: list[Any] = [
        lambda t, d: got.append("lambda"),
        nested,
        Callable_(),
        functools.partial(lambda tag, t, d: got.append(tag), "partial"),
    ]
    async with AsyncMessageBus(mode="in_memory", server=server) as first:
        async with AsyncMessageBus(mode="in_memory", server=server) as second:
            for handler in handlers:
                await first.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
                await second.subscribe(MessageTypes.STRATEGY_SIGNAL, handler)
            queues = {name for name in server.queues if ".sub." in name}
            assert len(queues) == 8  # one private queue per subscription
            await first.publish(MessageTypes.STRATEGY_SIGNAL, {})
            await wait_until(lambda: len(got) == 8)
        await asyncio.sleep(0.01)
        assert sorted(got) == sorted(["lambda", "nested", "callable", "partial"] * 2)
        # the private queues die with their bus
        assert len({name for name in server.queues if ".sub." in name}) == 4
    assert not {name for name in server.queues if ".sub." in name}


class Component:
    """A module-level class whose instances subscribe a method each."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_signal(self, message_type: str, data: Any) -> None:
        self.seen.append(data)


async def test_bound_methods_of_two_objects_each_get_every_message(bus: AsyncMessageBus) -> None:
    one, two = Component(), Component()
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, one.on_signal)
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, two.on_signal)
    for n in range(4):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await wait_until(lambda: len(one.seen) == 4 and len(two.seen) == 4)


async def test_module_level_handlers_share_a_durable_queue(server: InMemoryServer) -> None:
    async with (
        AsyncMessageBus(mode="in_memory", server=server) as first,
        AsyncMessageBus(mode="in_memory", server=server) as second,
    ):
        await first.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
        await second.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
        queues = [name for name in server.queues if "module_handler" in name]
        signal_hash = patterns_hash([MessageTypes.STRATEGY_SIGNAL])
        assert queues == [f"trading.sub.{__name__}.module_handler.{signal_hash}"]
        for n in range(10):
            await first.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
        await wait_until(lambda: len(received) == 10)  # competing consumers: once each
    assert queues[0] in server.queues  # durable: outlives the buses


async def test_explicit_queue_name(bus: AsyncMessageBus, server: InMemoryServer) -> None:
    await bus.subscribe(
        MessageTypes.STRATEGY_SIGNAL, lambda t, d: received.append((t, d)), queue="my.q"
    )
    assert "my.q" in server.queues
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: len(received) == 1)


async def test_subscribe_from_inside_a_handler(bus: AsyncMessageBus) -> None:
    async def late(message_type: str, data: Any) -> None:
        received.append((message_type, data))

    async def first(message_type: str, data: Any) -> None:
        await bus.subscribe(MessageTypes.RISK_ERROR, late)
        await bus.publish(MessageTypes.RISK_ERROR, {"from": "handler"})

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, first)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})
    await wait_until(lambda: received == [(MessageTypes.RISK_ERROR, {"from": "handler"})])


# -- bad input -----------------------------------------------------------------------------


async def test_bad_input_is_a_clear_error_and_the_bus_keeps_working(bus: AsyncMessageBus) -> None:
    import msgspec

    from actorbus.messages import register_message_type

    class Order(msgspec.Struct):
        symbol: str
        quantity: float

    order_type = register_message_type("testbus.order", Order)
    await bus.subscribe(order_type, module_handler)
    with pytest.raises(UnknownMessageType, match=r"no\.such"):
        await bus.publish("no.such", {})
    with pytest.raises(SchemaError, match="quantity"):
        await bus.publish(order_type, {"symbol": "BTC", "quantity": "lots"})
    await bus.publish(order_type, {"symbol": "BTC", "quantity": 2})
    await wait_until(lambda: len(received) == 1)
    assert received[0][1] == Order(symbol="BTC", quantity=2.0)


async def test_mandatory_publish(bus: AsyncMessageBus) -> None:
    from actorbus.errors import Unroutable

    with pytest.raises(Unroutable):
        await bus.publish(MessageTypes.RISK_ERROR, {}, mandatory=True)
    await bus.subscribe(MessageTypes.RISK_ERROR, module_handler)
    await bus.publish(MessageTypes.RISK_ERROR, {}, mandatory=True)
    await wait_until(lambda: len(received) == 1)


async def test_publish_returns_the_message_id(bus: AsyncMessageBus) -> None:
    ids: list[str] = []

    class Recorder(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        def on_signal(self, msg: Envelope) -> None:
            ids.append(msg.id)
            assert msg.source == "test-source"
            assert msg.correlation_id == "corr"
            assert msg.headers == {"trace": "t1"}

    await bus.spawn(Recorder)
    message_id = await bus.publish(
        MessageTypes.STRATEGY_SIGNAL,
        {},
        correlation_id="corr",
        headers={"trace": "t1"},
        source="test-source",
    )
    await wait_until(lambda: ids == [message_id])
    assert bus.stats().actors["recorder"].processed == 1


async def test_a_repeated_subscribe_waits_for_the_first_to_be_ready(bus: AsyncMessageBus) -> None:
    first = asyncio.ensure_future(bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler))
    await asyncio.sleep(0)  # the first subscribe is under way
    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await first
    await wait_until(lambda: len(received) == 1)


async def test_publish_envelope_checks_hand_built_envelopes(bus: AsyncMessageBus) -> None:
    import msgspec

    from actorbus.messages import register_message_type

    class Level(msgspec.Struct):
        price: float

    level_type = register_message_type("testbus.level", Level)
    await bus.subscribe(level_type, module_handler)
    with pytest.raises(UnknownMessageType):
        await bus.publish_envelope(Envelope(id="x1", type="bogus.type", data={}, timestamp=0.0))
    with pytest.raises(SchemaError):
        await bus.publish_envelope(
            Envelope(id="x2", type=level_type, data={"price": "high"}, timestamp=0.0)
        )
    await bus.publish_envelope(Envelope(id="x3", type=level_type, data={"price": 1}, timestamp=0.0))
    await bus.publish_envelope(bus.envelope(level_type, {"price": 2.0}))
    await wait_until(lambda: len(received) == 2)
    assert [data for _, data in received] == [Level(price=1.0), Level(price=2.0)]


async def test_ask_answered_by_a_subscribed_function(bus: AsyncMessageBus) -> None:
    def quote(message_type: str, data: Any) -> dict[str, Any]:
        return {"symbol": data["symbol"], "bid": 1.0}

    async def async_quote(message_type: str, data: Any) -> str:
        return "async"

    await bus.subscribe(MessageTypes.MARKET_DATA_REQUEST, quote)
    assert await bus.ask(MessageTypes.MARKET_DATA_REQUEST, {"symbol": "BTC"}, timeout=2) == {
        "symbol": "BTC",
        "bid": 1.0,
    }
    await bus.subscribe(MessageTypes.POSITION_UPDATE, async_quote)
    assert await bus.ask(MessageTypes.POSITION_UPDATE, {}, timeout=2) == "async"


async def test_placement_runs_only_the_named_actors(bus: AsyncMessageBus) -> None:
    from actorbus import Supervisor

    started: list[str] = []

    class Here(Actor):
        async def on_start(self) -> None:
            started.append("here")

    class Elsewhere(Actor):
        async def on_start(self) -> None:
            started.append("elsewhere")

    tree = await bus.spawn(Supervisor([Here, Elsewhere]), actors=["here"])
    assert started == ["here"]
    assert [cell.name for cell in tree.cells] == ["here"]


async def test_shutdown_while_a_publish_waits_behind_a_backlog(server: InMemoryServer) -> None:
    gate = asyncio.Event()
    handled: list[int] = []

    class Tiny(Actor):
        mailbox_size = 1

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            await gate.wait()
            handled.append(msg.data["n"])

    bus = AsyncMessageBus(mode="in_memory", server=server)
    tree = await bus.spawn(Tiny)
    await bus.stop(tree)
    for n in range(5):  # waiting in the queue
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await bus.spawn(Tiny)
    blocked = asyncio.ensure_future(bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 5}))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # behind the backlog, the publisher feels the slow actor
    await asyncio.wait_for(bus.shutdown(timeout=0.05), 5)
    await asyncio.wait_for(blocked, 5)
    gate.set()
    async with AsyncMessageBus(mode="in_memory", server=server) as later:
        await later.spawn(Tiny)
        await wait_until(lambda: len(handled) == 6)
    assert handled == [0, 1, 2, 3, 4, 5]


async def test_shutdown_fails_pending_asks_at_once(server: InMemoryServer) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Mute(Actor):
        @handles(MessageTypes.MARKET_DATA_REQUEST)
        async def on_request(self, msg: Envelope) -> None:
            entered.set()
            await gate.wait()

    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.spawn(Mute)
    pending = asyncio.ensure_future(bus.ask(MessageTypes.MARKET_DATA_REQUEST, {}, timeout=60))
    await asyncio.wait_for(entered.wait(), 5)
    await bus.shutdown(timeout=0.05)
    with pytest.raises(BusClosed, match="before the reply"):
        await asyncio.wait_for(pending, 5)


async def test_handlers_publish_follow_ups_while_shutdown_drains(server: InMemoryServer) -> None:
    bus = AsyncMessageBus(mode="in_memory", server=server)
    follow_ups: list[Any] = []

    async def relay(message_type: str, data: Any) -> None:
        await asyncio.sleep(0.001)
        await bus.publish(MessageTypes.RISK_ERROR, data)

    async def sink(message_type: str, data: Any) -> None:
        follow_ups.append(data)

    await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, relay)
    await bus.subscribe(MessageTypes.RISK_ERROR, sink)
    for n in range(10):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    await bus.shutdown()
    assert follow_ups == [{"n": n} for n in range(10)]
    assert _dead_letter_count(server) == 0
    with pytest.raises(BusClosed):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {})


def _dead_letter_count(server: InMemoryServer) -> int:
    from actorbus.brokers.base import DeadLetterFilter

    return len(server.list_dead_letters(DeadLetterFilter()))


UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1


async def test_unreachable_rabbitmq_falls_back_to_memory(server: InMemoryServer) -> None:
    bus = AsyncMessageBus(mode="rabbitmq", url=UNREACHABLE, connect_timeout=2, server=server)
    assert bus.mode == "rabbitmq"  # what was asked for, until started
    async with bus:
        assert bus.mode == "in_memory"  # what is in effect
        await bus.subscribe(MessageTypes.STRATEGY_SIGNAL, module_handler)
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
        await wait_until(lambda: len(received) == 1)


async def test_unreachable_rabbitmq_without_fallback_is_a_clear_error() -> None:
    from actorbus import BrokerUnavailable

    bus = AsyncMessageBus(mode="rabbitmq", url=UNREACHABLE, connect_timeout=2, fallback=False)
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"):
        await bus.start()
    await bus.shutdown()


class Service:
    """Its classmethod has a stable name; its instances' methods do not."""

    @classmethod
    def on_class(cls, message_type: str, data: Any) -> None: ...

    def on_instance(self, message_type: str, data: Any) -> None: ...


def test_subscription_queue_names() -> None:
    from actorbus.subscription import subscription_spec

    def nested(message_type: str, data: Any) -> None: ...

    named = subscription_spec(module_handler, "trading", None, ["a.b", "c.d"])
    assert (
        named.queue_options.name
        == f"trading.sub.{__name__}.module_handler.{patterns_hash(['c.d', 'a.b'])}"
    )
    assert named.queue_options.durable
    # bounded and expiring, so that a queue left behind can neither grow nor block
    assert named.queue_options.max_length == SUBSCRIPTION_MAX_LENGTH
    assert named.queue_options.overflow == "drop-head"
    assert named.queue_options.expires == SUBSCRIPTION_EXPIRY
    other_types = subscription_spec(module_handler, "trading", None, ["a.b"])
    assert other_types.queue_options.name != named.queue_options.name
    assert subscription_spec(Service.on_class, "p", None, ["a.b"]).queue_options.name == (
        f"p.sub.{__name__}.Service.on_class.{patterns_hash(['a.b'])}"
    )
    private = [
        subscription_spec(handler, "trading", None, ())
        for handler in (nested, lambda t, d: None, Service().on_instance, functools.partial(nested))
    ]
    for cls in private:
        assert not cls.queue_options.durable
        assert "<" not in (cls.queue_options.name or "")
    assert len({cls.queue_options.name for cls in private}) == len(private)
    # the same anonymous handler subscribed twice gets two queues (two subscriptions)
    assert (
        subscription_spec(nested, "t", None, ()).queue_options.name
        != subscription_spec(nested, "t", None, ()).queue_options.name
    )
    # an explicit queue is durable and used as given
    explicit = subscription_spec(nested, "trading", "my.queue", ())
    assert explicit.queue_options.name == "my.queue"
    assert explicit.queue_options.durable
    assert explicit.queue_options.max_length is None
    assert explicit.queue_options.expires is None


async def test_concurrent_shutdowns_all_return_when_it_is_done(server: InMemoryServer) -> None:
    handled: list[int] = []

    class Slowish(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            await asyncio.sleep(0.001)
            handled.append(msg.data["n"])

    bus = AsyncMessageBus(mode="in_memory", server=server)
    await bus.spawn(Slowish)
    for n in range(20):
        await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": n})
    first = asyncio.ensure_future(bus.shutdown())
    await asyncio.sleep(0)  # the first shutdown is under way
    await bus.shutdown()  # returns once the first is done, not at once
    assert handled == list(range(20))
    assert bus.stats().actors == {}
    await first
