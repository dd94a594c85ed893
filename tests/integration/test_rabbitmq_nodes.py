"""Several broker nodes, the bus-wide queue type and bounded redelivery, on one broker.

The node list is RabbitMQ-only (the in-memory broker has no address); so are
queue types and the delivery limit (in memory, a queue lives inside the
consumer's process, so no message outlives its consumer's death). The cluster
scenarios are in ``tests/cluster``; these tests need only the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid

import aiormq
import pytest
from support.rabbit_cleanup import delete_names

from actorbus import Actor, AsyncMessageBus, Envelope, QueueOptions, handles
from actorbus.brokers.base import DeadLetterFilter, FunctionSink, QueueSpec
from actorbus.brokers.rabbitmq import AsyncRabbitMQBroker, ConnectionSettings
from actorbus.brokers.rabbitmq._params import node_settings
from actorbus.errors import BrokerRefused, BrokerUnavailable, ConfigurationError
from actorbus.messages import Delivery, register_message_type

pytestmark = pytest.mark.anyio

PING = register_message_type("nodes.ping")
EVERY = DeadLetterFilter()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def where(settings: ConnectionSettings) -> tuple[str, int, str]:
    return settings.host, settings.port, settings.virtual_host


def test_a_list_a_comma_string_and_the_variable_give_the_same_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = ["amqp://u:p1@h1:5701/", "amqp://u:p2@h2:5702/v", " amqp://h3 "]
    as_list = [where(n) for n in node_settings(urls)]
    assert as_list == [("h1", 5701, "/"), ("h2", 5702, "v"), ("h3", 5672, "/")]
    assert [where(n) for n in node_settings(",".join(urls))] == as_list
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_URL", ",".join(urls))
    assert [where(n) for n in node_settings(None)] == as_list
    assert not any("p1" in str(n) or "p2" in str(n) for n in node_settings(urls))
    assert {(n.host, n.port) for n in node_settings(urls, shuffle=True)} == {
        ("h1", 5701),
        ("h2", 5702),
        ("h3", 5672),
    }


@pytest.mark.parametrize(
    ("urls", "position"),
    [
        ("amqp://u:topsecret@h1/,http://u:topsecret@h2/", "entry 2 of 2"),
        ("amqp://u:topsecret@h1/,,amqp://h3/", "entry 2 of 3"),
        ("amqp://u:topsecret@h1:99999/", "entry 1 of 1"),
        ("amqp://h0/,amqp://u:topsecret/x@h1/", "entry 2 of 2"),
        (["amqp://h0/", "amqp://h1/", "amqps://u:topsecret@[::1/"], "entry 3 of 3"),
    ],
)
def test_a_malformed_entry_is_named_by_its_position_without_its_password(
    urls: str | list[str], position: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AsyncRabbitMQBroker(urls)
    assert position in str(caught.value)
    assert "topsecret" not in str(caught.value)


async def test_refused_credentials_on_a_node_list_never_show_a_password(
    rabbitmq_url: str,
) -> None:
    """Each node's password stays out of the error (a comma list once put the second in it)."""
    urls = "amqp://guest:wrong-one@127.0.0.1:5672/,amqp://guest:wrong-two@127.0.0.1:5672/"
    broker = AsyncRabbitMQBroker(urls, connect_timeout=5)
    with pytest.raises(BrokerRefused) as caught:
        await broker.connect()
    await broker.close()
    text = str(caught.value)
    assert "wrong-one" not in text
    assert "wrong-two" not in text
    assert "refused the login" in text


async def test_no_node_answering_names_every_node_without_passwords() -> None:
    ports = [free_port(), free_port()]
    urls = [f"amqp://guest:pw-{p}@127.0.0.1:{p}/" for p in ports]
    broker = AsyncRabbitMQBroker(urls, connect_timeout=2)
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.connect()
    await broker.close()
    text = str(caught.value)
    assert "any of the 2 RabbitMQ nodes" in text
    assert all(f"127.0.0.1:{p}" in text and f"pw-{p}" not in text for p in ports)


