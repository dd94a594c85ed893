"""The runtime layer on its own: publisher, requests, cells and their queues, placement.

Each test drives one piece over a real in-memory broker (no bus), so a piece
that stops doing its job fails here, whatever the layers above do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from actorbus import (
    Actor,
    AskFailed,
    AskTimeout,
    BusClosed,
    ChildSpec,
    Envelope,
    QueueOptions,
    handles,
)
from actorbus.brokers.base import FunctionSink, QueueSpec
from actorbus.brokers.memory import InMemoryBroker, InMemoryServer
from actorbus.hooks import HandleDone
from actorbus.messages import Delivery, make_envelope, register_message_type
from actorbus.placement import EVERYWHERE, Placement
from actorbus.publishing import Publisher
from actorbus.requests import ERROR_HEADER, Requests
from actorbus.runtime import Runtime, queue_spec_of, tree_queue_specs
from actorbus.supervisor import Supervisor

pytestmark = pytest.mark.anyio

PING = register_message_type("runtime.ping")
PONG = register_message_type("runtime.pong")


@pytest.fixture
async def broker() -> InMemoryBroker:
    made = InMemoryBroker(InMemoryServer(), prefix="rt")
    await made.connect()
    return made


class Pinger(Actor):
    @handles(PING)
    async def on_ping(self, envelope: Envelope) -> Any:
        return {"pong": envelope.data["n"]}


class Both(Actor):
    @handles(PING, "runtime.*")
    async def on_any(self, envelope: Envelope) -> None:
        return None


# -- Publisher ----------------------------------------------------------------------------------


class Stamp:
    """Publish hooks that add a header, or raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def on_publish(self, envelope: Envelope) -> Envelope:
        self.seen.append(envelope.id)
        if self.fail:
            raise RuntimeError("hook broke")
        return Envelope(**{**_fields(envelope), "headers": {"stamped": "yes"}})

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone | None:
        return None


def _fields(envelope: Envelope) -> dict[str, Any]:
    return {name: getattr(envelope, name) for name in envelope.__struct_fields__}


async def received_by(broker: InMemoryBroker, queue: str) -> list[Envelope]:
    got: list[Envelope] = []

    async def take(delivery: Delivery) -> None:
        got.append(delivery.envelope)
        delivery.ack()

    await broker.declare_queue(QueueSpec(name=queue, patterns=(PING,)))
    await broker.consume(queue, FunctionSink(take), prefetch=10, owner="test")
    return got


async def test_publisher_without_hooks_is_the_brokers_fast_path(broker: InMemoryBroker) -> None:
    publisher = Publisher(broker)
    assert publisher.publish_nowait == broker.publish_nowait
    got = await received_by(broker, "q")
    await publisher.publish(make_envelope(PING, {"n": 1}))
    assert [envelope.data for envelope in got] == [{"n": 1}]


async def test_publisher_passes_each_envelope_through_the_hooks(broker: InMemoryBroker) -> None:
    hooks = Stamp()
    publisher = Publisher(broker, hooks)  # type: ignore[arg-type]
    got = await received_by(broker, "q")
    envelope = make_envelope(PING, {"n": 1})
    await publisher.publish(envelope)
    assert hooks.seen == [envelope.id]
    assert got[0].headers == {"stamped": "yes"}


