"""Structured logs: the runtime's records carry actor, message id and type; no payloads."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, MessageTypes, RetryPolicy, handles
from actorbus.messages import Envelope
from actorbus.telemetry.logs import JsonFormatter

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-payload-value"


class Failing(Actor):
    """Fails on every message (two attempts, then a dead letter)."""

    retry = RetryPolicy(max_attempts=2, backoff=0.001)

    @handles(MessageTypes.EXECUTION_ORDER_REQUEST)
    def on_order(self, envelope: Envelope) -> None:
        raise RuntimeError("venue rejected the order")


class Lines(logging.Handler):
    """Keeps every record formatted by the JSON formatter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger("actorbus")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_log_lines_name_the_actor_and_the_message_not_its_data(
    bus: AsyncMessageBus, lines: Lines
) -> None:
    await bus.spawn(Failing)
    message_id = await bus.publish(
        MessageTypes.EXECUTION_ORDER_REQUEST, {"client_order_id": SECRET}
    )
    await wait_until(lambda: bus.stats().actors["failing"].dead_lettered == 1)
    records = [json.loads(line) for line in lines.lines]
    about = [r for r in records if r.get("message_id") == message_id]
    loggers = {r["logger"] for r in about}
    assert {"actorbus.actor", "actorbus.brokers.memory"} <= loggers
    for record in about:
        assert record["message_type"] == "execution.order_request"
        assert record["actor"] == "failing"
        assert record["level"] == "WARNING"
    assert all(SECRET not in line for line in lines.lines)


async def test_a_crash_is_logged_with_its_actor_and_error_type(lines: Lines) -> None:
    class Crashing(Actor):
        retry = RetryPolicy(max_attempts=1, fatal=(KeyError,))

        @handles(MessageTypes.RISK_LIMIT_BREACH)
        def on_breach(self, envelope: Envelope) -> None:
            raise KeyError("limit")

    async with AsyncMessageBus(mode="in_memory") as bus:
        await bus.spawn(Crashing)
        await bus.publish(MessageTypes.RISK_LIMIT_BREACH, {"limit": SECRET})
        await wait_until(lambda: bus.stats().actors["crashing"].restarts >= 1)
    records = [json.loads(line) for line in lines.lines]
    crashed = [
        r for r in records if r["logger"] == "actorbus.supervisor" and "crashed" in r["message"]
    ]
    assert crashed
    assert crashed[0]["actor"] == "crashing"
    assert all(SECRET not in line for line in lines.lines)
