"""Queues, payloads, bad input, unroutable messages and crash order, on both brokers."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec
import pytest
from support.waiting import wait_until

from actorbus import (
    Actor,
    ActorbusError,
    AsyncMessageBus,
    Envelope,
    MessageTypes,
    RetryPolicy,
    handles,
    register_message_type,
)
from actorbus.errors import Unroutable

pytestmark = pytest.mark.anyio

SIGNAL = MessageTypes.STRATEGY_SIGNAL
POSITION = MessageTypes.POSITION_UPDATE
NOBODY = register_message_type("contract.nobody")
SUBMIT = register_message_type("contract.order_submit")
CANCEL = register_message_type("contract.order_cancel")


def same_named_handler(sink: list[tuple[str, Any]]) -> Callable[[str, Any], Any]:
    """A handler posing as the module-level ``__main__.handler`` of some program."""

    async def handler(message_type: str, data: Any) -> None:
        sink.append((str(message_type), data))

    handler.__module__ = "__main__"
    handler.__qualname__ = "handler"
    return handler


# -- 1. a subscription receives exactly the types it subscribed to --------------------------


async def test_same_function_name_different_types_never_share(
    make_bus: Callable[..., AsyncMessageBus],
) -> None:
    signals: list[tuple[str, Any]] = []
    positions: list[tuple[str, Any]] = []
    first, second = make_bus(), make_bus()
    await first.subscribe(SIGNAL, same_named_handler(signals))
    await second.subscribe(POSITION, same_named_handler(positions))
    for n in range(100):
        await first.publish(SIGNAL, {"n": n})
    for n in range(100):
        await second.publish(POSITION, {"n": n})
    await wait_until(lambda: len(signals) >= 100 and len(positions) >= 100)
    await asyncio.sleep(0.05)
    assert {t for t, _ in signals} == {SIGNAL}
    assert len(signals) == 100
    assert {t for t, _ in positions} == {POSITION}
    assert len(positions) == 100


async def test_another_type_for_the_same_function_steals_nothing(
    make_bus: Callable[..., AsyncMessageBus],
) -> None:
    """One program adds a type to its handler; the other, subscribed to one type, keeps it."""
    wide: list[tuple[str, Any]] = []
    narrow: list[tuple[str, Any]] = []
    first, second = make_bus(), make_bus()
    wide_handler = same_named_handler(wide)
    await first.subscribe(SIGNAL, wide_handler)
    await second.subscribe(SIGNAL, same_named_handler(narrow))  # identical: they share
    await first.subscribe(POSITION, wide_handler)
    for n in range(50):
        await first.publish(POSITION, {"n": n})
    await wait_until(lambda: len(wide) >= 50)
    await asyncio.sleep(0.05)
    assert narrow == [], "a subscription to SIGNAL only never gets POSITION"
    assert [d["n"] for _, d in wide] == list(range(50))


async def test_a_subscription_left_behind_is_bounded_and_blocks_nobody(
    make_bus: Callable[..., AsyncMessageBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("actorbus.subscription.SUBSCRIPTION_MAX_LENGTH", 10)
    gone = make_bus()
    await gone.subscribe(SIGNAL, same_named_handler([]))
    [queue] = [f"{gone.prefix}.{name}" for name in await gone.queued() if name.startswith("sub.")]
    await gone.shutdown()
    live = make_bus()
    for n in range(25):  # more than the left-behind queue keeps: no QueueFull for anyone
        await live.publish(SIGNAL, {"n": n})
    broker = live.broker  # type: ignore[union-attr]
    for _ in range(200):
        if await broker.queue_length(queue) == 10:
            break
        await asyncio.sleep(0.01)
    assert await broker.queue_length(queue) == 10, "drop-head at the bound"


# -- 2. each receiver gets its own copy ------------------------------------------------------


async def test_each_subscriber_gets_its_own_copy(make_bus: Callable[..., AsyncMessageBus]) -> None:
    bus = make_bus()
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def vandal(message_type: str, data: Any) -> None:
        data["price"] = -1
        data["legs"].append("vandal")

    async def reader(message_type: str, data: Any) -> None:
        await asyncio.sleep(0.05)  # the vandal and the publisher have had their go
        seen.append(data)
        arrived.set()

    await bus.subscribe(SIGNAL, vandal)
    await bus.subscribe(SIGNAL, reader)
    payload = {"price": 10.5, "legs": ["a"]}
    await bus.publish(SIGNAL, payload)
    payload["price"] = 99.0
    payload["legs"].append("publisher")
    await asyncio.wait_for(arrived.wait(), 10)
    assert seen == [{"price": 10.5, "legs": ["a"]}]


# -- 4. bad input is refused at the call, the same way on both brokers ------------------------


class Opaque:
    """Something no codec can encode."""


def deep_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: {"ids": {1, 2}}, id="set"),
        pytest.param(lambda: frozenset({1}), id="frozenset"),
        pytest.param(lambda: {"x": Opaque()}, id="custom object"),
        pytest.param(lambda: b"x" * (50 * 1024 * 1024), id="50 MB bytes"),
        pytest.param(lambda: deep_dict(100_000), id="100,000-deep dict"),
        pytest.param(lambda: {"n": 2**70}, id="int out of range"),
    ],
)
async def test_bad_data_is_refused_at_publish(
    make_bus: Callable[..., AsyncMessageBus], bad: Callable[[], Any]
) -> None:
    bus = make_bus()
    got: list[Any] = []
    await bus.subscribe(SIGNAL, lambda t, d: got.append(d))
    data = bad()
    with pytest.raises(ActorbusError) as raised:
        await bus.publish(SIGNAL, data)
    assert not isinstance(raised.value.__cause__, RecursionError)
    await bus.publish(SIGNAL, {"fine": True})  # the bus still works
    await wait_until(lambda: got == [{"fine": True}])


class Holder:
    """Subscribes a method and a callable object."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def on_message(self, message_type: str, data: Any) -> None:
        self.got.append(data)

    def __call__(self, message_type: str, data: Any, extra: int = 0) -> None:
        self.got.append(data)


