"""``actorbus run`` in a real terminal (tmux): ``actorbus top``'s live view, then the summary."""

from __future__ import annotations

import re

from support.terminal import Terminal
from trading_helpers import ROOT, actorbus_command, cli_env


def test_run_shows_the_tree_actors_and_positions_live_then_the_summary() -> None:
    terminal = Terminal(
        actorbus_command("run", "--duration", "120", "--rate", "500", "--seed", "3"),
        cwd=ROOT,
        env=cli_env(),
    )
    try:
        terminal.wait_for(r"actorbus run · in_memory · [\d.]+s of 120s · seed 3")
        # The process with its broker link, as actorbus top shows it.
        terminal.wait_for(r"\w[\w.-]*\.\d+\s+running\s+up \d+s\s+in_memory connected")
        # The demo's counts with their rates, and positions with the book's P&L.
        terminal.wait_for(r"ticks [1-9][\d,]* \([\d,]+/s\)\s+signals [\d,]+ \([\d,]+/s\)")
        terminal.wait_for(r"position\s+qty\s+avg price\s+mark\s+realised\s+unrealised")
        terminal.wait_for(r"(BTC|ETH|SOL)/USDT\s+-?[\d,]+\s+[\d,]+\.\d\d")
        terminal.wait_for(r"P&L total\s+-?[\d,]+\.\d\d")
        # A later frame: every actor with its rate (from two frames) and its counters.
        later = r"(?s)up [1-9]\d*s.*strategy\s+running\s+-\s+[\d,]+\s+[1-9]"
        screen = terminal.wait_for(later).string
        for supervisor in ("trading", "book", "market"):
            assert re.search(rf"{supervisor} \(one_for_one\)\s+running", screen), screen
        for actor in ("market_data", "strategy", "risk", "execution", "exchange", "position"):
            role = "active" if actor in ("execution", "position") else "-"  # single_active
            assert re.search(rf"{actor}\s+running\s+{role}\s+[\d,]+\s+[\d,]+", screen), screen
        assert "Ctrl-C stops and winds down cleanly" in screen
        terminal.press("C-c")
        # The first Ctrl-C winds down as before: the last frame stays, the summary follows.
        terminal.wait_for(r"exited 130", timeout=60)
        everything = terminal.screen(history=True)
        assert "actorbus: stopping (Ctrl-C again to cut the wind-down short)..." in everything
        assert re.search(r"ended after [\d.]+s", everything), everything
        summary = everything[everything.index("\nSummary (in_memory") :]
        assert "ended by interrupted" in summary
        assert "audit       OK: book and message counts consistent" in summary
        assert everything.index("P&L total") < everything.index("\nSummary (in_memory")
    finally:
        terminal.close()
