"""Scenario 9: poison messages and retries on a quorum queue.

2000 messages reach an actor on a quorum queue: good ones, flaky ones (the
handler fails twice, then succeeds), always-failing ones, and, from a plain
AMQP client, malformed bodies and bodies that break the type's schema. Pass:
good and flaky messages are each handled once; malformed and wrong-schema ones
become dead letters after one delivery without reaching the handler; always-
failing ones become dead letters after the last attempt, with their reason;
the dead-letter count is exact and the queue ends empty.
"""

from __future__ import annotations

import asyncio
import json

import aio_pika
import msgspec
import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import poll_sync, rabbit_bus

from actorbus import Actor, Envelope, QueueOptions, RetryPolicy, handles
from actorbus.messages import register_message_type

pytestmark = [pytest.mark.faults, pytest.mark.anyio]


class Order(msgspec.Struct, frozen=True):
    seq: int
    kind: str


ORDER = register_message_type("faults.order", Order)
GOOD, FLAKY, ALWAYS, MALFORMED, WRONG_SCHEMA = 1800, 50, 50, 50, 50
MESSAGES = GOOD + FLAKY + ALWAYS + MALFORMED + WRONG_SCHEMA
ATTEMPTS = 3


async def publish_bad(node: RabbitNode, prefix: str) -> None:
    """Malformed and wrong-schema messages, the way a buggy client in another language sends."""
    connection = await aio_pika.connect(node.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{prefix}.faults", ensure=False)
        for seq in range(MALFORMED):
            await exchange.publish(
                aio_pika.Message(
                    b"\xc1\xff\x00 not msgpack",
                    content_type="application/msgpack",
                    message_id=f"malformed-{seq}",
                    type=ORDER,
                ),
                routing_key=ORDER,
            )
        for seq in range(WRONG_SCHEMA):
            await exchange.publish(
                aio_pika.Message(
                    json.dumps({"seq": "not a number", "kind": seq}).encode(),
                    content_type="application/json",
                    message_id=f"schema-{seq}",
                    type=ORDER,
                ),
                routing_key=ORDER,
            )


async def test_poison_and_retry_on_a_quorum_queue(node: RabbitNode, prefix: str) -> None:
    checker = LossChecker("9. poison and retry (quorum)")
    calls: dict[str, int] = {}

    class Orders(Actor):
        name = "orders"
        queue_options = QueueOptions(queue_type="quorum")
        retry = RetryPolicy(max_attempts=ATTEMPTS, backoff=0.002, max_backoff=0.005)

        @handles(ORDER)
        async def on_order(self, msg: Envelope) -> None:
            calls[msg.id] = calls.get(msg.id, 0) + 1
            if msg.data.kind == "flaky" and msg.attempt < ATTEMPTS:
                raise ConnectionError(f"flaky, attempt {msg.attempt}")
            if msg.data.kind == "always":
                raise ValueError(f"always fails: order {msg.data.seq}")
            checker.handled(msg.id)

    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(Orders)
        kinds = ["good"] * GOOD + ["flaky"] * FLAKY + ["always"] * ALWAYS
        expected_handled: set[str] = set()
        always_ids: set[str] = set()
        for seq, kind in enumerate(kinds):
            envelope = bus.envelope(ORDER, {"seq": seq, "kind": kind})
            if kind == "always":
                always_ids.add(envelope.id)
            else:
                expected_handled.add(envelope.id)
                checker.sent(envelope.id)
            await bus.publish_envelope(envelope)
            if kind != "always":
                checker.confirmed(envelope.id)
        await publish_bad(node, prefix)
        await checker.wait_for(GOOD + FLAKY, timeout=60)
        await checker.wait_quiet(0.5)
        queue = f"{prefix}.actor.orders"

        def queue_empty() -> bool:
            info = node.queue_info(queue)
            return info is not None and info["messages"] == 0

        assert await asyncio.to_thread(poll_sync, queue_empty, 10.0)
        dead = await bus.dead_letters(actor="orders")
    result = checker.result()
    by_type: dict[str, list] = {}
    for entry in dead:
        by_type.setdefault(entry.error_type, []).append(entry)
    record_row(
        "9. Poison and retry on a quorum queue",
        messages=MESSAGES,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=None,
        note=(
            f"dead letters: {len(dead)} (expected {ALWAYS + MALFORMED + WRONG_SCHEMA}): "
            + ", ".join(f"{k} {len(v)}" for k, v in sorted(by_type.items()))
        ),
        result=result,
    )
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert result.received == GOOD + FLAKY
    # Flaky ones needed their retries; good ones one call.
    assert sorted({calls[i] for i in expected_handled}) == [1, ATTEMPTS]
    # Exact dead-letter count, each with its reason.
    assert len(dead) == ALWAYS + MALFORMED + WRONG_SCHEMA, [e.error_type for e in dead]
    failing = by_type.get("ValueError", [])
    assert {e.envelope.id for e in failing} == always_ids
    assert all(e.attempts == ATTEMPTS and "always fails" in e.reason for e in failing)
    assert all(calls[i] == ATTEMPTS for i in always_ids)
    undecodable = by_type.get("DecodeError", [])
    assert len(undecodable) == MALFORMED + WRONG_SCHEMA
    assert all(e.attempts == 0 for e in undecodable)
    assert {e.envelope.id for e in undecodable} == {f"malformed-{i}" for i in range(MALFORMED)} | {
        f"schema-{i}" for i in range(WRONG_SCHEMA)
    }
    assert not any(i.startswith(("malformed-", "schema-")) for i in calls)
