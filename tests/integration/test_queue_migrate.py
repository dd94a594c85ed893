"""Changing a deployed queue: the refusal explained, and a migration keeping every message.

On the real broker: a classic queue holds messages; the same actor declared
with another option is refused with ``QueueMismatch`` naming each argument
that differs; ``actorbus queue migrate`` moves the queue to the new
declaration; the messages are then counted by id: none lost, none twice.

RabbitMQ only: an in-memory queue lives as long as its process, so a changed
option takes effect on the next start and there is no deployed queue to move.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ClassVar

import pytest

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, QueueOptions, handles
from actorbus.brokers.base import QueueSpec
from actorbus.brokers.rabbitmq._migrate import migrate_queue
from actorbus.cli import main
from actorbus.errors import ActorStartError, ConfigurationError, QueueMismatch

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

BusFactory = Callable[..., AsyncMessageBus]
ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
MESSAGES = 500


def keeper(single_active: bool, seen: list[str] | None = None) -> type[Actor]:
    """The actor whose queue is migrated: classic first, then with a single active consumer."""

    class Keeper(Actor):
        name = "keeper"
        mailbox_size: ClassVar[int] = 50

        @handles(ORDER)
        async def on_order(self, msg: Envelope) -> None:
            if seen is not None:
                seen.append(msg.id)

    Keeper.queue_options = QueueOptions(single_active=single_active)
    return Keeper


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")


async def test_flip_an_option_see_the_error_migrate_lose_nothing(
    rabbit_bus: BusFactory, rabbitmq_url: str, unique_prefix: str
) -> None:
    queue = f"{unique_prefix}.actor.keeper"
    deployed = rabbit_bus()
    tree = await deployed.spawn(keeper(single_active=False))
    await deployed.stop(tree)  # the durable queue stays, and keeps what is published now
    sent = [await deployed.publish(ORDER, {"i": i}) for i in range(MESSAGES)]

    changed = rabbit_bus()
    await changed.start()
    with pytest.raises(QueueMismatch) as refused:
        await changed.broker.declare_queue(  # type: ignore[union-attr]
            QueueSpec(name=queue, patterns=(ORDER,), single_active=True, max_length=10_000)
        )
    assert refused.value.queue == queue
    assert refused.value.differences == {
        "x-single-active-consumer": (True, None),
        "x-max-length": (10_000, None),
        "x-overflow": ("reject-publish", None),
    }
    assert "actorbus queue migrate" in str(refused.value)
    with pytest.raises(ActorStartError) as failed_start:  # what spawning the changed actor says
        await changed.spawn(keeper(single_active=True))
    assert isinstance(failed_start.value.__cause__, QueueMismatch)

    code = await asyncio.to_thread(
        main,
        [
            "queue",
            "migrate",
            queue,
            "--url",
            rabbitmq_url,
            "--prefix",
            unique_prefix,
            "--bind",
            str(ORDER),
            "--single-active",
        ],
    )
    assert code == 0

    seen: list[str] = []
    await changed.spawn(keeper(single_active=True, seen=seen))
    after = [await deployed.publish(ORDER, {"i": i}) for i in range(MESSAGES, MESSAGES + 20)]
    await wait_for(lambda: len(seen) >= MESSAGES + 20)
    await asyncio.sleep(0.2)
    assert set(seen) == set(sent) | set(after), "a message was lost in the migration"
    assert len(seen) == len(set(seen)), "a message was handled twice"
    assert seen[:MESSAGES] == sent, "the queue's messages came back out of order"
    assert changed.stats().actors["keeper"].role == "active"


async def test_migrating_a_consumed_queue_is_refused(
    rabbit_bus: BusFactory, rabbitmq_url: str, unique_prefix: str
) -> None:
    bus = rabbit_bus()
    await bus.spawn(keeper(single_active=False))
    with pytest.raises(ConfigurationError, match="consumer"):
        await migrate_queue(
            QueueSpec(name=f"{unique_prefix}.actor.keeper", patterns=(ORDER,), single_active=True),
            url=rabbitmq_url,
            prefix=unique_prefix,
        )
