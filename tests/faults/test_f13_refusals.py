"""Scenario 13: a broker that answers but refuses is never mistaken for an outage.

A certificate that does not verify (wrong CA, wrong host name), a user whose
permissions refuse the bus's declarations, and a passive bus on a broker that
lacks its topology each raise ``BrokerRefused`` (or its kin), with the cause in
the message and no password, even with ``fallback`` on. A broker that cannot be
reached still falls back. And a least-privilege user (no ``configure``) runs
the bus in passive mode on the definitions ``actorbus topology`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import passive_tree
import pytest
from support.rabbit_cleanup import delete_names
from support.rabbit_node import (
    RabbitNode,
    RabbitNodeError,
    TlsFiles,
    make_certificates,
    rabbitmq_installed,
)

from actorbus import ActorStartError, AsyncMessageBus, BrokerRefused, TopologyMissing
from actorbus.brokers.rabbitmq import topology_definitions
from actorbus.runtime import tree_queue_specs

pytestmark = [pytest.mark.faults, pytest.mark.anyio]

PASSWORD = "p@ss:w0rd/%é"
HERE = Path(__file__).parent
TREE = "passive_tree:tree"


def definitions_of(prefix: str) -> dict[str, Any]:
    """The definitions of a bus on ``prefix`` running the passive test tree."""
    return topology_definitions(prefix, tree_queue_specs(prefix, passive_tree.tree()))


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RabbitNode, TlsFiles]]:
    """A private node with a TLS listener whose certificate a CA made here signed."""
    if not rabbitmq_installed():
        _unavailable("rabbitmq-server is not installed: the private node cannot start")
    good = make_certificates(tmp_path_factory.mktemp("tls"), "good")
    node = RabbitNode(tls=good)
    try:
        node.start()
    except RabbitNodeError as exc:
        node.cleanup()
        _unavailable(f"the private TLS node did not start: {exc}")
    try:
        yield node, good
    finally:
        node.cleanup()


@pytest.fixture
def user(node: RabbitNode) -> Iterator[str]:
    """A user name of this test only, deleted afterwards."""
    name = f"svc-{uuid.uuid4().hex[:8]}"
    yield name
    node.delete_user(name)


async def _clean(node_url: str, prefix: str, definitions: dict[str, list[dict[str, str]]]) -> None:
    await delete_names(
        node_url,
        [q["name"] for q in definitions["queues"]],
        [e["name"] for e in definitions["exchanges"]],
    )


async def _echo_round_trip(bus: AsyncMessageBus, count: int = 5) -> None:
    passive_tree.Echo.seen.clear()
    passive_tree.Echo.expected = count
    passive_tree.Echo.all_seen = all_seen = anyio.Event()
    await bus.spawn(passive_tree.tree())
    for n in range(count):
        await bus.publish(passive_tree.SIGNAL, {"n": n})
    with anyio.fail_after(20):
        await all_seen.wait()
    assert sorted(passive_tree.Echo.seen) == list(range(count))


async def test_tls_with_the_right_ca_connects_publishes_and_consumes(
    tls_node: tuple[RabbitNode, TlsFiles], prefix: str
) -> None:
    node, good = tls_node
    url = f"{node.tls_url}?cafile={good.cacert}"
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, fallback=False)
    try:
        await bus.start()
        assert bus.mode == "rabbitmq"
        await _echo_round_trip(bus)
    finally:
        await bus.shutdown(timeout=2.0)
        await _clean(
            node.url,
            prefix,
            definitions_of(prefix),
        )


async def test_a_certificate_from_another_ca_is_refused_never_a_fallback(
    tls_node: tuple[RabbitNode, TlsFiles], prefix: str, tmp_path: Path
) -> None:
    node, _ = tls_node
    wrong = make_certificates(tmp_path, "wrong")
    url = node.tls_url.replace("guest:guest@", f"guest:{_quoted(PASSWORD)}@")
    bus = AsyncMessageBus(mode="rabbitmq", url=f"{url}?cafile={wrong.cacert}", prefix=prefix)
    with pytest.raises(BrokerRefused, match="CERTIFICATE_VERIFY_FAILED") as raised:
        await bus.start()  # fallback is on, and must not be taken
    await bus.shutdown()
    assert "certificate" in str(raised.value)
    _assert_no_password(str(raised.value))


async def test_a_certificate_for_another_host_is_refused(
    tls_node: tuple[RabbitNode, TlsFiles], prefix: str
) -> None:
    node, good = tls_node
    url = node.tls_url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1
    bus = AsyncMessageBus(mode="rabbitmq", url=f"{url}?cafile={good.cacert}", prefix=prefix)
    with pytest.raises(BrokerRefused, match=r"(?i)hostname mismatch"):
        await bus.start()
    await bus.shutdown()


async def test_an_unreachable_broker_still_falls_back(prefix: str) -> None:
    bus = AsyncMessageBus(mode="rabbitmq", url="amqp://127.0.0.1:1/", prefix=prefix)
    await bus.start()
    assert bus.mode == "in_memory"
    await bus.shutdown()


async def test_a_user_refused_the_declarations_is_refused_never_a_fallback(
    node: RabbitNode, prefix: str, user: str
) -> None:
    node.add_user(user, PASSWORD, configure="")  # may read and write, not declare
    url = node.url_for(user=user, password=_quoted(PASSWORD))
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix)  # fallback on
    with pytest.raises(BrokerRefused, match="ACCESS_REFUSED") as raised:
        await bus.start()
    await bus.shutdown()
    assert repr(user) in str(raised.value)
    assert "declare='passive'" in str(raised.value)
    _assert_no_password(str(raised.value))


async def test_passive_mode_lists_everything_missing(
    node: RabbitNode, prefix: str, user: str
) -> None:
    node.add_user(user, PASSWORD, configure="")
    url = node.url_for(user=user, password=_quoted(PASSWORD))
    bus = AsyncMessageBus(
        mode="rabbitmq", url=url, prefix=prefix, declare="passive", unroutable="keep"
    )
    with pytest.raises(TopologyMissing) as raised:
        await bus.start()
    await bus.shutdown()
    expected = topology_definitions(prefix, unroutable="keep")
    assert f"{prefix}.unroutable" in {q["name"] for q in expected["queues"]}
    wanted = {f"exchange {e['name']}" for e in expected["exchanges"]}
    wanted |= {f"queue {q['name']}" for q in expected["queues"]}
    assert set(raised.value.missing) == wanted  # all of them, in one error
    assert f"queue {prefix}.dead_letters" in str(raised.value)
    _assert_no_password(str(raised.value))
    assert not [q for q in node.list_queues() if q["name"].startswith(prefix)]  # nothing made


async def test_a_user_without_configure_runs_passive_on_imported_definitions(
    node: RabbitNode, prefix: str, user: str, tmp_path: Path
) -> None:
    definitions = definitions_of(prefix)
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(definitions))
    node.import_definitions(path)
    node.add_user(user, PASSWORD, configure="")
    url = node.url_for(user=user, password=_quoted(PASSWORD))
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, declare="passive")
    try:
        await bus.start()
        assert bus.mode == "rabbitmq"
        await _echo_round_trip(bus)
    finally:
        await bus.shutdown(timeout=2.0)
        await _clean(node.url, prefix, definitions)


def test_the_topology_command_prints_definitions_rabbitmq_imports(
    node: RabbitNode, prefix: str, tmp_path: Path
) -> None:
    where = ["--prefix", prefix, "--tree", TREE]
    done = subprocess.run(
        [sys.executable, "-m", "actorbus.cli", "topology", "--mode", "rabbitmq", *where],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    path = tmp_path / "definitions.json"
    path.write_text(done.stdout)
    node.import_definitions(path)
    try:
        exchanges = {e["name"] for e in node.list_exchanges() if e["name"].startswith(prefix)}
        assert exchanges == {e["name"] for e in printed["exchanges"]}
        queue = f"{prefix}.actor.echo"
        assert node.queue_info(queue) is not None
        bound = {
            (b["source_name"], b["routing_key"])
            for b in node.list_bindings()
            if b["destination_name"] == queue
        }
        assert (f"{prefix}.strategy", passive_tree.SIGNAL) in bound
    finally:
        anyio.run(_clean, node.url, prefix, printed)


def _quoted(password: str) -> str:
    from urllib.parse import quote

    return quote(password, safe="")


def _assert_no_password(text: str) -> None:
    for part in (PASSWORD, _quoted(PASSWORD), "w0rd"):
        assert part not in text


async def test_passive_mode_names_a_queue_missing_at_spawn(
    node: RabbitNode, prefix: str, user: str, tmp_path: Path
) -> None:
    definitions = topology_definitions(prefix)  # the exchanges and dead letters, no actor queue
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(definitions))
    node.import_definitions(path)
    node.add_user(user, PASSWORD, configure="")
    url = node.url_for(user=user, password=_quoted(PASSWORD))
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix, declare="passive")
    try:
        await bus.start()
        missing = f"queue {prefix}.actor.echo missing"
        with (
            anyio.fail_after(20),
            pytest.raises(ActorStartError, match=f"TopologyMissing.*{missing}"),
        ):
            await bus.spawn(passive_tree.tree())  # said at once, not waited out as an outage
    finally:
        await bus.shutdown(timeout=2.0)
        await _clean(node.url, prefix, definitions)


async def test_a_declaration_refused_after_the_start_is_said_at_once(
    node: RabbitNode, prefix: str, user: str
) -> None:
    # May declare the prefix's exchanges and dead-letter queue, not the actors' queues.
    node.add_user(user, PASSWORD, configure=rf"^{prefix}\.[a-z_]+$")
    url = node.url_for(user=user, password=_quoted(PASSWORD))
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix)
    try:
        await bus.start()
        assert bus.mode == "rabbitmq"
        with anyio.fail_after(20), pytest.raises(ActorStartError, match="ACCESS_REFUSED"):
            await bus.spawn(passive_tree.tree())  # not retried as if the broker were away
    finally:
        await bus.shutdown(timeout=2.0)
        await _clean(
            node.url,
            prefix,
            definitions_of(prefix),
        )


async def test_tls_to_a_plain_listener_is_refused(node: RabbitNode, prefix: str) -> None:
    url = node.url.replace("amqp://", "amqps://") + "?no_verify_ssl=1"
    bus = AsyncMessageBus(mode="rabbitmq", url=url, prefix=prefix)
    with pytest.raises(BrokerRefused, match="TLS handshake"):
        await bus.start()
    await bus.shutdown()
