"""A fallback that heals: a bus that started in memory moves to RabbitMQ once it answers.

The bus under test reaches RabbitMQ through a TCP proxy that at first forwards
to a closed port (every connection refused), so the bus starts in memory.
Another OS process is subscribed over RabbitMQ from the start. The bus keeps
publishing while the proxy is pointed at the real broker; it must move by
itself: its own actor keeps getting every message (in memory before, over
RabbitMQ after), the other process gets every message published after the
switch and none from before (the documented choice), and the switch is
announced with ``system.mode_change`` over RabbitMQ.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from process_workers import Worker, records
from support.checker import LossChecker, record_row
from support.tcp_proxy import TcpProxy

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, handles
from actorbus.healing import MODE_CHANGE_TYPE

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
AFTER_SWITCH = 300


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingHooks:
    """Counts the publishes it sees: hooks must survive the move to RabbitMQ."""

    def __init__(self) -> None:
        self.published: list[int] = []

    def on_publish(self, envelope: Envelope) -> Envelope:
        if envelope.type == ORDER:
            self.published.append(int(envelope.data["seq"]))
        return envelope

    def on_handle(self, actor: str, envelope: Envelope) -> Any:
        return lambda error: None


class Local(Actor):
    """The healing bus's own actor: records each message with the bus's mode at the time."""

    name = "local"
    seen: ClassVar[list[int]] = []

    @handles(ORDER)
    async def on_order(self, msg: Envelope) -> None:
        self.seen.append(int(msg.data["seq"]))


async def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


async def test_a_bus_that_fell_back_moves_to_rabbitmq_by_itself(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    Local.seen = []
    remote_file = tmp_path / "remote.records"
    remote = Worker("consume", rabbitmq_url, unique_prefix, str(remote_file))
    announcements: list[dict[str, Any]] = []
    checker = LossChecker("17. a fallback that heals")
    proxy = TcpProxy("127.0.0.1", closed_port())
    await proxy.start()
    try:
        async with AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        ) as observer:

            async def on_change(message_type: str, data: Any) -> None:
                announcements.append(data)

            await observer.subscribe(MODE_CHANGE_TYPE, on_change)
            bus = AsyncMessageBus(
                mode="rabbitmq",
                url=proxy.url(rabbitmq_url),
                prefix=unique_prefix,
                connect_timeout=2.0,
            )
            hooks = CountingHooks()
            bus.add_hooks(hooks)
            async with bus:
                assert bus.mode == "in_memory"
                await bus.spawn(Local)
                published: list[tuple[int, str, str]] = []
                seq = 0

                async def publish_one() -> None:
                    nonlocal seq
                    before = bus.mode
                    checker.sent(str(seq))
                    await bus.publish(ORDER, {"seq": seq})
                    checker.confirmed(str(seq))
                    published.append((seq, before, bus.mode))
                    seq += 1
                    await asyncio.sleep(0.002)

                for _ in range(100):
                    await publish_one()
                opened_at = time.monotonic()
                proxy.target_port = int(rabbitmq_url.rsplit(":", 1)[1].strip("/"))
                deadline = opened_at + 30
                while bus.mode == "in_memory" and time.monotonic() < deadline:
                    await publish_one()
                switched_after = time.monotonic() - opened_at
                assert bus.mode == "rabbitmq", "the bus never moved to RabbitMQ"
                for _ in range(AFTER_SWITCH):
                    await publish_one()
                over_rabbitmq = {s for s, before, _ in published if before == "rabbitmq"}
                in_memory = {s for s, _, after in published if after == "in_memory"}
                assert await wait_for(lambda: len(set(Local.seen)) >= seq, 30)
                assert await wait_for(
                    lambda: over_rabbitmq <= {r.seq for r in records(remote_file)}, 30
                )
                assert await wait_for(lambda: announcements, 10)
                await asyncio.sleep(0.3)
                assert bus.stats().mode == "rabbitmq"
    finally:
        remote.stop()
        await proxy.close()
    for handled in Local.seen:
        checker.handled(str(handled))
    result = checker.result()
    remote_seen = [r.seq for r in records(remote_file)]
    record_row(
        "17. a fallback that heals: in memory, then moved to RabbitMQ",
        messages=seq,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=switched_after,
        note=(
            "recovery = switch-over: broker reachable to the bus in RabbitMQ mode; "
            f"{len(in_memory)} published in memory reached only this process (by design), "
            f"{len(over_rabbitmq)} published after the switch reached the other process"
        ),
        result=result,
    )
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert Local.seen[: len(in_memory)] == sorted(in_memory)
    assert not in_memory & set(remote_seen), "a message published in memory was sent again"
    assert over_rabbitmq <= set(remote_seen)
    assert len(over_rabbitmq) >= AFTER_SWITCH
    assert hooks.published == list(range(seq)), "publish hooks lost in the move"
    assert announcements[0]["from"] == "in_memory"
    assert announcements[0]["to"] == "rabbitmq"
    assert announcements[0]["source"] == bus.source


async def test_heal_false_stays_in_memory(rabbitmq_url: str, unique_prefix: str) -> None:
    proxy = TcpProxy("127.0.0.1", closed_port())
    await proxy.start()
    try:
        async with AsyncMessageBus(
            mode="rabbitmq",
            url=proxy.url(rabbitmq_url),
            prefix=unique_prefix,
            heal=False,
            connect_timeout=2.0,
        ) as bus:
            assert bus.mode == "in_memory"
            proxy.target_port = int(rabbitmq_url.rsplit(":", 1)[1].strip("/"))
            await asyncio.sleep(1.5)  # many times the first reconnect backoff
            assert bus.mode == "in_memory"
            assert proxy.connections_total == 1, "a bus told not to heal tried RabbitMQ again"
    finally:
        await proxy.close()
