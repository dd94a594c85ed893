"""Scenario 5: persistence across a graceful restart and a ``kill -9``.

5000 confirmed messages wait, unconsumed, in a durable classic and a quorum
queue while the broker is restarted, then killed. Pass: exactly 5000 distinct
messages drained from each queue afterwards. Negative control: transient
messages on a durable queue are shown lost by the same counting, so the test
is able to see loss.
"""

from __future__ import annotations

import asyncio

import aio_pika
import msgspec
import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import Publisher, counting_actor, poll_sync, rabbit_bus

from actorbus.messages import new_message_id, register_message_type

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

MESSAGES = 5000
TRANSIENT = 1000
TRANSIENT_TYPE = register_message_type("faults.transient")


async def publish_transient(node: RabbitNode, prefix: str, checker: LossChecker) -> None:
    """Publish ``TRANSIENT`` non-persistent messages (as a plain client can) and confirm them."""
    encoder = msgspec.msgpack.Encoder()
    connection = await aio_pika.connect(node.url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{prefix}.faults", ensure=False)
        for seq in range(TRANSIENT):
            message_id = new_message_id()
            checker.sent(message_id)
            await exchange.publish(
                aio_pika.Message(
                    encoder.encode({"seq": seq}),
                    content_type="application/msgpack",
                    message_id=message_id,
                    type=TRANSIENT_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                ),
                routing_key=TRANSIENT_TYPE,
            )
            checker.confirmed(message_id)


async def test_confirmed_messages_survive_restart_and_kill(node: RabbitNode, prefix: str) -> None:
    classic = LossChecker("5. persistence, classic")
    quorum = LossChecker("5. persistence, quorum")
    transient = LossChecker("5. negative control: transient messages")
    names = {"classic": f"{prefix}.actor.keep_classic", "quorum": f"{prefix}.actor.keep_quorum"}
    control_queue = f"{prefix}.actor.keep_transient"

    def counts() -> dict[str, int]:
        rows = node.list_queues("name", "messages")
        return {row["name"]: int(row["messages"]) for row in rows}

    async with rabbit_bus(node.url, prefix) as bus:
        # Declare the durable queues (by starting their actors once), then leave them unconsumed.
        declared = [
            await bus.spawn(counting_actor(classic, "keep_classic")),
            await bus.spawn(counting_actor(quorum, "keep_quorum", quorum=True)),
            await bus.spawn(counting_actor(transient, "keep_transient", types=(TRANSIENT_TYPE,))),
        ]
        for supervisor in declared:
            await bus.stop(supervisor)
        publisher = Publisher(bus, [classic, quorum], concurrency=64)
        await publisher.run(MESSAGES)
        assert classic.confirmed_count == MESSAGES

        await publish_transient(node, prefix, transient)
        expected = {names["classic"]: MESSAGES, names["quorum"]: MESSAGES}
        assert await asyncio.to_thread(
            poll_sync, lambda: counts()[control_queue] == TRANSIENT, 10.0
        )
        await node.arestart()
        after_restart = await asyncio.to_thread(
            poll_sync, lambda: all(counts()[q] == n for q, n in expected.items()), 10.0
        )
        transient_after_restart = counts()[control_queue]

        await publish_transient(node, prefix, transient)
        await node.arestart(kill=True)
        after_kill = await asyncio.to_thread(
            poll_sync, lambda: all(counts()[q] == n for q, n in expected.items()), 10.0
        )
        transient_after_kill = counts()[control_queue]

        # Drain everything that is left through actors, counting distinct ids.
        await bus.spawn(counting_actor(classic, "keep_classic"))
        await bus.spawn(counting_actor(quorum, "keep_quorum", quorum=True))
        await bus.spawn(counting_actor(transient, "keep_transient", types=(TRANSIENT_TYPE,)))
        for checker in (classic, quorum):
            await checker.wait_for(MESSAGES, timeout=30)
            await checker.wait_quiet(0.5)
    results = [classic.result(), quorum.result()]
    control = transient.result()
    for label, result in zip(("classic", "quorum"), results, strict=True):
        record_row(
            f"5. Persistence: graceful restart + kill -9 ({label} queue)",
            messages=MESSAGES,
            lost=result.lost,
            duplicates=result.duplicated,
            recovery=None,
            note=f"{result.received} distinct drained",
            result=result,
        )
    record_row(
        "5. Negative control: transient messages across restart + kill -9",
        messages=2 * TRANSIENT,
        lost=control.lost,
        duplicates=control.duplicated,
        recovery=None,
        note="loss expected: shows the counting can see loss",
        result=control,
    )
    assert after_restart, counts()
    assert after_kill, counts()
    for result in results:
        assert result.received == MESSAGES, result.summary()
        assert result.lost == 0, result.summary()
        assert result.unexpected == 0, result.summary()
        assert result.duplicated == 0, result.summary()
    # The negative control: the transient messages were there, then gone.
    assert (transient_after_restart, transient_after_kill) == (0, 0)
    assert control.lost == 2 * TRANSIENT, control.summary()
