"""Prometheus: real traffic, a real HTTP scrape, the library's own parser."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, MessageTypes, RetryPolicy, handles
from actorbus.messages import Envelope
from actorbus.telemetry.prometheus import BUCKETS, Buckets, start_metrics_server

pytestmark = pytest.mark.anyio


class Signals(Actor):
    """Handles signals; 'BAD' always fails (two attempts, then a dead letter)."""

    retry = RetryPolicy(max_attempts=2, backoff=0.001)

    @handles(MessageTypes.STRATEGY_SIGNAL)
    def on_signal(self, envelope: Envelope) -> None:
        if envelope.data["symbol"] == "BAD":
            raise ValueError("bad symbol")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def _traffic_then_scrape(bus: AsyncMessageBus) -> dict[Any, float]:
    server = start_metrics_server(bus, 0, addr="127.0.0.1")
    try:
        await bus.spawn(Signals)
        for symbol in ("BTC", "ETH", "BAD", "SOL"):
            await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": symbol})
        await wait_until(
            lambda: (
                bus.stats().actors["signals"].processed == 3
                and bus.stats().actors["signals"].dead_lettered == 1
            )
        )
        # Scraped from another thread, as Prometheus would: the bus's loop stays free.
        return await anyio.to_thread.run_sync(_scrape, server.server_port)
    finally:
        server.shutdown()
        server.server_close()


def _check(samples: dict[Any, float], mode: str) -> None:
    actor = (("actor", "signals"),)
    typed = (("actor", "signals"), ("type", "strategy.signal"))
    assert samples[("actorbus_messages_handled_total", actor)] == 3
    assert samples[("actorbus_messages_failed_total", actor)] == 2
    assert samples[("actorbus_messages_retried_total", actor)] == 1
    assert samples[("actorbus_messages_dead_lettered_total", actor)] == 1
    assert samples[("actorbus_messages_conflated_total", actor)] == 0
    assert samples[("actorbus_actor_restarts_total", actor)] == 0
    assert samples[("actorbus_mailbox_depth", actor)] == 0
    assert samples[("actorbus_actor_busy", actor)] == 0
    assert samples[("actorbus_actor_state", (*actor, ("state", "running")))] == 1
    assert samples[("actorbus_actor_state", (*actor, ("state", "failed")))] == 0
    # Four messages timed (the failed one too); three reached "handled".
    assert samples[("actorbus_handler_duration_seconds_count", typed)] == 4
    assert samples[("actorbus_publish_to_handled_seconds_count", typed)] == 3
    assert (
        samples[
            (
                "actorbus_handler_duration_seconds_bucket",
                (("actor", "signals"), ("le", "+Inf"), ("type", "strategy.signal")),
            )
        ]
        == 4
    )
    assert samples[("actorbus_publish_to_handled_seconds_sum", typed)] > 0
    assert samples[("actorbus_dead_letter_queue_depth", ())] == 1
    assert samples[("actorbus_messages_unroutable_total", ())] == 0
    connected = [k for k in samples if k[0] == "actorbus_broker_connected"]
    assert len(connected) == 1
    assert dict(connected[0][1])["mode"] == mode
    assert samples[connected[0]] == 1


async def test_scrape_after_traffic_in_memory(bus: AsyncMessageBus) -> None:
    samples = await _traffic_then_scrape(bus)
    _check(samples, "in_memory")
    assert not [k for k in samples if k[0].startswith("actorbus_broker_confirm_seconds")]
    assert samples[("actorbus_messages_dropped_total", ())] == 0
    assert samples[("actorbus_dead_letters_dropped_total", ())] == 0


@pytest.mark.rabbitmq
async def test_scrape_after_traffic_over_rabbitmq(rabbitmq_url: str, unique_prefix: str) -> None:
    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
    ) as bus:
        samples = await _traffic_then_scrape(bus)
        await bus.purge_dead_letters()
    _check(samples, "rabbitmq")
    assert samples[("actorbus_broker_reconnects_total", ())] == 0
    assert samples[("actorbus_broker_outbox_depth", ())] == 0
    # Every publish of the traffic was confirmed, and timed: the four signals at least.
    assert samples[("actorbus_broker_confirm_seconds_count", ())] >= 4
    assert samples[("actorbus_broker_confirm_seconds_sum", ())] > 0
    assert samples[("actorbus_broker_confirm_seconds_bucket", (("le", "+Inf"),))] >= 4
    node = next(dict(k[1])["node"] for k in samples if k[0] == "actorbus_broker_connected")
    assert node == "127.0.0.1:5672"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_serves_metrics_while_it_trades() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "actorbus.cli", "run", "--mode", "in_memory", "--quiet"),
            *("--duration", "30", "--metrics-addr", "127.0.0.1", "--metrics-port", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        handled = 0.0
        while handled == 0 and time.monotonic() < deadline:
            try:
                samples = _scrape(port)
            except OSError:
                time.sleep(0.2)  # not listening yet
                continue
            handled = samples.get(("actorbus_messages_handled_total", (("actor", "strategy"),)), 0)
            time.sleep(0.2)
        assert handled > 0
        assert samples[("actorbus_actor_state", (("actor", "strategy"), ("state", "running")))] == 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_buckets_count_each_value_at_or_below_its_bound() -> None:
    buckets = Buckets()
    for value in (1e-5, 2e-5, 0.3, 20.0):
        buckets.observe(value)
    cumulative = dict(buckets.cumulative())
    assert cumulative["1e-05"] == 1  # a value on a bound counts in that bucket
    assert cumulative["2.5e-05"] == 2
    assert cumulative["0.25"] == 2
    assert cumulative["0.5"] == 3
    assert cumulative["10.0"] == 3
    assert cumulative["+Inf"] == 4
    assert list(cumulative) == [*(str(b) for b in BUCKETS), "+Inf"]
    assert buckets.total == pytest.approx(20.30003)
