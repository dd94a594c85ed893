"""Fixtures shared by every test: the event loop backend, fresh buses, the real broker."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from actorbus import AsyncMessageBus
from actorbus.brokers.memory import InMemoryServer

RABBITMQ_HOST = "127.0.0.1"
RABBITMQ_PORT = 5672
RABBITMQ_URL = f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak`` runs the long fault soak (tests marked ``soak``), skipped otherwise."""
    parser.addoption("--soak", action="store_true", help="run the fault soak (marked soak)")
    parser.addoption(
        "--soak-messages", type=int, default=10_000, help="messages in the fault soak"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip soak tests unless ``--soak`` was given."""
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


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
    """An exchange/queue prefix no other test run uses."""
    return f"test-{uuid.uuid4().hex[:10]}"
