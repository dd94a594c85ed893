"""The acker keeps what it promises: few frames, never one that settles too much, never late.

A small stand-in for the channel records the settlements the acker sends through it,
and one for the socket writer records the frames it writes itself; no broker.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pamqp.commands import Basic
from pamqp.frame import unmarshal

from actorbus.brokers.rabbitmq._acker import Acker

pytestmark = pytest.mark.anyio

Sent = tuple[str, int, bool]
"""``("ack", tag, multiple)`` or ``("nack", tag, requeue)``."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Connection:
    """What the acker asks of a connection: whether frames wait for its socket."""

    def __init__(self) -> None:
        self.write_queue: asyncio.Queue[object] = asyncio.Queue()


class RecordingChannel:
    """A channel that records the acks and nacks sent on it, in order."""

    number = 1

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.is_closed = False
        self.connection = Connection()

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.sent.append(("ack", tag, multiple))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        assert not multiple
        self.sent.append(("nack", tag, requeue))


class RecordingWriter:
    """A socket writer that records the frames written to it."""

    def __init__(self, channel: RecordingChannel) -> None:
        self.channel = channel

    def write(self, data: bytes) -> None:
        while data:
            size, _, frame = unmarshal(data)
            data = data[size:]
            if isinstance(frame, Basic.Ack):
                self.channel.sent.append(("ack", frame.delivery_tag, frame.multiple))
            else:
                assert isinstance(frame, Basic.Nack)
                self.channel.sent.append(("nack", frame.delivery_tag, frame.requeue))

    def is_closing(self) -> bool:
        return False


def acker(
    tags: int, *, writer: bool = False, flush_count: int = 64, flush_interval: float = 60.0
) -> tuple[Acker, RecordingChannel]:
    """An acker whose channel delivered tags 1 to ``tags``."""
    channel = RecordingChannel()
    made = Acker(
        channel,  # type: ignore[arg-type]
        writer=RecordingWriter(channel) if writer else None,  # type: ignore[arg-type]
        flush_count=flush_count,
        flush_interval=flush_interval,
    )
    for tag in range(1, tags + 1):
        made.delivered(tag)
    return made, channel


def covered(sent: list[Sent], index: int) -> set[int]:
    """The tags the frame at ``index`` settles."""
    how, tag, multiple = sent[index]
    if how == "ack" and multiple:
        return set(range(1, tag + 1))
    return {tag}


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_run_of_consecutive_acks_is_one_multiple_ack() -> None:
    settle, channel = acker(5)
    for tag in (1, 2, 3, 4, 5):
        settle.settle(tag, True)
    await turn()
    assert channel.sent == [("ack", 5, True)]


async def test_a_multiple_ack_never_covers_an_unsettled_delivery() -> None:
    settle, channel = acker(5)
    for tag in (1, 2, 4, 5):
        settle.settle(tag, True)
    await turn()
    assert channel.sent == [("ack", 2, True), ("ack", 4, False), ("ack", 5, False)]
    assert all(3 not in covered(channel.sent, index) for index in range(3))
    settle.settle(3, True)
    await turn()
    assert channel.sent[3:] == [("ack", 3, True)]


async def test_requeues_go_first_so_no_multiple_ack_covers_one() -> None:
    settle, channel = acker(4)
    settle.settle(1, True)
    settle.settle(2, False)
    settle.settle(3, True)
    settle.settle(4, False)
    await turn()
    assert channel.sent[:2] == [("nack", 2, True), ("nack", 4, True)]
    assert channel.sent[2:] == [("ack", 3, True)]
    # By the time a multiple ack arrives, each requeued tag it spans is no longer unsettled.
    for index, (how, _, multiple) in enumerate(channel.sent):
        if how == "ack" and multiple:
            for tag in {2, 4} & covered(channel.sent, index):
                assert ("nack", tag, True) in channel.sent[:index]


async def test_settling_twice_sends_once() -> None:
    settle, channel = acker(2)
    settle.settle(1, True)
    settle.settle(1, False)
    settle.settle(2, True)
    await turn()
    assert channel.sent == [("ack", 2, True)]


async def test_past_the_count_limit_settling_writes_at_once() -> None:
    settle, channel = acker(10, writer=True, flush_count=3)
    settle.settle(1, True)
    settle.settle(2, True)
    assert channel.sent == [], "below the limit the frames wait for the loop to turn"
    settle.settle(3, True)  # the loop has not turned: a handler that never awaits
    assert channel.sent == [("ack", 3, True)]
    settle.settle(4, True)
    await turn()
    assert channel.sent == [("ack", 3, True), ("ack", 4, True)]


async def test_past_the_age_limit_settling_writes_at_once() -> None:
    settle, channel = acker(10, writer=True, flush_interval=0.02)
    settle.settle(1, True)
    time.sleep(0.03)  # noqa: ASYNC251  # on purpose: a handler holding the loop too long
    assert channel.sent == []
    settle.settle(2, True)
    assert channel.sent == [("ack", 2, True)]


async def test_it_never_writes_ahead_of_frames_already_queued() -> None:
    settle, channel = acker(10, writer=True, flush_count=2)
    channel.connection.write_queue.put_nowait(object())  # a frame waits for the socket
    settle.settle(1, True)
    settle.settle(2, True)
    settle.settle(3, True)
    assert channel.sent == [], "written behind the queued frame, by the loop, in order"
    channel.connection.write_queue.get_nowait()
    await turn()
    assert channel.sent == [("ack", 3, True)]


async def test_a_closed_channel_sends_nothing() -> None:
    settle, channel = acker(2)
    channel.is_closed = True
    settle.settle(1, True)
    await turn()
    await settle.flush()
    assert channel.sent == []
