"""``actorbus run`` hardened: wind-down, bad prices, flattening, checked options, one book."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
from trading_helpers import ROOT, actorbus_command, cli_env, run_cli, run_json

from actorbus import AsyncMessageBus, ChildSpec, MessageTypes
from actorbus.brokers.memory import InMemoryServer
from actorbus_trading import Environment, TradingConfig, TradingSystem, run_trading_system
from actorbus_trading.exchange import ExchangeParams
from actorbus_trading.feeds import FeedError
from actorbus_trading.risk import RiskActor, RiskState
from actorbus_trading.schemas import Tick
from actorbus_trading.view import LiveView, print_summary

TICKS = ROOT / "examples" / "data" / "ticks.csv"


def book(report: dict[str, Any]) -> dict[str, Any]:
    """A run's book without message ids (those are random): orders, fills, positions, P&L."""
    return {
        "orders": [
            (o["origin"], o["symbol"], o["side"], o["quantity"], o["state"], o["filled"],
             o["avg_price"], o["history"], [(q, p) for _, q, p in o["fills"]])
            for o in report["orders"]["list"]
        ],
        "positions": report["positions"],
        "pnl": report["pnl"],
        "risk": report["risk"],
        "counts": report["counts"],
    }  # fmt: skip


# -- 6: same input and seed, same book -----------------------------------------------------


def test_the_same_csv_file_gives_the_same_book_three_times() -> None:
    books = [book(run_json("--feed", "csv", str(TICKS))) for _ in range(3)]
    assert books[0]["counts"]["fills"] > 0
    assert books[0] == books[1] == books[2]


def test_the_simulated_feed_unpaced_gives_the_same_book_twice() -> None:
    runs = [run_json("--rate", "0", "--duration", "1", "--seed", "3") for _ in range(2)]
    assert runs[0]["ended_by"] == "duration"
    assert runs[0]["counts"]["ticks"] == 100_000  # one second of feed time, 10 us a tick
    assert book(runs[0]) == book(runs[1])
    assert runs[0]["counts"]["fills"] > 0


# -- 1: a bounded, interruptible wind-down whose counts balance ----------------------------


def test_chaos_winds_down_settled_and_its_dead_letters_add_up() -> None:
    report = run_json("--duration", "3", "--seed", "2", "--chaos", "0.05")
    assert report["exit_code"] == 0, report["problems"]
    assert report["drained"] is True
    dead = report["dead_letters"]
    assert report["chaos"]["crashes"] > 0
    assert dead["dead_lettered"] == (
        dead["replayed_by_supervisors"] + dead["replayed_at_end"] + dead["remaining"]
    )


@pytest.mark.anyio
async def test_a_wind_down_that_does_not_settle_is_not_ok(server: InMemoryServer) -> None:
    system = TradingSystem(TradingConfig(duration=0.2, rate=2000, chaos=0.05))
    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        report = await run_trading_system(bus, system, duration=0.2, wind_down=0.0)
    assert report["drained"] is False
    assert any(p.startswith("not settled") for p in report["problems"])
    out = io.StringIO()
    print_summary(report, out)
    assert "audit       not settled" in out.getvalue()
    assert "OK" not in out.getvalue().split("audit")[-1]


@pytest.mark.anyio
async def test_abort_cuts_the_wind_down_short_with_a_report(server: InMemoryServer) -> None:
    system = TradingSystem(TradingConfig(duration=0.3, rate=2000))
    abort = asyncio.Event()
    abort.set()
    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        report = await run_trading_system(bus, system, duration=0.3, abort=abort)
    assert report["interrupted_wind_down"] is True
    assert report["drained"] is False
    assert report["counts"]["ticks"] > 0


