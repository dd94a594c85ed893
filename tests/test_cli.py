"""The ``actorbus`` command: help, the demo end to end, bad input, exit codes, Ctrl-C."""

from __future__ import annotations

import argparse
import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trading_helpers import ROOT, actorbus_command, cli_env, run_cli, run_json

from actorbus.cli import build_parser, main
from actorbus_trading import audit
from actorbus_trading.view import LiveView

UNREACHABLE = "amqp://guest:s3cret@127.0.0.1:1/"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "stats", "dlq"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: actorbus" in capsys.readouterr().out


def test_the_console_script_answers_help() -> None:
    done = run_cli("run", "--help")
    assert done.returncode == 0
    for option in (
        "--mode",
        "--duration",
        "--symbols",
        "--feed",
        "--seed",
        "--only",
        "--chaos",
        "--json",
    ):
        assert option in done.stdout


def test_demo_run_produces_a_consistent_book() -> None:
    report = run_json("--duration", "5", "--seed", "1")
    assert report["exit_code"] == 0
    assert report["problems"] == []
    assert report["mode"] == "in_memory"
    assert report["ended_by"] == "duration"
    counts = report["counts"]
    assert counts["ticks"] > 0
    assert counts["signals"] > 0
    assert counts["orders"] > 0
    assert counts["fills"] == len(report["booked_fills"]) > 0
    assert report["throughput"]["ticks_per_second"] > 0
    assert audit([report]) == []  # the audit holds on the printed report too


def test_demo_run_under_chaos_restarts_dead_letters_and_stays_consistent() -> None:
    report = run_json("--duration", "3", "--seed", "1", "--chaos", "0.05")
    assert report["exit_code"] == 0, report["problems"]
    assert report["problems"] == []
    assert report["chaos"]["crashes"] > 0
    assert sum(a["restarts"] for a in report["actors"].values()) > 0
    assert report["dead_letters"]["dead_lettered"] > 0
    assert report["dead_letters"]["remaining"] == 0


def test_csv_feed_replays_the_file_and_ends_the_run() -> None:
    path = str(ROOT / "examples" / "data" / "ticks.csv")
    report = run_json("--feed", "csv", path)
    assert report["exit_code"] == 0
    assert report["ended_by"] == "feed ended"
    assert report["counts"]["ticks"] == 1200
    assert report["problems"] == []
    first_20s = run_json("--feed", "csv", path, "--duration", "20")  # of the file's own time
    assert first_20s["ended_by"] == "duration"
    assert 0 < first_20s["counts"]["ticks"] < 1200


