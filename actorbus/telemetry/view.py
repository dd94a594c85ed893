"""The live view of running systems, on ``rich``: what ``actorbus top`` shows.

A :class:`SystemView` holds the last snapshot of each process it heard of and
renders them all (it is a rich renderable: hand it to ``rich.live.Live``). A
snapshot is a dict, the one a trading system's heartbeat carries::

    {"source": "host.1234", "state": "running", "elapsed": 12.5,
     "actors": msgspec.to_builtins(bus.stats().actors),  # per actor counters
     "tree": describe_tree(supervisor),               # optional: the supervisor tree
     "broker": broker_status(bus),                    # optional: node, outbox, ...
     "counts": {"ticks": 100, ...},                   # optional: the system's own counts
     "count_rates": {"ticks": 5000.0, ...},           # optional: those counts per second
     "positions": {"BTC/USDT": {"quantity": 3, ...}}} # optional: a book, with its P&L

Rates (messages per second per actor) come from two successive snapshots of a
process. Without a tree the actors are listed under their process; an actor
that reports ``role`` (``active`` / ``standby``) shows it. The counts show on a
line of their own under the process (with their rates when given), the
positions as a table with a P&L total: what ``actorbus run`` adds to the view
it shares with ``actorbus top``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

__all__ = ["SystemView"]

SILENT_AFTER = 3.0
"""Seconds without a snapshot after which a process is shown as silent."""

_STATE_STYLES = {
    "running": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "failed": "bold red",
    "new": "dim",
}


class _Process:
    """The last snapshot of one process and the rates since the one before."""

    __slots__ = ("rates", "received", "snapshot")

    def __init__(self, snapshot: dict[str, Any], received: float) -> None:
        self.snapshot = snapshot
        self.received = received
        self.rates: dict[str, float] = {}


class SystemView:
    """The processes of one system (or one process), rendered as trees of actor tables."""

    def __init__(self, title: str = "actorbus top", *, events: int = 5) -> None:
        self.title = title
        """Shown above everything."""
        self.footer = "q quits"
        """Shown below everything."""
        self._processes: dict[str, _Process] = {}
        self._events: deque[str] = deque(maxlen=events)

    @property
    def sources(self) -> list[str]:
        """The processes heard of, by source name."""
        return sorted(self._processes)

    def update(self, snapshot: dict[str, Any], now: float | None = None) -> None:
        """Take a process's new snapshot (keyed by its ``source``)."""
        now = time.monotonic() if now is None else now
        source = str(snapshot.get("source", "?"))
        before = self._processes.get(source)
        process = self._processes[source] = _Process(snapshot, now)
        if before is None:
            return
        span = now - before.received
        if span <= 0:
            process.rates = before.rates
            return
        old = before.snapshot.get("actors", {})
        for name, counters in snapshot.get("actors", {}).items():
            handled = counters.get("processed", 0) - old.get(name, {}).get("processed", 0)
            process.rates[name] = max(0.0, handled / span)

    def event(self, line: str) -> None:
        """Note an event (an actor restarted, a process stopped); the last few are shown."""
        self._events.append(f"{time.strftime('%H:%M:%S')}  {line}")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Render every process (called by rich)."""
        yield self.render()

    def render(self, now: float | None = None) -> Group:
        """Everything, as one rich renderable."""
        now = time.monotonic() if now is None else now
        root = Tree(Text(self.title, style="bold"), guide_style="dim")
        if not self._processes:
            root.add(Text("waiting for heartbeats...", style="dim"))
        for source in self.sources:
            process = self._processes[source]
            snapshot = process.snapshot
            node = root.add(_process_label(source, process, now))
            if snapshot.get("counts"):
                node.add(_counts_line(snapshot["counts"], snapshot.get("count_rates", {})))
            node.add(_actor_table(process))
            if snapshot.get("positions"):
                node.add(_positions_table(snapshot["positions"]))
        parts: list[Any] = [root]
        if self._events:
            parts.append(Text("\n".join(self._events), style="yellow"))
        parts.append(Text(self.footer, style="dim"))
        return Group(*parts)


def _process_label(source: str, process: _Process, now: float) -> Text:
    snapshot = process.snapshot
    state = str(snapshot.get("state", "?"))
    label = Text.assemble(
        (source, "bold cyan"),
        "  ",
        (state, _STATE_STYLES.get(state, "")),
        f"  up {snapshot.get('elapsed', 0):.0f}s",
    )
    broker = snapshot.get("broker")
    if broker:
        connected = broker.get("connected")
        mode, node = broker.get("mode", "?"), broker.get("node", "")
        label.append(f"  {mode} {node} " if node and node != mode else f"  {mode} ")
        label.append(
            "connected" if connected else "DISCONNECTED", "green" if connected else "bold red"
        )
        label.append(
            f"  reconnects {broker.get('reconnects', 0)}  outbox {broker.get('outbox', 0)}"
            f"  unconfirmed {broker.get('unconfirmed', 0)}"
        )
    silent = now - process.received
    if silent > SILENT_AFTER:
        label.append(f"  silent for {silent:.0f}s", "bold red")
    return label


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counts_line(counts: dict[str, Any], rates: dict[str, float]) -> Text:
    parts = []
    for key, value in counts.items():
        if not _is_int(value):
            continue
        rate = rates.get(key)
        parts.append(f"{key} {value:,}" + ("" if rate is None else f" ({rate:,.0f}/s)"))
    return Text("  ".join(parts))


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _positions_table(positions: dict[str, dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("position")
    for heading in ("qty", "avg price", "mark", "realised", "unrealised"):
        table.add_column(heading, justify="right")
    total = 0.0
    for symbol, p in positions.items():
        realised, unrealised = p.get("realised_pnl", 0.0), p.get("unrealised_pnl", 0.0)
        total += realised + unrealised
        table.add_row(
            symbol,
            f"{p.get('quantity', 0):,}",
            _money(p.get("avg_price", 0.0)),
            _money(p.get("mark", 0.0)),
            _pnl(realised),
            _pnl(unrealised),
        )
    table.add_row("", "", "", "", Text("P&L total", "bold"), _pnl(total))
    return table


def _pnl(value: float) -> Text:
    return Text(_money(value), "green" if value > 0 else "red" if value < 0 else "")


def _actor_table(process: _Process) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("actor")
    table.add_column("state")
    table.add_column("role")
    for heading in ("msg/s", "handled", "mailbox", "busy", "failed", "retried", "dead", "restarts"):
        table.add_column(heading, justify="right")
    actors: dict[str, dict[str, Any]] = process.snapshot.get("actors", {})
    listed: set[str] = set()
    tree = process.snapshot.get("tree")
    if tree:
        _add_tree_rows(table, tree, 0, actors, process.rates, listed)
    for name in sorted(set(actors) - listed):
        _add_actor_row(table, name, 0, actors[name], process.rates.get(name))
    return table


def _add_tree_rows(
    table: Table,
    node: dict[str, Any],
    depth: int,
    actors: dict[str, dict[str, Any]],
    rates: dict[str, float],
    listed: set[str],
) -> None:
    state = str(node.get("state", ""))
    table.add_row(
        Text("  " * depth + f"{node.get('supervisor', '?')} ({node.get('strategy', '')})", "bold"),
        Text(state, _STATE_STYLES.get(state, "")),
    )
    for child in node.get("children", []):
        if "supervisor" in child:
            _add_tree_rows(table, child, depth + 1, actors, rates, listed)
            continue
        name = str(child.get("actor", "?"))
        counters = actors.get(name)
        if counters is None:
            table.add_row(Text("  " * (depth + 1) + name, "dim"), Text("elsewhere", "dim"))
            continue
        listed.add(name)
        _add_actor_row(table, name, depth + 1, counters, rates.get(name))


def _add_actor_row(
    table: Table, name: str, depth: int, counters: dict[str, Any], rate: float | None
) -> None:
    state = str(counters.get("state", "?"))
    dead = counters.get("dead_lettered", 0)
    failed = counters.get("failed", 0)
    table.add_row(
        "  " * depth + name,
        Text(state, _STATE_STYLES.get(state, "")),
        str(counters.get("role") or "-"),
        "-" if rate is None else f"{rate:,.0f}",
        f"{counters.get('processed', 0):,}",
        f"{counters.get('mailbox', 0):,}",
        "yes" if counters.get("busy") else "",
        Text(f"{failed:,}", "red" if failed else ""),
        f"{counters.get('retried', 0):,}",
        Text(f"{dead:,}", "red" if dead else ""),
        f"{counters.get('restarts', 0):,}",
    )