async def test_a_failing_publish_hook_is_logged_and_the_message_still_goes(
    broker: InMemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Publisher(broker, Stamp(fail=True))  # type: ignore[arg-type]
    got = await received_by(broker, "q")
    with caplog.at_level(logging.ERROR):
        await publisher.publish(make_envelope(PING, {"n": 2}))
    assert [envelope.data for envelope in got] == [{"n": 2}]
    assert "publish hook failed" in caplog.text


async def test_publisher_follows_the_broker_it_is_given(broker: InMemoryBroker) -> None:
    other = InMemoryBroker(InMemoryServer(), prefix="rt")
    publisher = Publisher(broker)
    got = await received_by(other, "q")
    publisher.use(other, None)
    await publisher.publish(make_envelope(PING, {"n": 3}))
    assert [envelope.data for envelope in got] == [{"n": 3}]


# -- Requests -----------------------------------------------------------------------------------


async def serve(broker: InMemoryBroker, requests: Requests, *, error: str | None = None) -> None:
    """Answer every ping through ``requests.reply`` (with ``error``, as a failed handler)."""

    async def answer(delivery: Delivery) -> None:
        request = delivery.envelope
        await requests.reply(broker, request, {"pong": request.data["n"]}, error)
        delivery.ack()

    await broker.declare_queue(QueueSpec(name="server", patterns=(PING,)))
    await broker.consume("server", FunctionSink(answer), prefetch=10, owner="server")


async def test_ask_returns_the_reply_and_forgets_the_request(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    await serve(broker, requests)
    assert await requests.ask(broker.publish_nowait, PING, {"n": 7}, timeout=1) == {"pong": 7}
    assert requests._pending == {}


async def test_ask_times_out_and_a_late_reply_is_dropped(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    held: list[Delivery] = []

    async def hold(delivery: Delivery) -> None:
        held.append(delivery)

    await broker.declare_queue(QueueSpec(name="slow", patterns=(PING,)))
    await broker.consume("slow", FunctionSink(hold), prefetch=10, owner="slow")
    with pytest.raises(AskTimeout, match=r"runtime\.ping"):
        await requests.ask(broker.publish_nowait, PING, {"n": 1}, timeout=0.05)
    assert requests._pending == {}
    await requests.reply(broker, held[0].envelope, {"late": True})  # nobody waits: dropped


async def test_answered_asks_leave_no_deadline_behind(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    await serve(broker, requests)
    for n in range(200):
        await requests.ask(broker.publish_nowait, PING, {"n": n}, timeout=30)
    assert requests._deadlines is not None
    assert all(not queue for queue in requests._deadlines._queues.values())


async def test_asks_of_different_timeouts_each_expire_in_time(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    await broker.declare_queue(QueueSpec(name="void", patterns=(PING,)))
    await broker.consume("void", FunctionSink(_ignore), prefetch=100, owner="void")
    ended: list[float] = []

    async def ask(timeout: float) -> None:
        with pytest.raises(AskTimeout, match=f"within {timeout}s"):
            await requests.ask(broker.publish_nowait, PING, {"n": 1}, timeout=timeout)
        ended.append(timeout)

    await asyncio.wait_for(asyncio.gather(ask(0.3), ask(0.05), ask(0.3), ask(0.1)), 5)
    assert ended == [0.05, 0.1, 0.3, 0.3]


async def test_ask_raises_the_handlers_failure(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    await serve(broker, requests, error="ValueError: no")
    with pytest.raises(AskFailed, match="ValueError: no"):
        await requests.ask(broker.publish_nowait, PING, {"n": 1}, timeout=1)


async def test_pending_asks_fail_at_once_when_the_bus_goes(broker: InMemoryBroker) -> None:
    requests = Requests("me")
    await requests.open(broker)
    await broker.declare_queue(QueueSpec(name="void", patterns=(PING,)))
    await broker.consume("void", FunctionSink(_ignore), prefetch=10, owner="void")
    asking = asyncio.ensure_future(requests.ask(broker.publish_nowait, PING, {"n": 1}, timeout=30))
    await asyncio.sleep(0.01)
    requests.fail_pending(BusClosed("gone"))
    with pytest.raises(BusClosed):
        await asyncio.wait_for(asking, 1)


async def _ignore(delivery: Delivery) -> None:
    return None


async def test_reply_carries_the_error_header(broker: InMemoryBroker) -> None:
    replies: list[Envelope] = []
    address = await broker.open_reply_address(replies.append)
    request = make_envelope(PING, {"n": 1}, reply_to=address)
    await Requests("me").reply(broker, request, None, "boom")
    assert replies[0].headers == {ERROR_HEADER: "boom"}
    assert replies[0].correlation_id == request.id


# -- cells and queues ---------------------------------------------------------------------------


async def test_a_cells_queue_is_named_and_shaped_by_its_spec(broker: InMemoryBroker) -> None:
    runtime = Runtime(broker, prefix="rt", source="me")
    cell = runtime.make_cell(ChildSpec(Both))
    assert cell.queue == "rt.actor.both"
    assert cell.patterns == (PING, "runtime.*")
    own = ChildSpec(
        Both,
        name="other",
        queue_options=QueueOptions(name="shared", max_length=5),
        patterns=(PONG,),
    )
    spec = queue_spec_of(own, "rt")
    assert (spec.name, spec.patterns, spec.max_length) == ("shared", (PONG,), 5)


async def test_attach_consumes_with_the_mailbox_as_prefetch(broker: InMemoryBroker) -> None:
    runtime = Runtime(broker, prefix="rt", source="me")
    cell = runtime.make_cell(ChildSpec(Pinger))
    await runtime.attach(cell)
    [consumer] = broker.server.queues[cell.queue].consumers
    assert consumer.prefetch == cell.mailbox.capacity
    assert runtime.cells == [cell]


async def test_detach_gives_the_unread_back_in_order(broker: InMemoryBroker) -> None:
    runtime = Runtime(broker, prefix="rt", source="me")
    cell = runtime.make_cell(ChildSpec(Pinger))
    await runtime.attach(cell)  # (not running: what arrives waits in the mailbox)
    for n in range(3):
        await broker.publish(make_envelope(PING, {"n": n}))
    assert len(cell.mailbox) == 3
    await runtime.detach(cell)
    assert cell.stats.returned == 3
    assert runtime.cells == []
    queue = broker.server.queues[cell.queue]
    assert [envelope.data["n"] for envelope in queue.backlog] == [0, 1, 2]


async def test_move_to_carries_cells_publishes_and_replies_over(broker: InMemoryBroker) -> None:
    runtime = Runtime(broker, prefix="rt", source="me")
    await runtime.open()
    cell = runtime.make_cell(ChildSpec(Pinger))
    await runtime.attach(cell)
    other = InMemoryBroker(InMemoryServer(), prefix="rt")
    assert await runtime.move_to(other) is broker
    assert runtime.broker is other
    assert cell.queue in other.server.queues
    await runtime.publisher.publish(make_envelope(PING, {"n": 9}))
    assert [d.envelope.data for d in cell.mailbox.take_all()] == [{"n": 9}]


def test_tree_queue_specs_walk_nested_trees() -> None:
    tree = Supervisor([Pinger, Supervisor([ChildSpec(Both, name="inner")])])
    specs = tree_queue_specs("rt", tree)
    assert [spec.name for spec in specs] == ["rt.actor.pinger", "rt.actor.inner"]


# -- placement ----------------------------------------------------------------------------------


def test_placement_decides_which_actors_run_here() -> None:
    assert EVERYWHERE.runs_here("anything")
    placed = Placement(["risk", "execution"])
    assert placed.runs_here("risk")
    assert not placed.runs_here("strategy")
    assert not Placement([]).runs_here("risk")
    assert "risk" in repr(placed)