def test_ctrl_c_twice_ends_the_wind_down_with_a_summary_and_130() -> None:
    process = subprocess.Popen(
        actorbus_command("run", "--duration", "60", "--chaos", "0.05", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=ROOT,
    )
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        assert "ticks" in line, line
        process.send_signal(signal.SIGINT)
        while "stopping" not in line:  # the first Ctrl-C is taken: the wind-down runs
            line = process.stderr.readline()
            assert line, "the run ended before its wind-down"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    report = json.loads(out)
    assert report["ended_by"] == "interrupted"
    assert report["interrupted_wind_down"] is True
    assert "cutting the wind-down short" in err
    assert report["problems"][0].startswith("not settled")


# -- 2, 4: bad prices and bad files are refused where they enter ---------------------------


@pytest.mark.parametrize("price", ["nan", "inf", "1e300", "-5", "abc"])
def test_a_bad_csv_price_is_refused_before_the_start(tmp_path: Path, price: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,symbol,price\n1,BTC/USDT,50000\n2,BTC/USDT," + price + "\n3,BTC/USDT,50001\n"
    )
    done = run_cli("run", "--feed", "csv", str(path), "--quiet")
    assert done.returncode == 2, done.stdout
    assert f"{path}, line 3" in done.stderr
    assert "price" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "symbols", "message"),
    [
        (b"timestamp,symbol,price\n", None, "no data rows"),
        (b"timestamp,symbol,price\n1,BTC/USDT,50000\n", "SOL/USDT", "no rows of SOL/USDT"),
        (b"\xff\xfe\x00binary\x00\xff", None, "not UTF-8"),
    ],
)
def test_an_empty_foreign_or_binary_csv_is_refused(
    tmp_path: Path, content: bytes, symbols: str | None, message: str
) -> None:
    path = tmp_path / "feed.csv"
    path.write_bytes(content)
    extra = ["--symbols", symbols] if symbols else []
    done = run_cli("run", "--feed", "csv", str(path), *extra, "--quiet")
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert str(path) in done.stderr
    assert "--only" not in done.stderr


def test_a_bad_price_in_a_message_is_never_made() -> None:
    with pytest.raises(ValueError, match="not a price"):
        Tick(symbol="X", price=float("nan"), bid=1.0, ask=1.0)
    with pytest.raises(msgspec.ValidationError, match="not a price"):
        msgspec.convert({"symbol": "X", "price": 1e300, "bid": 1.0, "ask": 1.0}, Tick)


@pytest.mark.anyio
async def test_a_bad_price_in_a_message_is_dead_lettered_with_the_reason(
    bus: AsyncMessageBus,
) -> None:
    state = RiskState()
    env = Environment()
    await bus.spawn(ChildSpec(RiskActor, factory=lambda: RiskActor(env, state)))
    bad = {"symbol": "X", "side": "buy", "quantity": 1, "price": float("inf")}
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, bad)  # no schemas registered: a plain dict
    letters: list[Any] = []

    async def dead_lettered() -> None:
        letters[:] = await bus.dead_letters(actor="risk")

    async def poll() -> None:
        while not letters:
            await dead_lettered()
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout=10)
    assert "not a price" in letters[0].reason
    assert not state.decided  # never traded


# -- 3: flattening retries until flat, or says loudly what is open -------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("reject_rate", "seed"), [(0.5, 5), (0.9, 2)])
async def test_flatten_sends_closes_again_until_flat_or_fails_loudly(
    server: InMemoryServer, reject_rate: float, seed: int
) -> None:
    config = TradingConfig(
        symbols=(),
        csv_path=str(TICKS),
        duration=None,
        exchange=ExchangeParams(reject_rate=reject_rate, seed=seed),
    )
    system = TradingSystem(config)
    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        report = await run_trading_system(bus, system, duration=None, flatten=True)
    closes = [o for o in report["orders"]["list"] if o["origin"] == "close"]
    if reject_rate == 0.9:  # with this seed, every one of the ten closes is rejected
        assert len(closes) == 10
        assert report["flattened"] is False
        assert any(p.startswith("still open after --flatten") for p in report["problems"])
        return
    assert any(o["state"] == "rejected" for o in closes)  # a close was refused ...
    assert report["flattened"] is True  # ... and sent again until flat
    assert all(p["quantity"] == 0 for p in report["positions"].values())
    assert report["problems"] == []