def takes_one(message_type: str) -> None:
    """A handler with the wrong arity."""


def takes_three(message_type: str, data: Any, required: Any) -> None:
    """Another handler with the wrong arity."""


@pytest.mark.parametrize(
    "handler", [42, None, "handler", takes_one, takes_three, lambda: None], ids=repr
)
async def test_bad_handlers_are_refused_at_subscribe(
    make_bus: Callable[..., AsyncMessageBus], handler: Any
) -> None:
    bus = make_bus()
    with pytest.raises(ActorbusError) as raised:
        await bus.subscribe(SIGNAL, handler)
    assert isinstance(raised.value, TypeError)
    assert bus.stats().actors == {}


async def test_every_callable_shape_is_accepted(make_bus: Callable[..., AsyncMessageBus]) -> None:
    bus = make_bus()
    holder = Holder()
    got: list[Any] = []
    for handler in (
        holder.on_message,
        holder,
        functools.partial(lambda tag, t, d: got.append((tag, d)), "partial"),
        lambda *args: got.append(("args", args[1])),
        lambda t, d=None, *, k=1: got.append(("defaults", d)),
    ):
        await bus.subscribe(SIGNAL, handler)
    await bus.publish(SIGNAL, 7)
    await wait_until(lambda: len(got) == 3 and len(holder.got) == 2)


# -- 8. unroutable messages are counted, logged, and kept on request --------------------------


async def test_unroutable_messages_are_counted_and_logged(
    make_bus: Callable[..., AsyncMessageBus], caplog: pytest.LogCaptureFixture
) -> None:
    nobody = register_message_type(f"contract.nobody_{uuid.uuid4().hex[:8]}")  # fresh: logged
    bus = make_bus()
    await bus.start()
    before = bus.stats().unroutable
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="actorbus.unroutable"):
        for n in range(100):
            await bus.publish(nobody, {"n": n})
    took = time.monotonic() - began
    assert bus.stats().unroutable - before == 100
    warnings = [r for r in caplog.records if r.name == "actorbus.unroutable"]
    assert 1 <= len(warnings) <= 1 + took // 10, "logged, at most once per type per 10 s"
    assert nobody in warnings[0].getMessage()
    with pytest.raises(Unroutable):
        await bus.publish(nobody, {"n": 0}, mandatory=True)
    assert bus.stats().unroutable - before == 101


class Forwarder(Actor):
    """Publishes from inside an actor, mandatory or not."""

    outcomes: ClassVar[list[str]] = []

    @handles(SIGNAL)
    async def on_signal(self, envelope: Envelope) -> None:
        try:
            await self.publish(NOBODY, {}, mandatory=envelope.data["mandatory"])
            self.outcomes.append("sent")
        except Unroutable:
            self.outcomes.append("unroutable")


async def test_mandatory_from_an_actor(make_bus: Callable[..., AsyncMessageBus]) -> None:
    Forwarder.outcomes = []
    bus = make_bus()
    await bus.spawn(Forwarder)
    await bus.publish(SIGNAL, {"mandatory": True})
    await bus.publish(SIGNAL, {"mandatory": False})
    await wait_until(lambda: len(Forwarder.outcomes) == 2)
    assert Forwarder.outcomes == ["unroutable", "sent"]


