"""``actorbus bench`` on the example actor, in memory and over RabbitMQ, and its bad inputs."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiormq
import pytest
from trading_helpers import run_cli

from actorbus.cli import main

TARGET = "examples.bench_my_actor:Pricer"
TREE = "examples.bench_my_actor:tree"
QUOTE = "pricing.quote"
PAYLOAD = '{"symbol": "BTC-USD", "bid": 1.0, "ask": 2.0}'


def bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["bench", *args, "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def check_sane(report: dict[str, Any], messages: int, deliveries: int) -> None:
    assert report["messages"] == messages
    assert report["deliveries"] == deliveries
    assert report["failed"] == report["unfinished"] == report["errors"] == 0
    assert report["throughput"] > 0
    assert report["seconds"] > 0
    assert report["cpu_us_per_message"] > 0
    latency = report["latency_us"]
    assert latency["count"] == deliveries
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p999"] <= latency["max"]


def test_in_memory_flat_out_counts_every_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench_json(capsys, TARGET, QUOTE, "--payload", PAYLOAD, "--count", "3000")
    assert report["mode"] == "in_memory"
    assert report["target"] == "pricer"
    assert report["rate"] == 0
    check_sane(report, 3000, 3000)


def test_a_tree_with_a_payload_factory_makes_a_delivery_per_actor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = bench_json(
        capsys, TREE, QUOTE, "--payload", "examples.bench_my_actor:quote", "--count", "1000"
    )
    assert report["target"] == "pricing"
    check_sane(report, 1000, 2000)


def test_a_fixed_rate_for_a_duration_publishes_rate_times_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = bench_json(
        capsys, TARGET, QUOTE, "--payload", PAYLOAD, "--rate", "2000", "--duration", "0.5"
    )
    check_sane(report, 1000, 1000)
    assert report["rate"] == 2000
    # Deadlines are absolute: the last message is due at 0.4995 s, so the run cannot
    # end before it (an upper bound would be a timed assertion).
    assert report["seconds"] >= 0.4995


def test_text_output_names_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", TARGET, QUOTE, "--payload", PAYLOAD, "--count", "200"]) == 0
    out = capsys.readouterr().out
    for word in ("msgs/s", "us per message", "p50", "p99", "p99.9", "max"):
        assert word in out


async def queue_exists(url: str, name: str) -> bool:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


@pytest.mark.rabbitmq
def test_over_rabbitmq_and_it_deletes_what_it_declared(
    capsys: pytest.CaptureFixture[str], rabbitmq_url: str, unique_prefix: str
) -> None:
    report = bench_json(
        capsys,
        TREE,
        QUOTE,
        "--payload",
        PAYLOAD,
        "--count",
        "500",
        "--rate",
        "1000",
        "--mode",
        "rabbitmq",
        "--url",
        rabbitmq_url,
        "--prefix",
        unique_prefix,
    )
    assert report["mode"] == "rabbitmq"
    check_sane(report, 500, 1000)
    for queue in ("actor.pricer_a", "actor.pricer_b", "dead_letters"):
        assert not asyncio.run(queue_exists(rabbitmq_url, f"{unique_prefix}.{queue}"))


@pytest.mark.rabbitmq
def test_the_console_script_over_rabbitmq_with_its_default_prefix(rabbitmq_url: str) -> None:
    done = run_cli(
        "bench", TARGET, QUOTE, "--payload", PAYLOAD, "--count", "300", "--mode", "rabbitmq",
        "--url", rabbitmq_url, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    check_sane(json.loads(done.stdout), 300, 300)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere_such_module:Actor", QUOTE], "cannot import module 'nowhere_such_module'"),
        (["examples.bench_my_actor:Missing", QUOTE], "has no attribute 'Missing'"),
        (["examples.bench_my_actor", QUOTE], "is not of the form module:attribute"),
        (["examples.bench_my_actor:QUOTE", QUOTE], "not an Actor subclass"),
        ([TARGET, QUOTE, "--payload", "{not json"], "payload is not valid JSON"),
        ([TARGET, QUOTE, "--payload", "@/nonexistent/payload.json"], "cannot read payload file"),
        ([TARGET, "no.such.type"], "unknown message type 'no.such.type'"),
        ([TARGET, "system.error"], "no actor of the target handles message type"),
    ],
)
def test_bad_input_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["bench", *args, "--count", "10"]) == 2
    err = capsys.readouterr().err
    assert "actorbus bench: error:" in err
    assert message in err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--count", "-5"], "must be at least 1"),
        (["--count", "0"], "must be at least 1"),
        (["--rate", "nan"], "must be a finite number >= 0"),
        (["--rate", "-1"], "must be a finite number >= 0"),
        (["--duration", "inf"], "must be a finite number > 0"),
        (["--count", "5", "--duration", "1"], "not allowed with argument"),
    ],
)
def test_bad_numbers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", TARGET, QUOTE, *option])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_console_script_rejects_a_nan_rate() -> None:
    done = run_cli("bench", TARGET, QUOTE, "--rate", "nan")
    assert done.returncode == 2
    assert "--rate: must be a finite number >= 0" in done.stderr


def test_an_unreachable_broker_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    args = [TARGET, QUOTE, "--count", "10", "--mode", "rabbitmq"]
    assert main(["bench", *args, "--url", "amqp://guest:guest@127.0.0.1:1/"]) == 3
    assert "cannot reach RabbitMQ" in capsys.readouterr().err


def test_without_the_bench_extra_it_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "hdrh.histogram", None)  # as if not installed
    assert main(["bench", TARGET, QUOTE, "--count", "10"]) == 2
    assert "pip install 'actorbus[bench]'" in capsys.readouterr().err
