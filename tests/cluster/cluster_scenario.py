"""Building blocks of the cluster scenarios: a bus on the node list, load, and the report row.

Each scenario publishes ``faults.tick`` messages through a real bus given all
three nodes, breaks the cluster under that load, and counts by message id
what the actors handled (see ``support.checker``). Its row of the fault report
(``python tests/faults/report.py``) is named ``C<n>. ...``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support.checker import CheckResult, LossChecker, record_row
from support.rabbit_cleanup import delete_names
from support.rabbit_cluster import RabbitCluster
from support.scenario import CountingActor, Publisher, counting_actor, rabbit_bus

from actorbus import AsyncMessageBus, QueueOptions
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker

__all__ = ["Load", "broker_of", "clean", "cluster_actor", "cluster_bus", "record", "settle"]

CLUSTER_OPTIONS: dict[str, Any] = {"publish_timeout": 60.0, "queue_type": "quorum"}
"""On top of the fault suite's fast recovery: room for a whole-cluster restart, quorum queues."""


def cluster_bus(urls: list[str] | str, prefix: str, **options: Any) -> AsyncMessageBus:
    """A RabbitMQ bus (no fallback) on the given node list, quorum queues unless told."""
    return rabbit_bus(urls, prefix, **{**CLUSTER_OPTIONS, **options})  # type: ignore[arg-type]


def cluster_actor(
    checker: LossChecker, name: str, *, queue_type: str | None = None, **options: Any
) -> type[CountingActor]:
    """A counting actor (see ``support.scenario``), on its own queue type when given."""
    actor = counting_actor(checker, name, **options)
    actor.queue_options = QueueOptions(queue_type=queue_type)  # type: ignore[arg-type]
    return actor


def broker_of(bus: AsyncMessageBus) -> AsyncRabbitMQBroker:
    """The RabbitMQ broker under a started bus."""
    broker = bus.broker
    assert isinstance(broker, AsyncRabbitMQBroker)
    return broker


class Load:
    """Publishes ticks at a steady pace from ``start()`` until ``stop()``, into checkers."""

    def __init__(
        self,
        bus: AsyncMessageBus,
        checkers: list[LossChecker],
        *,
        interval: float = 0.004,
        concurrency: int = 16,
    ) -> None:
        self.publisher = Publisher(bus, checkers, interval=interval, concurrency=concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._round = max(50, concurrency * 2)
        self.sent = 0
        """Messages published so far."""

    def start(self) -> None:
        """Begin publishing in the background."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            await self.publisher.run(self._round, start=self.sent)
            self.sent += self._round

    async def stop(self, timeout: float = 90.0) -> int:
        """Finish the current round of publishes; return how many were published."""
        self._stopping = True
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout)
        return self.sent


async def settle(checker: LossChecker, expected: int, *, timeout: float = 60.0) -> None:
    """Wait until ``expected`` ids were handled (bounded), then until no more arrive."""
    await checker.wait_for(expected, timeout=timeout)
    await checker.wait_quiet(0.5)


async def clean(cluster: RabbitCluster, buses: list[AsyncMessageBus]) -> None:
    """Delete what the buses declared (quorum queues cost every node), quietly."""
    queues: set[str] = set()
    exchanges: set[str] = set()
    for bus in buses:
        broker = bus.broker
        if isinstance(broker, AsyncRabbitMQBroker):
            declared_queues, declared_exchanges = broker.declared_names()
            queues.update(declared_queues)
            exchanges.update(declared_exchanges)
    try:
        node = cluster.any_ready()
        await delete_names(node.url, sorted(queues), sorted(exchanges))
    except Exception as exc:  # the cluster is removed at the end of the run anyway
        print(f"cleanup of {sorted(queues)} failed: {exc!r}")


def record(
    scenario: str,
    result: CheckResult,
    *,
    recovery: float | None,
    note: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the scenario's row: counts by message id, recovery time, what happened."""
    record_row(
        scenario,
        messages=result.sent,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=recovery,
        note=(
            f"sent {result.sent}, confirmed {result.confirmed}, handled {result.received}; " + note
        ),
        result=result,
        extra=extra,
    )


async def wait_cluster(cluster: RabbitCluster, timeout: float = 90.0) -> None:
    """Wait (in a worker thread) until every node runs and sees the others."""
    await asyncio.to_thread(cluster.wait_members, None, timeout)


def now() -> float:
    """Monotonic now (recovery points)."""
    return time.monotonic()
