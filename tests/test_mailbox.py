"""Bounded mailboxes and the conflation policy."""

from __future__ import annotations

import asyncio

import pytest

from actorbus import Conflate, MessageTypes
from actorbus.mailbox import ConflatingMailbox, Mailbox
from actorbus.messages import Delivery, Envelope, make_envelope

pytestmark = pytest.mark.anyio


class Counted(Delivery):
    __slots__ = ("acked", "requeued")

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(envelope)
        self.acked = 0
        self.requeued = 0

    def ack(self) -> None:
        self.acked += 1

    def requeue(self) -> None:
        self.requeued += 1


def tick(symbol: str, price: float) -> Counted:
    return Counted(
        make_envelope(MessageTypes.MARKET_DATA_UPDATE, {"symbol": symbol, "price": price})
    )


def signal(n: int) -> Counted:
    return Counted(make_envelope(MessageTypes.STRATEGY_SIGNAL, {"n": n}))


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Mailbox(0)


async def test_fifo() -> None:
    mailbox = Mailbox(10)
    for n in range(5):
        await mailbox.put(signal(n))
    assert len(mailbox) == 5
    got = []
    for _ in range(5):
        delivery = await mailbox.get()
        assert delivery is not None
        got.append(delivery.envelope.data["n"])
    assert got == [0, 1, 2, 3, 4]
    assert mailbox.get_nowait() is None


async def test_full_mailbox_makes_put_wait() -> None:
    mailbox = Mailbox(2)
    await mailbox.put(signal(0))
    await mailbox.put(signal(1))
    third = asyncio.ensure_future(mailbox.put(signal(2)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not third.done()
    assert len(mailbox) == 2
    first = mailbox.get_nowait()
    assert first is not None
    assert first.envelope.data["n"] == 0
    await asyncio.wait_for(third, 1)
    assert len(mailbox) == 2


async def test_waiting_putters_keep_their_order_and_the_bound() -> None:
    mailbox = Mailbox(1)
    await mailbox.put(signal(0))
    putters = [asyncio.ensure_future(mailbox.put(signal(n))) for n in range(1, 20)]
    got = []
    max_depth = 0
    while len(got) < 20:
        delivery = await asyncio.wait_for(mailbox.get(), 1)
        assert delivery is not None
        got.append(delivery.envelope.data["n"])
        max_depth = max(max_depth, len(mailbox))
        await asyncio.sleep(0)
    await asyncio.gather(*putters)
    assert got == list(range(20))
    assert max_depth <= 1


async def test_cancelled_putter_passes_its_turn_on() -> None:
    mailbox = Mailbox(1)
    await mailbox.put(signal(0))
    cancelled = asyncio.ensure_future(mailbox.put(signal(1)))
    waiting = asyncio.ensure_future(mailbox.put(signal(2)))
    await asyncio.sleep(0)
    mailbox.get_nowait()  # wakes `cancelled`...
    cancelled.cancel()  # ...which gives its turn to `waiting`
    await asyncio.wait_for(waiting, 1)
    delivery = mailbox.get_nowait()
    assert delivery is not None
    assert delivery.envelope.data["n"] == 2


async def test_get_waits_for_a_put() -> None:
    mailbox = Mailbox(5)
    getter = asyncio.ensure_future(mailbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    await mailbox.put(signal(7))
    delivery = await asyncio.wait_for(getter, 1)
    assert delivery is not None
    assert delivery.envelope.data["n"] == 7


async def test_interrupt_wakes_a_waiting_get() -> None:
    mailbox = Mailbox(5)
    getter = asyncio.ensure_future(mailbox.get())
    await asyncio.sleep(0)
    mailbox.interrupt()
    assert await asyncio.wait_for(getter, 1) is None
    # an interrupt before the get is kept for the next one
    mailbox.interrupt()
    assert await asyncio.wait_for(mailbox.get(), 1) is None


async def test_push_front_and_take_all() -> None:
    mailbox = Mailbox(2)
    await mailbox.put(signal(1))
    await mailbox.put(signal(2))
    mailbox.push_front(signal(0))  # over capacity on purpose
    assert len(mailbox) == 3
    assert [d.envelope.data["n"] for d in mailbox.take_all()] == [0, 1, 2]
    assert len(mailbox) == 0


async def test_take_all_releases_waiting_putters() -> None:
    mailbox = Mailbox(1)
    await mailbox.put(signal(0))
    waiting = asyncio.ensure_future(mailbox.put(signal(1)))
    await asyncio.sleep(0)
    mailbox.take_all()
    await asyncio.wait_for(waiting, 1)


async def test_conflation_keeps_latest_per_symbol_and_acks_replaced() -> None:
    mailbox = ConflatingMailbox(10, Conflate([MessageTypes.MARKET_DATA_UPDATE]))
    first = tick("BTC", 1.0)
    second = tick("BTC", 2.0)
    eth = tick("ETH", 10.0)
    third = tick("BTC", 3.0)
    for delivery in (first, eth, second, third):
        await mailbox.put(delivery)
    assert len(mailbox) == 2
    assert mailbox.conflated == 2
    assert first.acked == 1
    assert second.acked == 1
    assert third.acked == 0
    got = [mailbox.get_nowait() for _ in range(2)]
    assert [d.envelope.data for d in got if d is not None] == [
        {"symbol": "BTC", "price": 3.0},  # keeps BTC's place in the queue
        {"symbol": "ETH", "price": 10.0},
    ]
    # once read, a new tick queues again
    await mailbox.put(tick("BTC", 4.0))
    assert len(mailbox) == 1


async def test_conflation_leaves_other_types_alone() -> None:
    mailbox = ConflatingMailbox(10, Conflate([MessageTypes.MARKET_DATA_UPDATE]))
    for n in range(3):
        await mailbox.put(signal(n))
    assert len(mailbox) == 3
    assert mailbox.conflated == 0


async def test_conflation_with_a_custom_key() -> None:
    policy = Conflate([MessageTypes.MARKET_DATA_UPDATE], key=lambda envelope: "all")
    mailbox = ConflatingMailbox(10, policy)
    await mailbox.put(tick("BTC", 1.0))
    await mailbox.put(tick("ETH", 2.0))
    assert len(mailbox) == 1
    delivery = mailbox.get_nowait()
    assert delivery is not None
    assert delivery.envelope.data["symbol"] == "ETH"


async def test_conflating_put_into_a_full_mailbox_replaces_while_waiting() -> None:
    mailbox = ConflatingMailbox(1, Conflate([MessageTypes.MARKET_DATA_UPDATE]))
    await mailbox.put(signal(0))
    waiting = asyncio.ensure_future(mailbox.put(tick("BTC", 1.0)))
    await asyncio.sleep(0)
    assert not waiting.done()
    # a tick of a symbol already queued never waits
    mailbox.get_nowait()
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(mailbox.put(tick("BTC", 2.0)), 1)
    assert len(mailbox) == 1
    assert mailbox.conflated == 1
    delivery = mailbox.get_nowait()
    assert delivery is not None
    assert delivery.envelope.data["price"] == 2.0
