"""The AsyncAPI document, checked by the official AsyncAPI parser (``@asyncapi/parser``).

The parser is installed from ``tests/telemetry/asyncapi/package-lock.json`` with
``npm ci`` the first time (into that folder's ``node_modules``, not committed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorbus.asyncapi import asyncapi_document

VALIDATOR = Path(__file__).parent / "asyncapi"


@pytest.fixture(scope="session")
def validator() -> Path:
    """The validator script, its npm packages installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the AsyncAPI test needs Node.js and npm (node 18 or later)")
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=VALIDATOR,
            check=True,
            timeout=600,
        )
    return VALIDATOR / "validate.mjs"


def _validate(validator: Path, tmp_path: Path, text: str, suffix: str) -> dict[str, Any]:
    document = tmp_path / f"asyncapi.{suffix}"
    document.write_text(text)
    result = subprocess.run(
        ["node", str(validator), str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


def _errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report["diagnostics"] if d["level"] == "error"]


def _command(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "actorbus.cli", "asyncapi", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_the_command_prints_a_valid_asyncapi_3_document(
    validator: Path, tmp_path: Path, output: str
) -> None:
    text = _command("--prefix", "desk", "--format", output)
    report = _validate(validator, tmp_path, text, output)
    assert _errors(report) == []
    assert report["valid"] is True
    assert report["exit"] == 0
    assert report["version"] == "3.0.0"
    channels = set(report["channels"])
    assert {"strategy_signal", "market_data_update", "actor_strategy", "dead_letters"} <= channels


@pytest.fixture
def trading_schemas() -> Iterator[None]:
    """The trading system's payload schemas, registered for one test only."""
    from actorbus_trading import register_schemas
    from actorbus_trading.schemas import unregister_schemas

    register_schemas()
    yield
    unregister_schemas()


@pytest.mark.usefixtures("trading_schemas")
def test_channels_bindings_and_payloads_describe_the_wire() -> None:
    from actorbus_trading.schemas import Signal
    from actorbus_trading.system import ACTOR_CLASSES

    document = asyncapi_document(
        prefix="desk", actors=ACTOR_CLASSES, requests=["market_data.request"]
    )
    signal = document["channels"]["strategy_signal"]
    assert signal["address"] == "strategy.signal"
    amqp = signal["bindings"]["amqp"]
    assert amqp["is"] == "routingKey"
    assert amqp["exchange"] == {
        "name": "desk.strategy",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    queue = document["channels"]["actor_strategy"]
    assert queue["address"] == "desk.actor.strategy"
    assert queue["bindings"]["amqp"]["queue"]["durable"] is True
    assert "market_data_update" in queue["messages"]
    message = document["components"]["messages"]["strategy_signal"]
    payload = message["payload"]
    schema = document["components"]["schemas"][payload["$ref"].rsplit("/", 1)[1]]
    assert set(schema["properties"]) == set(Signal.__struct_fields__)
    headers = document["components"]["schemas"]["ActorbusHeaders"]["properties"]
    assert {"x-source", "x-attempt", "x-timestamp", "traceparent"} <= set(headers)
    request = document["operations"]["send_market_data_request"]
    assert request["reply"]["channel"] == {"$ref": "#/channels/replies"}


def test_the_validator_rejects_a_broken_document(validator: Path, tmp_path: Path) -> None:
    document = asyncapi_document(prefix="desk")
    document["operations"]["send_strategy_signal"]["action"] = "publish"  # AsyncAPI 2 wording
    del document["channels"]["strategy_signal"]["bindings"]["amqp"]["exchange"]["name"]
    document["info"].pop("version")
    report = _validate(validator, tmp_path, json.dumps(document), "json")
    paths = {d["path"] for d in _errors(report)}
    assert report["valid"] is False
    assert "operations/send_strategy_signal/action" in paths
    assert any(p.startswith("info") for p in paths)
