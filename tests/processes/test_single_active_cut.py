"""A ``single_active`` instance that loses its connection (not its process) stops handling.

Its process lives on and reconnects (as a standby now, behind the instance
that took over), but the messages that were waiting in its mailbox belong to
the new active instance the moment its channel is gone: RabbitMQ gives them
there. So the cut instance hands none of them to its actor; only the message
its handler was running when the link broke, and the one or two it took in
the milliseconds before the AMQP client reported the cut, can be handled by
both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import pytest
from support.tcp_proxy import TcpProxy

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, QueueOptions, handles

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
COUNT = 300


def standby(label: str, log: list[tuple[str, int, float, float]]) -> type[Actor]:
    class Ordered(Actor):
        name = "ordered"
        queue_options = QueueOptions(single_active=True)
        mailbox_size: ClassVar[int] = 50

        @handles(ORDER)
        async def on_order(self, msg: Envelope) -> None:
            start = time.monotonic()
            await asyncio.sleep(0.004)
            log.append((label, int(msg.data["seq"]), start, time.monotonic()))

    return Ordered


async def wait_for(condition: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_a_cut_active_instance_hands_its_mailbox_over(
    rabbitmq_url: str, unique_prefix: str
) -> None:
    log: list[tuple[str, int, float, float]] = []
    port = int(rabbitmq_url.rsplit(":", 1)[1].strip("/"))
    async with TcpProxy("127.0.0.1", port) as proxy:
        first = AsyncMessageBus(
            mode="rabbitmq", url=proxy.url(rabbitmq_url), prefix=unique_prefix, fallback=False
        )
        second = AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        )
        publisher = AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        )
        async with first, second, publisher:
            await first.spawn(standby("first", log))
            await second.spawn(standby("second", log))
            for seq in range(COUNT):
                await publisher.publish(ORDER, {"seq": seq})
            assert await wait_for(lambda: len(log) >= 30)
            assert first.stats().actors["ordered"].mailbox > 0
            cut_at = time.monotonic()
            proxy.cut()
            assert await wait_for(lambda: len({seq for _, seq, _, _ in log}) >= COUNT)
            await asyncio.sleep(0.5)
            assert first.stats().actors["ordered"].role == "standby"
    by_first = [entry for entry in log if entry[0] == "first"]
    by_second = [entry for entry in log if entry[0] == "second"]
    started_after_cut = [seq for _, seq, start, _ in by_first if start > cut_at]
    # The client learns of the cut when its socket reports it and the AMQP client
    # closes the channel, a few milliseconds later: a message its actor takes in
    # between still starts (1-2 seen at 4 ms a message). After that, none: without
    # the hand-over the whole mailbox (~50) would be handled here as well.
    assert len(started_after_cut) <= 3, started_after_cut
    assert {seq for _, seq, _, _ in log} == set(range(COUNT))
    second_seqs = [seq for _, seq, _, _ in by_second]
    assert second_seqs == sorted(second_seqs), "the instance that took over broke the order"
    doubled = {seq for _, seq, _, _ in by_first} & set(second_seqs)
    assert len(doubled) <= 4, doubled  # the one in the handler, and those just taken
