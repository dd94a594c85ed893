"""Building blocks of the fault scenarios: a bus on a given broker, counting actors, a publisher.

Every scenario publishes ``faults.tick`` messages (``{"seq": n}``) through a real
:class:`~actorbus.AsyncMessageBus` in RabbitMQ mode and counts, with a
:class:`~support.checker.LossChecker`, what the actors handled.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actorbus import Actor, ActorbusError, AsyncMessageBus, Envelope, QueueOptions, handles
from actorbus.messages import register_message_type

from .checker import CheckResult, LossChecker

__all__ = [
    "FAST_RECOVERY",
    "TICK",
    "CountingActor",
    "Publisher",
    "counting_actor",
    "expect_no_duplicates",
    "poll_sync",
    "probe",
    "queues_consumed",
    "rabbit_bus",
    "slack",
    "wait_until",
]

TICK = register_message_type("faults.tick")
"""The message type every scenario publishes."""

TIME_SLACK = 1.5
"""Factor on every time bound of the issue's pass criteria when asserting it.

The criteria (resume within 1 s, restart within 100 ms, ...) are the issue's; the
assertions allow half as much again because CI shares two cores with other
work. The reliability table shows the measured times, not the bounds.
"""


def slack(seconds: float) -> float:
    """A pass criterion's time bound, as asserted (``seconds * TIME_SLACK``)."""
    return seconds * TIME_SLACK


FAST_RECOVERY: dict[str, Any] = {
    "connect_timeout": 2.0,
    "heartbeat": 2,
    "reconnect_interval": 0.05,
    "max_reconnect_interval": 0.5,
    "publish_timeout": 30.0,
}
"""Broker options of the scenarios: notice a dead link in seconds, retry fast."""


def rabbit_bus(url: str, prefix: str, **broker_options: Any) -> AsyncMessageBus:
    """A RabbitMQ-mode bus (no fallback) whose broker recovers fast; see ``FAST_RECOVERY``."""
    from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

    broker = AsyncRabbitMQBroker(url, prefix=prefix, **{**FAST_RECOVERY, **broker_options})
    return AsyncMessageBus(broker=broker, prefix=prefix, fallback=False)


class CountingActor(Actor):
    """Base of the scenario actors: each handled message is reported to ``checker``."""

    checker: LossChecker
    delay: float = 0.0

    async def on_tick(self, msg: Envelope) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        type(self).checker.handled(msg.id)


def counting_actor(
    checker: LossChecker,
    name: str,
    *,
    types: tuple[str, ...] = (TICK,),
    quorum: bool = False,
    delay: float = 0.0,
    mailbox_size: int = 1000,
) -> type[CountingActor]:
    """A fresh actor class named ``name`` reporting every message of ``types`` to ``checker``."""

    @handles(*types)
    async def on_tick(self: CountingActor, msg: Envelope) -> None:
        await CountingActor.on_tick(self, msg)

    return type(
        f"Counting_{name}",
        (CountingActor,),
        {
            "name": name,
            "checker": checker,
            "queue_options": QueueOptions(queue_type="quorum" if quorum else None),
            "delay": delay,
            "mailbox_size": mailbox_size,
            "on_tick": on_tick,
        },
    )


class Publisher:
    """Publishes numbered ticks at a steady pace, ``concurrency`` in flight, into checkers.

    Each message is reported as sent, then as confirmed (the publish returned) or
    failed (it raised an actorbus error). A publish slower than ``slowest`` is
    remembered, and so is any ``CancelledError`` that escaped a publish.
    """

    def __init__(
        self,
        bus: AsyncMessageBus,
        checkers: list[LossChecker],
        *,
        message_type: str = TICK,
        concurrency: int = 32,
        interval: float = 0.0,
    ) -> None:
        self.bus = bus
        self.checkers = checkers
        self.message_type = message_type
        self.concurrency = concurrency
        self.interval = interval
        self.published = 0
        """Publishes started."""
        self.errors: list[BaseException] = []
        """Errors raised by publishes (typed actorbus errors are expected under faults)."""
        self.stray_cancellations = 0
        """``CancelledError`` raised by a publish the test did not cancel (must stay 0)."""
        self.slowest = 0.0
        """Longest single publish, in seconds."""

    async def run(self, count: int, *, start: int = 0) -> None:
        """Publish ``count`` messages (``seq`` from ``start``); return when all are settled."""
        semaphore = asyncio.Semaphore(self.concurrency)
        tasks: list[asyncio.Task[None]] = []
        began = time.monotonic()
        for index in range(count):
            if self.interval:
                delay = began + index * self.interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await semaphore.acquire()
            tasks.append(asyncio.create_task(self._one(start + index, semaphore)))
        await asyncio.gather(*tasks)

    async def _one(self, seq: int, semaphore: asyncio.Semaphore) -> None:
        try:
            envelope = self.bus.envelope(self.message_type, {"seq": seq})
            for checker in self.checkers:
                checker.sent(envelope.id)
            self.published += 1
            began = time.monotonic()
            try:
                await self.bus.publish_envelope(envelope)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                self.stray_cancellations += 1
                self.errors.append(exc)
                for checker in self.checkers:
                    checker.failed(envelope.id)
                return
            except ActorbusError as exc:
                self.errors.append(exc)
                for checker in self.checkers:
                    checker.failed(envelope.id)
                return
            finally:
                self.slowest = max(self.slowest, time.monotonic() - began)
            for checker in self.checkers:
                checker.confirmed(envelope.id)
        finally:
            semaphore.release()


async def probe(bus: AsyncMessageBus, checkers: list[LossChecker]) -> None:
    """Publish one tick now, so a recovery point has a message published after it.

    Call it right after ``mark_recovery_point``: the publish waits for the link if
    it is still down, and its handling ends the recovery measured from the mark.
    """
    envelope = bus.envelope(TICK, {"seq": -1, "probe": True})
    for checker in checkers:
        checker.sent(envelope.id)
    await bus.publish_envelope(envelope)
    for checker in checkers:
        checker.confirmed(envelope.id)


async def queues_consumed(node: Any, queues: list[str], timeout: float = 10.0) -> bool:
    """Whether every queue in ``queues`` has a consumer (``rabbitmqctl list_consumers``).

    The check the suite makes after the last reconnect of a scenario: a consumer that
    did not come back (the upstream aio-pika bug) leaves its queue without one.
    """

    def consumed() -> bool:
        with_consumer = {row["queue_name"] for row in node.list_consumers()}
        return all(queue in with_consumer for queue in queues)

    return await asyncio.to_thread(poll_sync, consumed, timeout)


def poll_sync(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    """Poll a blocking ``predicate()`` (e.g. one running ``rabbitmqctl``) until true, bounded.

    Run it in a worker thread from async code: ``await asyncio.to_thread(poll_sync, ...)``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # the broker may still be starting; try again
            pass
        time.sleep(interval)
    return False


async def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate()`` (bounded) until true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


def expect_no_duplicates(result: CheckResult) -> None:
    """Assert no actor saw a message twice (the runtime deduplicates redeliveries by id).

    Called last in a test, after the loss checks, so a failure here means loss was
    ruled out first.
    """
    assert result.duplicated == 0, (
        f"{result.duplicated} duplicate(s) reached an actor: a redelivery (ack lost with "
        f"the connection) or a resent publish (confirm lost) was handled again: "
        f"{result.summary()}"
    )
