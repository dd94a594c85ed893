"""OpenTelemetry: spans by the messaging conventions, one trace along a chain of actors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from support.waiting import wait_until
from trading_helpers import ROOT, cli_env, delete_prefix

from actorbus import Actor, AsyncMessageBus, MessageTypes, RetryPolicy, handles
from actorbus.messages import Envelope
from actorbus.telemetry.otel import instrument_tracing
from telemetry.tracing import as_record, memory_provider

pytestmark = pytest.mark.anyio

APP = Path(__file__).parent / "traced_app.py"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Strategy(Actor):
    """Turns each tick into a signal."""

    @handles(MessageTypes.MARKET_DATA_UPDATE)
    async def on_tick(self, envelope: Envelope) -> None:
        await self.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": envelope.data["symbol"]})


class Risk(Actor):
    """Checks each signal; a signal for 'BAD' fails for good."""

    retry = RetryPolicy(max_attempts=1)
    checked: list[str] = []

    @handles(MessageTypes.STRATEGY_SIGNAL)
    async def on_signal(self, envelope: Envelope) -> None:
        if envelope.data["symbol"] == "BAD":
            raise ValueError("no such symbol")
        Risk.checked.append(envelope.data["symbol"])


def _by_name(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    named: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        named.setdefault(span["name"], []).append(span)
    return named


def _named(exporter: Any, name: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_a_tick_and_its_signal_make_one_trace(bus: AsyncMessageBus) -> None:
    provider, exporter = memory_provider()
    instrument_tracing(bus, provider)
    Risk.checked = []
    await bus.spawn(Strategy)
    await bus.spawn(Risk)
    tick_id = await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BTC"})
    await bus.publish(MessageTypes.MARKET_DATA_UPDATE, {"symbol": "BAD"})
    await wait_until(
        lambda: (
            len(
                _by_name([as_record(s) for s in exporter.get_finished_spans()]).get(
                    "process strategy.signal", []
                )
            )
            == 2
        )
    )
    spans = [as_record(s) for s in exporter.get_finished_spans()]
    named = _by_name(spans)
    tick = next(
        s
        for s in named["publish market_data.update"]
        if s["attributes"]["messaging.message.id"] == tick_id
    )
    assert tick["kind"] == "PRODUCER"
    assert tick["attributes"]["messaging.system"] == "actorbus"
    assert tick["attributes"]["messaging.operation.type"] == "send"
    assert tick["attributes"]["messaging.destination.name"] == "trading.market_data"
    assert tick["attributes"]["messaging.rabbitmq.destination.routing_key"] == "market_data.update"
    trace = [s for s in spans if s["trace_id"] == tick["trace_id"]]
    chain = {s["name"]: s for s in trace}
    handled = chain["process market_data.update"]
    assert handled["kind"] == "CONSUMER"
    assert handled["parent_id"] == tick["span_id"]
    assert handled["attributes"]["actorbus.actor"] == "strategy"
    assert handled["attributes"]["messaging.operation.type"] == "process"
    signal = chain["publish strategy.signal"]
    assert signal["parent_id"] == handled["span_id"]
    checked = chain["process strategy.signal"]
    assert checked["parent_id"] == signal["span_id"]
    assert checked["status"] == "UNSET"
    assert checked["attributes"]["messaging.consumer.group.name"] == "risk"
    # The other tick's chain is a trace of its own, and its failure is on its span.
    failed = [s for s in named["process strategy.signal"] if s["trace_id"] != tick["trace_id"]]
    assert [s["status"] for s in failed] == ["ERROR"]


@pytest.mark.rabbitmq
async def test_a_foreign_client_s_traceparent_joins_the_trace(
    rabbitmq_url: str, unique_prefix: str
) -> None:
    provider, exporter = memory_provider()
    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
    ) as bus:
        instrument_tracing(bus, provider)
        Risk.checked = []
        await bus.spawn(Strategy)
        await bus.spawn(Risk)
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"{unique_prefix}.market_data")
            await exchange.publish(
                aio_pika.Message(
                    json.dumps({"symbol": "ETH"}).encode(),
                    content_type="application/json",
                    message_id="foreign-1",
                    headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
                ),
                routing_key="market_data.update",
            )
        await wait_until(lambda: Risk.checked == ["ETH"])
        await wait_until(lambda: bool(_named(exporter, "process strategy.signal")))
    spans = [as_record(s) for s in exporter.get_finished_spans()]
    chain = {s["name"]: s for s in spans if s["trace_id"] == TRACE_ID}
    handled = chain["process market_data.update"]
    assert handled["parent_id"] == PARENT_ID
    assert handled["attributes"]["messaging.system"] == "rabbitmq"
    assert handled["attributes"]["messaging.message.id"] == "foreign-1"
    assert handled["attributes"]["messaging.destination.name"] == f"{unique_prefix}.market_data"
    assert chain["publish strategy.signal"]["parent_id"] == handled["span_id"]
    assert (
        chain["process strategy.signal"]["parent_id"] == chain["publish strategy.signal"]["span_id"]
    )


def _run_app(url: str, prefix: str, actors: str, out: Path, seconds: float) -> Any:
    return subprocess.Popen(
        [sys.executable, str(APP), url, prefix, actors, str(out), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**cli_env(), "PYTHONPATH": f"{ROOT}{os.pathsep}{APP.parent.parent}"},
    )


def _finish(process: Any) -> None:
    try:
        _, err = process.communicate(input="", timeout=120)  # closing stdin stops it
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err


@pytest.mark.rabbitmq
def test_tick_signal_order_fill_across_two_processes_is_one_trace(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    back_spans, front_spans = tmp_path / "back.jsonl", tmp_path / "front.jsonl"
    back = _run_app(rabbitmq_url, unique_prefix, "risk,execution,exchange,position", back_spans, 0)
    try:
        assert back.stdout.readline().strip() == "ready"
        front = _run_app(rabbitmq_url, unique_prefix, "market_data,strategy", front_spans, 4)
        _finish(front)
    finally:
        _finish(back)
    asyncio.run(delete_prefix(rabbitmq_url, unique_prefix))
    spans = [
        json.loads(line)
        for path in (front_spans, back_spans)
        for line in path.read_text().splitlines()
    ]
    by_id = {s["span_id"]: s for s in spans}
    fills = [
        s
        for s in spans
        if s["name"] == "process exchange.order_status" and s["service"].startswith("risk")
    ]
    assert fills, "no fill was handled"

    def ancestry(span: dict[str, Any]) -> list[dict[str, Any]]:
        chain = [span]
        while chain[-1]["parent_id"] in by_id:
            chain.append(by_id[chain[-1]["parent_id"]])
        return chain

    # Some fill goes back, parent by parent, to a tick published in the other process.
    for fill in fills:
        chain = ancestry(fill)
        if chain[-1]["name"] == "publish market_data.update":
            break
    else:
        raise AssertionError(f"no fill traced back to a tick: {ancestry(fills[0])}")
    assert len({s["trace_id"] for s in chain}) == 1
    names = [s["name"] for s in reversed(chain)]
    assert names == [
        "publish market_data.update",
        "process market_data.update",
        "publish strategy.signal",
        "process strategy.signal",
        "publish execution.order_request",
        "process execution.order_request",
        "publish exchange.order_submit",
        "process exchange.order_submit",
        "publish exchange.order_status",
        "process exchange.order_status",
    ]
    services = [s["service"] for s in reversed(chain)]
    assert services[:4] == ["market_data+strategy"] * 3 + ["risk+execution+exchange+position"]
    assert set(services[4:]) == {"risk+execution+exchange+position"}
    actors = [s["attributes"].get("actorbus.actor") for s in reversed(chain)][1::2]
    assert actors == ["strategy", "risk", "execution", "exchange", "execution"]