def test_symbols_and_flatten() -> None:
    report = run_json("--duration", "1.5", "--symbols", "ETH/USDT", "--flatten", "--rate", "3000")
    assert report["exit_code"] == 0
    assert set(report["positions"]) <= {"ETH/USDT"}
    assert report["published"]["position.close"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--only", "risk,nosuch"], "unknown actor(s) nosuch"),
        (["run", "--feed", "csv", "no/such/file.csv"], "cannot read"),
        (["run", "--feed", "zmq"], "--feed takes"),
        (["run", "--chaos", "2"], "--chaos is a probability"),
        (["run", "--duration", "0"], "--duration: must be positive"),
        (["run", "--mode", "carrier-pigeon"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_a_reason(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.parametrize("args", [["run"], ["stats"], ["dlq", "list"]])
def test_an_unreachable_broker_exits_3_with_advice(args: list[str]) -> None:
    done = run_cli(*args, "--mode", "rabbitmq", "--url", UNREACHABLE)
    assert done.returncode == 3
    assert "cannot reach RabbitMQ at amqp://***@127.0.0.1:1/" in done.stderr
    assert "s3cret" not in done.stderr
    assert "--mode in_memory" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.rabbitmq
def test_refused_credentials_exit_3_without_falling_back(rabbitmq_url: str) -> None:
    url = rabbitmq_url.replace("guest:guest@", "guest:s3cret-wrong@")
    done = run_cli("stats", "--mode", "rabbitmq", "--url", url)
    assert done.returncode == 3
    assert "refused the login of user 'guest'" in done.stderr
    assert "s3cret-wrong" not in done.stderr
    assert "Traceback" not in done.stderr


def test_dlq_and_stats_in_memory_explain_themselves() -> None:
    for command in (["dlq", "list", "--json"], ["dlq", "replay", "--actor", "risk"], ["stats"]):
        done = run_cli(*command, "--mode", "in_memory")
        assert done.returncode == 2
        assert "in memory, nothing outlives a process" in done.stderr
        assert "--mode rabbitmq" in done.stderr


def test_ctrl_c_winds_down_cleanly_and_still_summarises() -> None:
    process = subprocess.Popen(
        actorbus_command("run", "--duration", "60", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=ROOT,
    )
    assert process.stderr is not None
    try:
        line = process.stderr.readline()  # the first progress line: the system runs
        assert "ticks" in line, line
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert time.monotonic() - started < 20
    report = json.loads(out)
    assert report["ended_by"] == "interrupted"
    assert report["problems"] == []
    assert "Traceback" not in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _numbers(elapsed: float, ticks: int) -> dict[str, object]:
    return {
        "elapsed": elapsed,
        "counts": {"ticks": ticks, "signals": 1, "orders": 1, "fills": 1, "breaches": 0},
        "positions": {
            "X": {"quantity": 3, "avg_price": 10.0, "mark": 11.0,
                  "realised_pnl": 1.0, "unrealised_pnl": 3.0}
        },
        "actors": {
            "risk": {"state": "running", "processed": 5, "failed": 0, "retried": 0,
                     "dead_lettered": 0, "restarts": 1, "mailbox": 0, "conflated": 2}
        },
        "state": "running",
    }  # fmt: skip


def test_live_view_is_the_top_view_on_a_terminal_and_logs_lines_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # a wide terminal: no column cut short
    args = argparse.Namespace(duration=10.0, seed=1, chaos=0.0)
    terminal = _Terminal()
    view = LiveView(terminal, args, "in_memory", source="desk.7")
    assert view.live
    view(_numbers(0.5, 100))
    view(_numbers(1.0, 600))
    view.close()
    drawn = terminal.getvalue()
    assert "\x1b[" in drawn  # rich's live display: the frame is redrawn in place
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)  # the text without its styles
    assert "actorbus run · in_memory · 1.0s of 10s · seed 1" in drawn
    assert "desk.7  running" in drawn
    assert "ticks 600 (1,000/s)" in drawn
    assert re.search(r"risk\s+running\s+-\s+\d+\s+5\b", drawn)
    assert "P&L total" in drawn
    plain = io.StringIO()
    lines = LiveView(plain, args, "in_memory")
    assert not lines.live
    lines(_numbers(1.0, 100))
    lines(_numbers(2.0, 300))
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue().count("\n") == 2


def test_live_view_logs_lines_on_a_terminal_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("rich", "rich.console", "rich.live", "actorbus.telemetry.view"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    args = argparse.Namespace(duration=None, seed=1, chaos=0.0)
    terminal = _Terminal()
    view = LiveView(terminal, args, "in_memory")
    assert not view.live
    view(_numbers(1.0, 100))
    view(_numbers(2.0, 300))
    view.close()
    assert "\x1b" not in terminal.getvalue()
    assert terminal.getvalue().splitlines()[-1].startswith("[  2.0s] ticks 300 (200/s)")


def test_parser_defaults_match_the_readme() -> None:
    args = build_parser().parse_args(["run"])
    assert args.duration is None  # 10 s of feed time simulated, a whole CSV file replayed
    assert args.seed == 1
    assert args.feed == ["simulated"]
    assert args.mode is None  # the environment variable, else in memory
    assert Path(ROOT / "examples" / "data" / "ticks.csv").exists()


def test_only_in_memory_warns_that_the_rest_needs_rabbitmq() -> None:
    done = run_cli(
        "run", "--only", "market_data,strategy", "--duration", "0.5", "--json", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert "--mode rabbitmq" in done.stderr
    report = json.loads(done.stdout)
    assert report["placed"] == ["market_data", "strategy"]
    assert report["counts"]["ticks"] > 0
