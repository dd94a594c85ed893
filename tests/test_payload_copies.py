"""In memory, what each receiver gets is its own, unless nobody can change it."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec
import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, Envelope, handles, register_message_type
from actorbus.errors import InvalidMessage

pytestmark = pytest.mark.anyio


class Quote(msgspec.Struct, frozen=True):
    """Immutable through and through: shared, not copied."""

    symbol: str
    legs: tuple[float, ...]


class Book(msgspec.Struct):
    """Mutable: each receiver gets its own."""

    levels: list[float]


class Basket(msgspec.Struct, frozen=True):
    """Frozen, but holding a list: copied."""

    items: list[str]


QUOTE = register_message_type("copies.quote", Quote)
BOOK = register_message_type("copies.book", Book)
BASKET = register_message_type("copies.basket", Basket)
PLAIN = register_message_type("copies.plain")


async def receive_twice(bus: AsyncMessageBus, message_type: str, data: Any) -> list[Any]:
    got: list[Any] = []
    await bus.subscribe(message_type, lambda t, d: got.append(d))
    await bus.subscribe(message_type, lambda t, d: got.append(d))
    await bus.publish(message_type, data)
    await wait_until(lambda: len(got) == 2)
    return got


async def test_an_immutable_schema_struct_is_shared(bus: AsyncMessageBus) -> None:
    quote = Quote("X", (1.0, 2.0))
    first, second = await receive_twice(bus, QUOTE, quote)
    assert first is quote
    assert second is quote


@pytest.mark.parametrize(
    ("message_type", "data"),
    [
        (BOOK, Book([1.0])),
        (BASKET, Basket(["a"])),
        (PLAIN, {"a": [1]}),
        (PLAIN, {"symbol": "X", "bid": 1.5, "n": 2, "ok": True, "none": None, "raw": b"x"}),
        (PLAIN, {1: "int key"}),
    ],
    ids=["mutable Struct", "frozen Struct with a list", "dict", "flat dict", "int keys"],
)
async def test_anything_mutable_is_copied_per_receiver(
    bus: AsyncMessageBus, message_type: str, data: Any
) -> None:
    first, second = await receive_twice(bus, message_type, data)
    assert first == data
    assert second == data
    assert first is not data
    assert second is not first
    if isinstance(data, dict):  # what a receiver does to its copy reaches nobody else
        first["mine"] = 1
        assert "mine" not in second
        assert "mine" not in data


async def test_a_flat_dict_is_copied_as_rabbitmq_would_decode_it(bus: AsyncMessageBus) -> None:
    data = {"symbol": "X", "big": 2**63, "neg": -(2**63), "f": float("inf"), "b": b"\x00"}
    first, _ = await receive_twice(bus, PLAIN, data)
    assert first == msgspec.msgpack.decode(msgspec.msgpack.encode(data))
    assert [type(value) for value in first.values()] == [type(value) for value in data.values()]
    with pytest.raises(InvalidMessage):  # checked like any publish: too big for msgpack
        await bus.publish(PLAIN, {"n": 2**64})


class Tagger(Actor):
    """Writes into the headers of what it receives."""

    seen: ClassVar[list[dict[str, str]]] = []

    @handles(PLAIN)
    async def on_plain(self, envelope: Envelope) -> None:
        self.seen.append(dict(envelope.headers))
        envelope.headers["tagged"] = self.context.name


async def test_headers_are_each_receivers_own(bus: AsyncMessageBus) -> None:
    from actorbus import ChildSpec, Supervisor

    Tagger.seen = []
    await bus.spawn(
        Supervisor([ChildSpec(Tagger, name="one"), ChildSpec(Tagger, name="two")], name="t")
    )
    headers = {"trace": "1"}
    await bus.publish(PLAIN, 1, headers=headers)
    headers["trace"] = "changed by the publisher"
    await wait_until(lambda: len(Tagger.seen) == 2)
    assert Tagger.seen == [{"trace": "1"}, {"trace": "1"}]


class Keeper(Actor):
    """Answers with a dict it keeps and changes afterwards."""

    kept: ClassVar[dict[str, Any]] = {}

    @handles(PLAIN)
    async def on_plain(self, envelope: Envelope) -> dict[str, Any]:
        type(self).kept = {"n": 1}
        asyncio.get_running_loop().call_soon(type(self).kept.update, {"n": 2})
        return self.kept


async def test_the_asker_gets_its_own_copy_of_the_reply(bus: AsyncMessageBus) -> None:
    await bus.spawn(Keeper)
    reply = await bus.ask(PLAIN, None, timeout=5)
    await asyncio.sleep(0.01)
    assert Keeper.kept == {"n": 2}
    assert reply == {"n": 1}