async def test_the_first_node_that_answers_is_used_and_stats_say_which(
    rabbitmq_url: str, unique_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"amqp://guest:not-logged@127.0.0.1:{free_port()}/"
    got: list[str] = []

    class Pinged(Actor):
        name = "pinged"

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> None:
            got.append(msg.id)

    caplog.set_level("INFO", logger="actorbus")
    async with AsyncMessageBus(
        "rabbitmq", url=f"{dead},{rabbitmq_url}", prefix=unique_prefix, fallback=False
    ) as bus:
        await bus.spawn(Pinged)
        await bus.publish(PING, {})
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
        broker = bus.stats().broker
    assert got
    assert broker.node == "127.0.0.1:5672"
    assert broker.url.endswith("127.0.0.1:5672/")
    assert "guest" not in broker.url
    assert (broker.node_index, broker.nodes) == (2, 2)
    assert "node 2 of 2" in caplog.text
    assert "not-logged" not in caplog.text
    assert "guest:guest" not in caplog.text


def _queue_rows(prefix: str) -> dict[str, dict[str, object]]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "type", "arguments", "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["name"]: row for row in json.loads(listed.stdout) if row["name"].startswith(prefix)}


def _arguments(row: dict[str, object]) -> dict[str, object]:
    """Queue arguments from the JSON listing: ``[name, type, value]`` triples, or a mapping."""
    raw = row["arguments"]
    if isinstance(raw, dict):
        return raw
    return {item[0]: item[-1] for item in raw}  # type: ignore[attr-defined, index]


async def test_the_bus_wide_queue_type_and_an_actors_own_choice(
    rabbitmq_url: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE", "quorum")

    class Replicated(Actor):
        name = "replicated"

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> None:
            pass

    class Local(Replicated):
        name = "local"
        queue_options = QueueOptions(queue_type="classic")

    async with AsyncMessageBus(
        "rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False, delivery_limit=7
    ) as bus:
        await bus.spawn(Replicated)
        await bus.spawn(Local)
        rows = await asyncio.to_thread(_queue_rows, unique_prefix)
        assert bus.stats().broker.queue_type  # type: ignore[union-attr] == "quorum"
    replicated = rows[f"{unique_prefix}.actor.replicated"]
    assert replicated["type"] == "quorum"
    arguments = _arguments(replicated)
    assert arguments["x-delivery-limit"] == 7
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-dead-letter-routing-key"] == f"{unique_prefix}.dead_letters"
    assert rows[f"{unique_prefix}.actor.local"]["type"] == "classic"
    assert rows[f"{unique_prefix}.dead_letters"]["type"] == "quorum"
    assert "x-delivery-limit" not in _arguments(rows[f"{unique_prefix}.dead_letters"])


def test_an_unknown_queue_type_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="queue type"):
        AsyncRabbitMQBroker(queue_type="stream")
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE", "mirrored")
    with pytest.raises(ConfigurationError, match="TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE"):
        AsyncRabbitMQBroker()
    with pytest.raises(ConfigurationError, match="delivery_limit"):
        AsyncRabbitMQBroker(queue_type="quorum", delivery_limit=0)


async def _take_and_die(url: str, queue: str) -> bool:
    """Take one message on a fresh connection and drop the connection without settling it."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        message = await channel.basic_get(queue, no_ack=False)
        return message.delivery is not None and message.body != b""
    finally:
        await connection.close()


async def _never_called(delivery: Delivery) -> None:
    raise AssertionError(f"the cancelled consumer got {delivery.envelope.id}")


async def test_a_message_past_its_delivery_limit_is_a_dead_letter_like_any_other(
    rabbitmq_url: str, unique_prefix: str
) -> None:
    """One node, a quorum queue: listed, replayed and purged like a handler's dead letter.

    Its ``actor`` is the owner this broker's consumer of the queue was started with;
    before this broker ever consumed the queue, the queue's own name.
    """
    broker = AsyncRabbitMQBroker(
        rabbitmq_url, prefix=unique_prefix, queue_type="quorum", delivery_limit=2
    )
    await broker.connect()
    queue = f"{unique_prefix}.actor.doomed"
    try:
        await broker.declare_queue(QueueSpec(name=queue, patterns=(PING,)))
        envelope = Envelope(
            id=f"doomed-{uuid.uuid4().hex[:6]}", type=PING, data={"n": 1}, timestamp=time.time()
        )
        await broker.publish(envelope)
        taken = 0
        while await _take_and_die(rabbitmq_url, queue):
            taken += 1
            assert taken <= 5, "the delivery limit did not stop the redeliveries"
        entries: list = []
        for _ in range(200):
            entries = await broker.dead_letters(EVERY)
            if entries:
                break
            await asyncio.sleep(0.02)
        assert taken == 3
        [entry] = entries
        assert entry.envelope.id == envelope.id
        assert entry.envelope.data == {"n": 1}
        assert (entry.queue, entry.actor) == (queue, queue)  # nobody here consumed it
        assert entry.error_type == "DeliveryLimitReached"
        assert entry.attempts == 3
        assert "delivery limit reached: delivered 3 times (limit 2)" in entry.reason
        assert not any(k.startswith("x-") for k in entry.envelope.headers)
        consumer = await broker.consume(
            queue, FunctionSink(_never_called), prefetch=1, owner="doomed"
        )
        await consumer.cancel()  # the queue keeps its owner
        assert await broker.replay_dead_letters(EVERY) == 1
        assert await broker.queue_length(queue) == 1
        while await _take_and_die(rabbitmq_url, queue):
            pass
        for _ in range(200):
            if await broker.dead_letters(EVERY):
                break
            await asyncio.sleep(0.02)
        [again] = await broker.dead_letters(EVERY)
        assert again.replays == 1
        assert (again.queue, again.actor) == (queue, "doomed")
        assert await broker.purge_dead_letters(EVERY) == 1
        assert await broker.dead_letters(EVERY) == []
    finally:
        queues, exchanges = broker.declared_names()
        await broker.close()
        await delete_names(rabbitmq_url, queues, exchanges)


def test_actorbus_stats_says_which_node_it_uses(
    rabbitmq_url: str, unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from actorbus.cli import main

    async def run_once() -> None:  # a system ran on the prefix: there is something to inspect
        async with AsyncMessageBus(
            "rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        ):
            pass

    asyncio.run(run_once())
    dead = f"amqp://guest:not-shown@127.0.0.1:{free_port()}/"
    urls = f"{dead},{rabbitmq_url}"
    args = ["stats", "--mode", "rabbitmq", "--url", urls, "--prefix", unique_prefix]
    assert main([*args, "--wait", "0.1"]) == 0
    shown_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("RabbitMQ node")
    )
    assert shown_line == "RabbitMQ node 2 of 2: 127.0.0.1:5672"
    assert main([*args, "--wait", "0.1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["broker"]["node_index"], shown["broker"]["nodes"]) == (2, 2)
    assert "not-shown" not in json.dumps(shown)


JSON = ("--formatter", "json")


def _prefetch_of(queue: str) -> list[int]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_consumers", *("queue_name", "prefetch_count"), *JSON],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [int(r["prefetch_count"]) for r in json.loads(listed.stdout) if r["queue_name"] == queue]


async def test_a_bounded_queue_starts_narrow_and_widens_after_a_fresh_success(
    rabbitmq_url: str, unique_prefix: str
) -> None:
    """The redelivery window on one node: prefetch 1 first, the mailbox size after one success."""
    handled: list[str] = []

    class Windowed(Actor):
        name = "windowed"
        mailbox_size = 50

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> None:
            handled.append(msg.id)

    queue = f"{unique_prefix}.actor.windowed"
    async with AsyncMessageBus(
        "rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False, queue_type="quorum"
    ) as bus:
        await bus.spawn(Windowed)
        narrow = await asyncio.to_thread(_prefetch_of, queue)
        for seq in range(200):
            await bus.publish(PING, {"seq": seq})
        for _ in range(1000):
            if len(handled) == 200:
                break
            await asyncio.sleep(0.01)
        wide = await asyncio.to_thread(_prefetch_of, queue)
    assert narrow == [1]
    assert len(set(handled)) == 200
    assert wide == [50]


def test_the_variables_are_read_and_checked_like_the_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_URL", "amqp://a/,ftp://u:hidden-pw@b/")
    with pytest.raises(ConfigurationError) as caught:
        AsyncRabbitMQBroker()
    assert "entry 2 of 2 in TRADING_SYSTEM_RABBITMQ_URL" in str(caught.value)
    assert "hidden-pw" not in str(caught.value)
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_URL", "amqp://a/,amqp://b/")
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE", "Quorum")
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_DELIVERY_LIMIT", "5")
    broker = AsyncRabbitMQBroker()
    assert [where(n) for n in broker.nodes] == [("a", 5672, "/"), ("b", 5672, "/")]
    info = broker.stats()
    assert (info.queue_type, info.delivery_limit, info.nodes) == ("quorum", 5, 2)
    assert (
        AsyncRabbitMQBroker(queue_type="classic", delivery_limit=9).stats().queue_type == "classic"
    )
    monkeypatch.setenv("TRADING_SYSTEM_RABBITMQ_DELIVERY_LIMIT", "many")
    with pytest.raises(ConfigurationError, match="TRADING_SYSTEM_RABBITMQ_DELIVERY_LIMIT"):
        AsyncRabbitMQBroker()
