"""Waiting for the link waits on its ready event, never by polling; no broker needed."""

from __future__ import annotations

import asyncio

import pytest

from actorbus.brokers.rabbitmq._link import OUTAGES_KEPT, Link
from actorbus.brokers.rabbitmq._params import ConnectionSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Channel:
    def __init__(self, closed: bool) -> None:
        self.is_closed = closed


async def _nothing(*_: object) -> None:
    pass


def link() -> Link:
    return Link(
        ConnectionSettings(None),
        restore=_nothing,
        check=_nothing,
        connect_timeout=1.0,
        reconnect_interval=0.1,
        max_reconnect_interval=1.0,
    )


async def test_a_channel_closed_before_the_watcher_noticed_is_waited_out_on_the_event() -> None:
    up = link()
    up.connection, up.channel = object(), Channel(closed=True)  # type: ignore[assignment]
    up.ready.set()
    waiting = asyncio.create_task(up.wait_ready())
    await asyncio.sleep(0)
    assert not up.ready.is_set(), "a closed channel means the link is down"
    assert not waiting.done()
    fresh = Channel(closed=False)
    up.channel = fresh  # type: ignore[assignment]
    up.ready.set()  # what the watcher does once reconnected
    _, channel = await asyncio.wait_for(waiting, 1)
    assert channel is fresh


def test_only_the_last_outages_are_kept_and_reconnect_rounds_back_off() -> None:
    assert link().outages.maxlen == OUTAGES_KEPT
    assert link().backoff.first == 0.1
    assert link().backoff.longest == 1.0
