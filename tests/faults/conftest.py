"""Fixtures of the fault suite: a proxy in front of the private node, and a prefix.

The private node itself (``node``) is the run's one node, from ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from support.rabbit_node import RabbitNode
from support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(node: RabbitNode) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the private node (``proxy.url(node.url)``)."""
    async with TcpProxy(node.host, node.amqp_port) as started:
        yield started


@pytest.fixture
def prefix() -> str:
    """An exchange/queue prefix of this test only."""
    return f"faults-{uuid.uuid4().hex[:8]}"
