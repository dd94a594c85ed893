"""Fixtures shared by every test: the event loop backend, fresh buses, the real broker."""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from support.rabbit_cleanup import delete_under_prefixes
from support.rabbit_node import RabbitNode, RabbitNodeError, rabbitmq_installed

from actorbus import AsyncMessageBus
from actorbus.brokers.memory import InMemoryServer

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak-messages N`` makes the fault soak longer than its CI size."""
    parser.addoption("--soak-messages", type=int, default=10_000, help="messages in the fault soak")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """Run async tests on asyncio with uvloop, the loop actorbus is built for."""
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
def server() -> InMemoryServer:
    """A private in-memory server, so tests never see each other's queues."""
    return InMemoryServer()


@pytest.fixture
async def bus(server: InMemoryServer) -> AsyncIterator[AsyncMessageBus]:
    """A started in-memory bus on a private server, shut down after the test."""
    async with AsyncMessageBus(mode="in_memory", server=server) as started:
        yield started


def rabbitmq_reachable(host: str = RABBITMQ_HOST, port: int = RABBITMQ_PORT) -> bool:
    """Tell whether something accepts TCP connections on the broker's port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq_url() -> str:
    """The shared broker's URL; fails in CI and skips elsewhere when it is down."""
    if not rabbitmq_reachable():
        message = f"RabbitMQ is not reachable on {RABBITMQ_HOST}:{RABBITMQ_PORT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return RABBITMQ_URL


@pytest.fixture
def unique_prefix() -> str:
    """An exchange/queue prefix no other test run uses; swept from the broker at the end."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    _prefixes_used.add(prefix)
    return prefix


_prefixes_used: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def _sweep_shared_broker() -> Iterator[None]:
    """Delete every queue and exchange left on the shared broker under this run's prefixes.

    Tests delete what they declare, but a wildcard binding declares one exchange per
    known subsystem, and a failing test may stop before its own clean-up; this sweep
    keeps the shared broker clean whatever happened.
    """
    yield
    if _prefixes_used and rabbitmq_reachable():
        asyncio.run(delete_under_prefixes(RABBITMQ_URL, tuple(f"{p}." for p in _prefixes_used)))


def _unavailable(message: str) -> None:
    """Fail in CI, skip elsewhere: a missing broker is a broken CI, not a reason to skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """The run's private RabbitMQ node on its own ports, started once, always removed after.

    Tests that stop, restart, kill or disconnect a broker use it, never the shared one.
    """
    if not rabbitmq_installed():
        _unavailable("rabbitmq-server is not installed: the private node cannot start")
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
    """The private node, running and ready when the test starts, whatever the last test did."""
    rabbit_node.ensure_ready()
    return rabbit_node
