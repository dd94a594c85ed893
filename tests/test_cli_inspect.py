"""``actorbus stats`` and ``dlq``: read-only, never an empty in-memory answer, no password shown."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from support.rabbit_cleanup import delete_under_prefixes
from trading_helpers import run_cli

PASSWORDS = ["p@ss:w0rd", "p%40ss%3Aw0rd", "pässwörd€", "w0rd%2Fslash"]


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("command", [["stats"], ["dlq", "list"]])
def test_an_unreachable_broker_shows_no_password_and_no_library_logs(
    command: list[str], password: str
) -> None:
    done = run_cli(*command, "--url", f"amqp://guest:{password}@127.0.0.1:1/")
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("actorbus: cannot reach RabbitMQ at amqp://***@127.0.0.1:1/")
    assert "aiormq" not in done.stderr  # libraries speak through actorbus's message
    for part in (password, "w0rd", "ss:", "pässwörd"):
        assert part not in done.stderr + done.stdout


def test_a_password_that_breaks_the_url_is_not_shown_either() -> None:
    done = run_cli("stats", "--url", "amqp://guest:p@ss/w0rd@127.0.0.1:1/")
    assert done.returncode in (2, 3), done.stderr
    assert "w0rd" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["stats"], ["dlq", "list"], ["dlq", "purge"]])
def test_without_a_broker_in_view_there_is_nothing_to_look_at(command: list[str]) -> None:
    done = run_cli(*command)
    assert done.returncode == 2
    assert "nothing to look at" in done.stderr
    assert "--mode rabbitmq" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stats", "--wait", "-1"], "--wait must be"),
        (["stats", "--wait", "nan"], "--wait must be"),
        (["stats", "--wait", "inf"], "--wait must be"),
        (["dlq", "list", "--limit", "-1"], "--limit must be"),
    ],
)
def test_bad_values_exit_2(args: list[str], message: str) -> None:
    done = run_cli(*args, "--mode", "rabbitmq", "--url", "amqp://127.0.0.1:1/")
    assert done.returncode == 2
    assert message in done.stderr


def _names(prefix: str) -> tuple[list[str], list[str]]:
    listed = []
    for kind in ("exchanges", "queues"):
        out = subprocess.run(
            ["rabbitmqctl", "-q", f"list_{kind}", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        listed.append(sorted(n.strip() for n in out.splitlines() if n.startswith(prefix)))
    return listed[0], listed[1]


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "command",
    [
        ["stats", "--mode", "rabbitmq", "--wait", "0.2"],
        ["stats", "--wait", "0.2"],  # --prefix alone means RabbitMQ (the default URL)
        ["dlq", "list", "--url", "amqp://guest:guest@127.0.0.1:5672/"],
        ["dlq", "replay", "--mode", "rabbitmq"],
        ["dlq", "purge", "--json"],
    ],
)
def test_looking_at_an_unused_prefix_creates_nothing(rabbitmq_url: str, command: list[str]) -> None:
    prefix = f"test-unused-{uuid.uuid4().hex[:8]}"
    assert _names(prefix) == ([], [])
    try:
        done = run_cli(*command, "--prefix", prefix)
        assert done.returncode == 0, done.stderr
        assert "no actorbus system has run there" in done.stderr
        assert _names(prefix) == ([], [])
    finally:
        asyncio.run(delete_under_prefixes(rabbitmq_url, (f"{prefix}.",)))