# -- 5: unchecked values are refused --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--duration", "nan"], "--duration"),
        (["run", "--duration", "inf"], "--duration"),
        (["run", "--rate", "nan"], "--rate"),
        (["run", "--chaos", "nan"], "--chaos"),
        (["run", "--only", ","], "--only needs at least one actor"),
        (["run", "--symbols", ""], "--symbols needs at least one symbol"),
        (["run", "--symbols", "DOGE/USDT"], "no start price for DOGE/USDT"),
        (["run", "--symbols", "DOGE/USDT=nan"], "not a price"),
        (["dlq", "list", "--limit", "-1"], "--limit"),
        (["stats", "--wait", "-1"], "--wait"),
    ],
)
def test_unchecked_values_are_refused_with_2(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_symbol_with_a_start_price_is_simulated() -> None:
    report = run_json("--symbols", "DOGE/USDT=0.15", "--duration", "1", "--rate", "2000")
    assert report["exit_code"] == 0, report["problems"]
    assert report["last_quotes"]["DOGE/USDT"] == pytest.approx(0.15, rel=0.05)


# -- 7, 8, 11: refusals shown, one count per thing, live lines ------------------------------


def test_the_default_sizes_trade_and_refuse_for_named_reasons() -> None:
    report = run_json("--duration", "4")
    assert report["exit_code"] == 0
    risk = report["risk"]
    assert risk["approved"] > sum(risk["breaches"].values())  # it trades more than it refuses
    assert report["counts"]["ticks"] == report["throughput"]["ticks"]
    done = run_cli("run", "--duration", "4")
    assert "refused" in done.stdout or not risk["breaches"]


def test_a_short_run_prints_a_live_line_with_the_true_rate() -> None:
    done = run_cli("run", "--duration", "0.5", "--rate", "2000")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert lines, done.stderr
    assert "ticks 1,000 (2,0" in lines[-1] or "ticks 1,000 (1,9" in lines[-1], lines[-1]


def test_the_last_live_line_divides_by_the_feed_time() -> None:
    out = io.StringIO()
    view = LiveView(out, argparse_namespace(), "in_memory")
    numbers = {
        "elapsed": 9.0, "counts": {"ticks": 4000, "signals": 0, "orders": 0, "fills": 0,
        "breaches": 0}, "positions": {}, "actors": {}, "state": "running",
        "final": True, "feed_seconds": 2.0,
    }  # fmt: skip
    view(numbers)
    assert "ticks 4,000 (2,000/s)" in out.getvalue()


def argparse_namespace() -> Any:
    import argparse

    return argparse.Namespace(duration=10.0, seed=1, chaos=0.0)


def test_the_message_line_says_when_it_does_not_add_up() -> None:
    report = run_json("--duration", "1", "--rate", "1000")
    report["accounting"]["handled"] += 7
    out = io.StringIO()
    print_summary(report, out)
    line = next(line for line in out.getvalue().splitlines() if "delivered" in line)
    assert " != " in line
    assert line.endswith(
        f"= {report['accounting']['handled'] + report['accounting']['conflated']:,}"
    )


class _FailingFeed:
    """Three good ticks, then a feed that breaks (a file changed under the replay)."""

    def __init__(self) -> None:
        self.sent = 0

    def next_tick(self) -> Tick | None:
        self.sent += 1
        if self.sent > 3:
            raise FeedError("line 5: price 'abc' is not a number")
        price = 100.0 + self.sent
        return Tick(symbol="X", price=price, bid=price, ask=price, seq=self.sent, ts=self.sent)


@pytest.mark.anyio
async def test_a_feed_that_fails_fails_the_run_and_the_summary_says_so(
    server: InMemoryServer,
) -> None:
    system = TradingSystem(TradingConfig(symbols=("X",), duration=None), feed=_FailingFeed())
    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        report = await run_trading_system(bus, system, duration=None)
    assert report["ended_by"] == "feed failed"
    assert any(p.startswith("feed failed: line 5") for p in report["problems"])
    out = io.StringIO()
    print_summary(report, out)
    assert "AUDIT FAILED" in out.getvalue()
    assert "audit       OK" not in out.getvalue()
