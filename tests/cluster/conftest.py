"""Fixtures of the cluster scenarios: one three-node cluster for the whole run.

The cluster boots once (about 12-20 s) the first time a cluster test asks for
it, and is removed at the end of the run. With ``ACTORBUS_TEST_CLUSTER`` set to
a state file of ``tests/support/rabbit_cluster.py up``, the run uses that
cluster instead and leaves it running (for iterating on these tests).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cluster_scenario import clean, cluster_bus
from support.rabbit_cluster import CLUSTER_VARIABLE, RabbitCluster
from support.rabbit_node import RabbitNodeError, rabbitmq_installed

from actorbus import AsyncMessageBus


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """The run's three-node cluster on private ports; always removed after (unless attached)."""
    if not rabbitmq_installed():
        _unavailable("rabbitmq-server is not installed: the cluster cannot start")
    state = os.environ.get(CLUSTER_VARIABLE)
    if state:
        yield RabbitCluster.attach(state)
        return
    cluster = RabbitCluster()
    atexit.register(cluster.cleanup)  # also on an interrupted run
    try:
        cluster.start()
    except RabbitNodeError as exc:
        cluster.cleanup()
        _unavailable(f"the three-node cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.cleanup()
        atexit.unregister(cluster.cleanup)


@pytest.fixture
def cluster(rabbit_cluster: RabbitCluster) -> RabbitCluster:
    """The cluster, every node running and joined when the test starts."""
    rabbit_cluster.ensure_ready()
    return rabbit_cluster


@pytest.fixture
def prefix() -> str:
    """An exchange/queue prefix of this test only (the cluster is removed after the run)."""
    return f"cluster-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def make_bus(
    cluster: RabbitCluster, prefix: str
) -> AsyncIterator[Callable[..., AsyncMessageBus]]:
    """Build buses on the node list (``urls=`` another order or subset); cleaned up after."""
    buses: list[AsyncMessageBus] = []

    def make(urls: list[str] | str | None = None, **options: Any) -> AsyncMessageBus:
        bus = cluster_bus(cluster.urls if urls is None else urls, prefix, **options)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.shutdown(timeout=1.0)
    # Whole again first: deleting a quorum queue waits for its members; the next test
    # needs every node anyway.
    await asyncio.to_thread(cluster.ensure_ready)
    await clean(cluster, buses)
