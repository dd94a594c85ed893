"""Fixtures of the fault suite: one private RabbitMQ node per session, a proxy, a report.

The node (:class:`~support.rabbit_node.RabbitNode`) boots once per session on
its own ports and is always stopped and removed at the end, even when the run is
interrupted. Each test gets it back running and ready (``node``), whatever the
previous test did to it. When ``rabbitmq-server`` is not installed the fault
tests fail in CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from support.rabbit_node import RabbitNode, RabbitNodeError, rabbitmq_installed
from support.tcp_proxy import TcpProxy

IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """The session's private RabbitMQ node, started once and always removed afterwards."""
    if not rabbitmq_installed():
        _unavailable("rabbitmq-server is not installed: the private fault node cannot start")
    node = RabbitNode()
    atexit.register(node.cleanup)  # also on an interrupted run
    try:
        node.start()
    except RabbitNodeError as exc:
        node.cleanup()
        _unavailable(f"the private RabbitMQ node did not start: {exc}")
    try:
        yield node
    finally:
        node.cleanup()
        atexit.unregister(node.cleanup)


@pytest.fixture
def node(rabbit_node: RabbitNode) -> RabbitNode:
    """The private node, running and ready at the start of the test."""
    rabbit_node.ensure_ready()
    return rabbit_node


@pytest.fixture
async def proxy(node: RabbitNode) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the private node (``proxy.url(node.url)``)."""
    async with TcpProxy(node.host, node.amqp_port) as started:
        yield started


@pytest.fixture
def prefix() -> str:
    """An exchange/queue prefix of this test only."""
    return f"faults-{uuid.uuid4().hex[:8]}"