async def test_unroutable_keep_puts_them_in_a_queue(
    make_bus: Callable[..., AsyncMessageBus],
) -> None:
    bus = make_bus(unroutable="keep")
    await bus.start()
    for n in range(100):
        await bus.publish(NOBODY, {"n": n})
    broker = bus.broker  # type: ignore[union-attr]
    kept = f"{bus.prefix}.unroutable"
    for _ in range(200):
        if await broker.queue_length(kept) == 100:
            break
        await asyncio.sleep(0.01)
    assert await broker.queue_length(kept) == 100
    assert bus.stats().unroutable >= 100


# -- 11. the message that crashed an actor is handled first after the restart ----------------


class Crash(Exception):
    """Fatal for :class:`Exchange`."""


class Exchange(Actor):
    """Crashes on its first submit, once the cancel is waiting behind it."""

    retry = RetryPolicy(max_attempts=1, backoff=0.001, fatal=(Crash,))
    handled: ClassVar[list[str]] = []
    crashes_left: ClassVar[int] = 1
    cancel_waiting: ClassVar[asyncio.Event]

    @handles(SUBMIT)
    async def on_submit(self, envelope: Envelope) -> None:
        if type(self).crashes_left > 0:
            type(self).crashes_left -= 1
            await asyncio.wait_for(self.cancel_waiting.wait(), 10)
            raise Crash("exchange link dropped")
        self.handled.append(f"submit {envelope.data['order']}")

    @handles(CANCEL)
    async def on_cancel(self, envelope: Envelope) -> None:
        self.handled.append(f"cancel {envelope.data['order']}")


async def test_the_crashing_message_is_retried_before_those_behind_it(
    make_bus: Callable[..., AsyncMessageBus],
) -> None:
    Exchange.handled, Exchange.crashes_left = [], 1
    Exchange.cancel_waiting = asyncio.Event()
    bus = make_bus()
    supervisor = await bus.spawn(Exchange)
    [cell] = supervisor.cells
    await bus.publish(SUBMIT, {"order": 1})
    await bus.publish(CANCEL, {"order": 1})
    await wait_until(lambda: len(cell.mailbox) == 1)  # the cancel waits behind the submit
    Exchange.cancel_waiting.set()
    await wait_until(lambda: len(Exchange.handled) == 2)
    assert Exchange.handled == ["submit 1", "cancel 1"]
    assert bus.stats().actors["exchange"].restarts == 1
    assert await bus.dead_letters() == []


async def test_a_message_crashing_again_is_dead_lettered(
    make_bus: Callable[..., AsyncMessageBus],
) -> None:
    Exchange.handled, Exchange.crashes_left = [], 2
    Exchange.cancel_waiting = asyncio.Event()
    Exchange.cancel_waiting.set()
    bus = make_bus()
    await bus.spawn(Exchange)
    await bus.publish(SUBMIT, {"order": 2})
    await bus.publish(CANCEL, {"order": 2})
    await wait_until(lambda: Exchange.handled == ["cancel 2"])
    for _ in range(200):
        dead = await bus.dead_letters()
        if dead:
            break
        await asyncio.sleep(0.01)
    assert [entry.envelope.data for entry in dead] == [{"order": 2}]
    assert bus.stats().actors["exchange"].restarts == 2


class Point(msgspec.Struct):
    """A Struct no type registered as its schema."""

    x: int
    y: int


@pytest.mark.parametrize(
    ("sent", "arrives"),
    [
        pytest.param((1, "a"), [1, "a"], id="tuple as list"),
        pytest.param(Point(1, 2), {"x": 1, "y": 2}, id="unregistered Struct as dict"),
        pytest.param("text", "text", id="str"),
        pytest.param(None, None, id="None"),
    ],
)
async def test_data_arrives_as_the_wire_gives_it(
    make_bus: Callable[..., AsyncMessageBus], sent: Any, arrives: Any
) -> None:
    bus = make_bus()
    got: list[Any] = []
    await bus.subscribe(SIGNAL, lambda t, d: got.append(d))
    await bus.publish(SIGNAL, sent)
    await wait_until(lambda: len(got) == 1)
    assert got == [arrives]
    assert type(got[0]) is type(arrives)


class Book(msgspec.Struct):
    """The schema of a request type."""

    levels: list[float]


BOOK = register_message_type("contract.book", Book)


class Answer(msgspec.Struct):
    """A reply Struct, not the schema of the request's type."""

    price: float


class Pricer(Actor):
    """Answers a typed request with a Struct of another shape."""

    @handles(BOOK)
    async def on_book(self, envelope: Envelope) -> Answer:
        return Answer(price=envelope.data.levels[0])


async def test_a_reply_arrives_as_plain_data(make_bus: Callable[..., AsyncMessageBus]) -> None:
    bus = make_bus()
    await bus.spawn(Pricer)
    assert await bus.ask(BOOK, Book([2.5]), timeout=10) == {"price": 2.5}
