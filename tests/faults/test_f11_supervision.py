"""Scenario 11: supervision under faults, on RabbitMQ.

- A slow actor whose connection is cut mid-handler: the message is delivered
  again (same id), and the side effect, deduplicated by message id, is applied
  once.
- A crashing actor is restarted by its supervisor within 100 ms.
- Restart intensity escalates as configured: a child supervisor that exceeds its
  limit gives up, its parent restarts it, and when the parent exceeds its own
  limit the tree stops and ``system.error`` is published.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.checker import LossChecker, record_row
from support.rabbit_node import RabbitNode
from support.scenario import TICK, rabbit_bus, slack, wait_until
from support.tcp_proxy import TcpProxy

from actorbus import Actor, Envelope, MessageTypes, RetryPolicy, Supervisor, handles
from actorbus.messages import register_message_type

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

BOOM = register_message_type("faults.boom")
RESTART_WITHIN = 0.1


class Crash(Exception):
    """What the crashing actor raises: fatal under its retry policy."""


async def test_side_effect_applied_once_when_the_link_drops_mid_handler(
    node: RabbitNode, proxy: TcpProxy, prefix: str
) -> None:
    checker = LossChecker("11. slow actor, link cut mid-handler")
    done: set[str] = set()
    side_effects: list[str] = []
    in_handler = asyncio.Event()

    class Slow(Actor):
        name = "slow"
        mailbox_size = 1  # prefetch 1: the cut catches exactly one message mid-handler

        @handles(TICK)
        async def on_tick(self, msg: Envelope) -> None:
            checker.handled(msg.id)
            in_handler.set()
            await asyncio.sleep(0.3)
            if msg.id in done:  # deduplicate by message id: a redelivery changes nothing
                return
            done.add(msg.id)
            side_effects.append(msg.id)

    async with rabbit_bus(proxy.url(node.url), prefix) as bus:
        await bus.spawn(Slow)
        ids = []
        for seq in range(5):
            envelope = bus.envelope(TICK, {"seq": seq})
            checker.sent(envelope.id)
            await bus.publish_envelope(envelope)
            checker.confirmed(envelope.id)
            ids.append(envelope.id)
        await asyncio.wait_for(in_handler.wait(), 5)
        proxy.cut()
        await checker.wait_for(5, timeout=20)
        await checker.wait_quiet(1.0, timeout=20)
    result = checker.result()
    record_row(
        "11. Slow actor, link cut mid-handler",
        messages=5,
        lost=result.lost,
        duplicates=len(side_effects) - len(set(side_effects)),
        recovery=None,
        note=f"handler ran {result.handled_calls} times for 5 messages; side effect once per id",
        result=result,
    )
    assert result.lost == 0, result.summary()
    assert sorted(side_effects) == sorted(ids)  # each side effect exactly once


async def test_crashing_actor_restarts_within_100ms(node: RabbitNode, prefix: str) -> None:
    starts: list[float] = []
    crashes: list[float] = []
    handled: list[int] = []

    class Crasher(Actor):
        name = "crasher"
        retry = RetryPolicy(max_attempts=1, fatal=(Crash,))

        async def on_start(self) -> None:
            starts.append(time.monotonic())

        @handles(TICK)
        async def on_tick(self, msg: Envelope) -> None:
            if msg.data["seq"] % 2 == 0 and msg.headers.get("x-actorbus-replays") is None:
                crashes.append(time.monotonic())
                raise Crash(f"crash on {msg.data['seq']}")
            handled.append(msg.data["seq"])

    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(Supervisor([Crasher], max_restarts=10, within=10.0, name="crash_tree"))
        for seq in range(6):
            await bus.publish(TICK, {"seq": seq})
            assert await wait_until(lambda s=seq: len(handled) + len(crashes) > s, 10)
        # Crashed messages are dead-lettered, then replayed after the restart: all handled.
        assert await wait_until(lambda: sorted(handled) == list(range(6)), 10), handled
        stats = bus.stats().actors["crasher"]
    delays = [min(s for s in starts if s >= crash) - crash for crash in crashes]
    record_row(
        "11. Crashing actor restarted by its supervisor",
        messages=6,
        lost=6 - len(set(handled)),
        duplicates=len(handled) - len(set(handled)),
        recovery=max(delays),
        note=f"{len(crashes)} crashes; recovery = slowest crash-to-restart",
    )
    assert len(crashes) == 3
    assert stats.restarts == 3
    assert max(delays) <= slack(RESTART_WITHIN), delays


async def test_restart_intensity_escalates_to_the_parent(node: RabbitNode, prefix: str) -> None:
    starts: list[float] = []
    errors: list[Any] = []

    class Bomb(Actor):
        name = "bomb"
        retry = RetryPolicy(max_attempts=1, fatal=(Crash,))

        async def on_start(self) -> None:
            starts.append(time.monotonic())

        @handles(BOOM)
        async def on_boom(self, msg: Envelope) -> None:
            raise Crash("boom")

    async def on_error(message_type: str, data: Any) -> None:
        errors.append(data)

    child = Supervisor([Bomb], max_restarts=2, within=30.0, max_replays=0, name="child")
    parent = Supervisor([child], max_restarts=1, within=30.0, max_replays=0, name="parent")
    async with rabbit_bus(node.url, prefix) as bus:
        await bus.subscribe(MessageTypes.SYSTEM_ERROR, on_error)
        await bus.spawn(parent)
        # Expected starts of Bomb after each boom: child restarts it twice, then gives up
        # (parent restarts child: a new Bomb), twice more, then the parent gives up.
        for boom, expected_starts in enumerate([2, 3, 4, 5, 6], start=1):
            await bus.publish(BOOM, {"n": boom})
            assert await wait_until(lambda n=expected_starts: len(starts) >= n, 10), (boom, starts)
        await bus.publish(BOOM, {"n": 6})
        gave_up = await wait_until(lambda: any(e.get("supervisor") == "parent" for e in errors), 10)
        await asyncio.sleep(0.2)
    record_row(
        "11. Restart intensity escalates (child 2, parent 1)",
        messages=6,
        lost=0,
        duplicates=0,
        recovery=None,
        note=f"{len(starts)} starts of the actor, then the tree stopped with system.error",
    )
    assert gave_up, errors
    assert len(starts) == 6, starts
