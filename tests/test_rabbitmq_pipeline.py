"""The write pipeline keeps what it promises, on a real AMQP client channel with no broker.

The channel is aiormq's own, on a connection that never connects: its bookkeeping
(delivery tags, confirm futures, the message-id map for returns, the reader that
handles the broker's answers) is the real one; what the pipeline writes stays in the
connection's write queue, and the broker's answers are fed to the channel's reader.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest
from aiormq.abc import ChannelFrame
from aiormq.channel import Channel
from aiormq.exceptions import DeliveryError
from aiormq.exceptions import PublishError as Returned
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.frame import unmarshal
from pamqp.header import ContentHeader

from actorbus.brokers.rabbitmq._publisher import Pipeline

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unconnected_channel(write_queue_size: int = 0) -> Channel:
    """A channel with confirms on, of a connection that never connects."""
    connection = aiormq.Connection("amqp://guest:guest@127.0.0.1:1/")
    connection.server_properties = {
        "capabilities": {"publisher_confirms": True, "basic.nack": True}
    }
    connection.connection_tune = spec.Connection.Tune(frame_max=131_072)
    if write_queue_size:
        connection.write_queue = asyncio.Queue(maxsize=write_queue_size)
    return Channel(connection, 1, publisher_confirms=True)


def frames_of(item: ChannelFrame) -> list[Any]:
    """The AMQP frames of one write."""
    data, frames = item.payload, []
    while data:
        size, _, frame = unmarshal(data)
        frames.append(frame)
        data = data[size:]
    return frames


def writes(channel: Channel) -> list[list[Any]]:
    """Take every write waiting in the channel's write queue, as frames."""
    queue = channel.write_queue
    taken = []
    while not queue.empty():
        taken.append(frames_of(queue.get_nowait()))
    return taken


def routing_keys(frames: list[Any]) -> list[str]:
    return [frame.routing_key for frame in frames if isinstance(frame, Basic.Publish)]


def publish(pipeline: Pipeline, key: str, *, mandatory: bool = True) -> asyncio.Future[Any]:
    properties = Basic.Properties(message_id=f"id-{key}", delivery_mode=2)
    return pipeline.publish("exchange", key, b"body-" + key.encode(), properties, mandatory)


async def answer(channel: Channel, *frames: Any) -> None:
    """Hand frames to the channel as the broker would, and let its reader handle them."""
    for frame in frames:
        await channel.frames.put((0, frame))
    await channel.frames.join()
    for _ in range(3):  # a multiple confirm resolves its futures one loop turn later
        await asyncio.sleep(0)


async def test_a_loop_turns_publishes_go_out_in_one_write() -> None:
    channel = unconnected_channel()
    pipeline = Pipeline(channel)
    for key in ("a", "b", "c", "d"):
        publish(pipeline, key)
    assert writes(channel) == [], "nothing is written before the loop turns"
    await asyncio.sleep(0)
    [first] = writes(channel)
    assert routing_keys(first) == ["a", "b", "c", "d"]
    assert [type(frame) for frame in first[:3]] == [Basic.Publish, ContentHeader, ContentBody]
    publish(pipeline, "e")
    publish(pipeline, "f")
    await asyncio.sleep(0)
    assert [routing_keys(frames) for frames in writes(channel)] == [["e", "f"]]
    await channel.close()


async def test_delivery_tags_follow_the_order_of_the_frames() -> None:
    channel = unconnected_channel()
    pipeline = Pipeline(channel)
    futures = [publish(pipeline, key) for key in ("a", "b", "c")]
    await asyncio.sleep(0)
    futures.append(publish(pipeline, "d"))
    await asyncio.sleep(0)
    frames = [frame for write in writes(channel) for frame in write]
    assert routing_keys(frames) == ["a", "b", "c", "d"]
    # The n-th message on the wire is the broker's tag n: its confirm resolves its future.
    assert list(channel.confirmations.items()) == list(zip([1, 2, 3, 4], futures, strict=True))
    assert channel.message_id_delivery_tag == {"id-a": 1, "id-b": 2, "id-c": 3, "id-d": 4}
    await channel.close()


async def test_tags_stay_in_frame_order_while_the_socket_is_behind() -> None:
    channel = unconnected_channel(write_queue_size=1)
    pipeline = Pipeline(channel)
    queue = channel.write_queue
    futures = [publish(pipeline, "a")]
    await asyncio.sleep(0)  # "a" fills the write queue
    futures.append(publish(pipeline, "b"))
    await asyncio.sleep(0)  # "b" waits in a writer task for room
    futures.append(publish(pipeline, "c"))
    # The socket takes "a" before the next turn: there is room in the queue, but "c"
    # must still go after "b", which waits for it.
    keys = routing_keys(frames_of(queue.get_nowait()))
    await asyncio.sleep(0)
    futures.append(publish(pipeline, "d"))
    while len(keys) < 4:
        keys += routing_keys(frames_of(await asyncio.wait_for(queue.get(), 1)))
    assert keys == ["a", "b", "c", "d"]
    assert list(channel.confirmations.items()) == list(zip([1, 2, 3, 4], futures, strict=True))
    await channel.close()


async def test_a_return_or_a_nack_fails_its_own_publish_only() -> None:
    channel = unconnected_channel()
    pipeline = Pipeline(channel)
    returned, nacked, confirmed = (publish(pipeline, key) for key in ("a", "b", "c"))
    await asyncio.sleep(0)
    await answer(
        channel,
        Basic.Return(reply_code=312, reply_text="NO_ROUTE", exchange="exchange", routing_key="a"),
        ContentHeader(body_size=6, properties=Basic.Properties(message_id="id-a")),
        ContentBody(b"body-a"),
    )
    assert isinstance(returned.exception(), Returned)
    assert not nacked.done()
    assert not confirmed.done()
    await answer(channel, Basic.Nack(delivery_tag=2))
    assert isinstance(nacked.exception(), DeliveryError)
    assert not confirmed.done()
    await answer(channel, Basic.Ack(delivery_tag=3, multiple=True))
    assert isinstance(confirmed.result(), Basic.Ack)
    await channel.close()


async def test_a_closing_channel_fails_every_pending_publish() -> None:
    channel = unconnected_channel()
    pipeline = Pipeline(channel)
    written = [publish(pipeline, key) for key in ("a", "b")]
    await asyncio.sleep(0)
    confirmed = written.pop()
    await answer(channel, Basic.Ack(delivery_tag=2))
    not_yet_written = [publish(pipeline, key) for key in ("c", "d")]
    await channel.close()
    await asyncio.sleep(0)
    for future in [*written, *not_yet_written]:
        assert future.done()
        assert future.cancelled() or future.exception() is not None
    assert confirmed.result() is not None
