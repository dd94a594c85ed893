"""Scenario 10: bad input from the API and from the wire.

Each bad input must end, within 1 s, as a typed actorbus error raised to the
caller or as a dead letter, never as a hang, a crash or a silent drop; the next
publish must work; no connection may be left behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
import msgspec
import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import TICK, counting_actor, poll_sync, rabbit_bus, slack

from actorbus import (
    AsyncMessageBus,
    BrokerRefused,
    Codec,
    SchemaError,
    UnknownMessageType,
)
from actorbus.errors import MessageTooLarge, Unroutable
from actorbus.messages import register_message_type

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

WITHIN = 1.0
MAX_SIZE = 64 * 1024


class Quote(msgspec.Struct, frozen=True):
    symbol: str
    price: float


QUOTE = register_message_type("faults.quote", Quote)
NOBODY = register_message_type("faults.nobody")


async def timed_raise(
    expected: type[BaseException], operation: Callable[[], Awaitable[object]]
) -> float:
    began = time.monotonic()
    with pytest.raises(expected):
        await asyncio.wait_for(operation(), 10)
    return time.monotonic() - began


async def test_bad_input_is_refused_or_dead_lettered(node: RabbitNode, prefix: str) -> None:
    checker = LossChecker("10. bad input")
    timings: dict[str, float] = {}
    baseline = len(await node.alist_connections())

    good = 0

    async def next_publish_works() -> None:
        nonlocal good
        envelope = bus.envelope(TICK, {"seq": good})
        checker.sent(envelope.id)
        await bus.publish_envelope(envelope)
        checker.confirmed(envelope.id)
        good += 1
        assert await checker.wait_for(good, 5), "the next publish after a bad one was not handled"

    bus = rabbit_bus(node.url, prefix, codec=Codec(max_size=MAX_SIZE))
    async with bus:
        await bus.spawn(counting_actor(checker, "counter", types=(TICK, QUOTE)))
        await next_publish_works()

        # From the API: refused before anything reaches the wire.
        timings["oversize"] = await timed_raise(
            MessageTooLarge, lambda: bus.publish(TICK, {"blob": "x" * (MAX_SIZE + 1)})
        )
        await next_publish_works()
        timings["unroutable"] = await timed_raise(
            Unroutable, lambda: bus.publish(NOBODY, {"seq": 1}, mandatory=True)
        )
        await next_publish_works()
        timings["wrong schema (API)"] = await timed_raise(
            SchemaError, lambda: bus.publish(QUOTE, {"symbol": 1, "price": "high"})
        )
        await next_publish_works()
        timings["unknown type (API)"] = await timed_raise(
            UnknownMessageType, lambda: bus.publish("faults.not_registered", {})
        )
        await next_publish_works()

        # From the wire: a plain client sends what the codec cannot take.
        wire = {
            "undecodable": aio_pika.Message(b"\xc1garbage", content_type="application/msgpack"),
            "wrong schema (wire)": aio_pika.Message(
                b'{"symbol": 1, "price": "high"}', content_type="application/json"
            ),
            "oversize (wire)": aio_pika.Message(
                b'"' + b"x" * (MAX_SIZE + 10) + b'"', content_type="application/json"
            ),
            "unknown content type": aio_pika.Message(b"{}", content_type="text/x-nonsense"),
        }
        connection = await aio_pika.connect(node.url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"{prefix}.faults", ensure=False)
            for label, message in wire.items():
                message.message_id = f"bad-{len(timings)}"
                message.type = QUOTE
                began = time.monotonic()
                await exchange.publish(message, routing_key=QUOTE)
                found = False
                while time.monotonic() - began < 5 and not found:
                    dead = await bus.dead_letters(actor="counter")
                    found = any(e.envelope.id == message.message_id for e in dead)
                timings[label] = time.monotonic() - began
                assert found, f"{label}: no dead letter"
                await next_publish_works()

        # Connection-level mistakes: typed errors, quickly, nothing left open.
        for label, url in {
            "wrong credentials": node.url_for(password="wrong"),
            "missing vhost": node.url_for(vhost="no-such-vhost"),
        }.items():
            other = AsyncMessageBus(mode="rabbitmq", url=url, fallback=False, connect_timeout=5)
            timings[label] = await timed_raise(BrokerRefused, other.start)
            await other.shutdown()
            await next_publish_works()
        dead_letters = len(await bus.dead_letters(actor="counter"))

    def connections_back_to_baseline() -> bool:
        return len(node.list_connections()) <= baseline

    no_leak = await asyncio.to_thread(poll_sync, connections_back_to_baseline, 10.0)
    result = checker.result()
    slowest = max(timings, key=lambda k: timings[k])
    record_row(
        "10. Bad input (API and wire), 10 kinds",
        messages=len(timings),
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=timings[slowest],
        note=f"recovery = slowest refusal or dead letter ({slowest}); {dead_letters} dead letters",
        result=result,
        extra={"seconds_per_kind": {k: round(v, 4) for k, v in timings.items()}},
    )
    slow = {k: round(v, 3) for k, v in timings.items() if v > slack(WITHIN)}
    assert not slow, slow
    assert dead_letters == len(wire)
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert no_leak, node.list_connections()
