"""The audit of a finished run: a consistent book, and every message accounted for.

:func:`audit` takes the reports of every process of a run (one report in a
single-process run; one per process when the tree was split with ``--only``)
and returns the problems it finds, an empty list meaning all is well:

- **orders**: every order's history follows the state machine, and its state
  agrees with its quantities (filled orders fully filled, rejected ones not at
  all, ...); no order is left working once the run has drained.
- **fills**: every fill execution recorded is booked in positions exactly once,
  with the same quantity and price, and nothing else is booked.
- **positions**: each symbol's quantity is the sum of its signed fills, and
  ``realised + unrealised == cash + quantity * mark`` (average-cost P&L
  arithmetic, checked against plain cash flows).
- **messages**: for each actor, the messages published to the types it handles
  equal those it handled, plus those conflated away (replaced by a newer tick),
  plus those still in the dead-letter queue: nothing lost, nothing invented.
  Messages that were waiting for an actor before the run (in its queue, or in
  the dead-letter queue: ``carried_over``) count as published to it.

A report is the dict built by ``actorbus run`` (``--json`` prints it): the
system's ``snapshot()`` plus ``actors`` (the bus's per-actor counters) and
``dead_letters.by_actor``.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .execution import TRANSITIONS, OrderState
from .system import ACTOR_CLASSES

__all__ = ["audit", "merge_published"]

TOLERANCE = 1e-6


def merge_published(reports: Sequence[dict[str, Any]]) -> Counter[str]:
    """Messages published per type, summed over the processes of a run."""
    total: Counter[str] = Counter()
    for report in reports:
        total.update(report.get("published", {}))
    return total


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE * max(1.0, abs(a), abs(b)))


def _audit_orders(orders: list[dict[str, Any]], problems: list[str]) -> dict[str, tuple[Any, ...]]:
    fills: dict[str, tuple[Any, ...]] = {}
    for order in orders:
        oid = order["order_id"]
        history = [OrderState(state) for state in order["history"]]
        if history[0] is not OrderState.NEW:
            problems.append(f"order {oid}: starts in {history[0]}, not new")
        for before, after in itertools.pairwise(history):
            if after not in TRANSITIONS[before]:
                problems.append(f"order {oid}: impossible move {before} -> {after}")
        state = OrderState(order["state"])
        if state is not history[-1]:
            problems.append(f"order {oid}: state {state} but history ends in {history[-1]}")
        quantity, filled = order["quantity"], order["filled"]
        fill_total = sum(quantity for _, quantity, _ in order["fills"])
        if fill_total != filled:
            problems.append(f"order {oid}: fills add up to {fill_total}, filled says {filled}")
        expected_ok = {
            OrderState.NEW: filled == 0,
            OrderState.ACKNOWLEDGED: filled == 0,
            OrderState.PARTIALLY_FILLED: 0 < filled < quantity,
            OrderState.FILLED: filled == quantity,
            OrderState.CANCELLED: filled < quantity,
            OrderState.REJECTED: filled == 0,
        }[state]
        if not expected_ok:
            problems.append(f"order {oid}: {state} with {filled} of {quantity} filled")
        if not state.terminal:
            problems.append(f"order {oid}: still {state} after the run drained")
        if filled:
            vwap = sum(q * p for _, q, p in order["fills"]) / filled
            if not _close(vwap, order["avg_price"]):
                problems.append(f"order {oid}: avg price {order['avg_price']} != fills' {vwap}")
        for exec_id, fill_quantity, price in order["fills"]:
            fills[exec_id] = (order["symbol"], order["side"], fill_quantity, price)
    return fills


def _audit_positions(report: dict[str, Any], problems: list[str]) -> dict[str, tuple[Any, ...]]:
    booked: dict[str, tuple[Any, ...]] = {}
    net: Counter[str] = Counter()
    cash: Counter[str] = Counter()
    for exec_id, symbol, side, quantity, price in report.get("booked_fills", []):
        if exec_id in booked:
            problems.append(f"fill {exec_id} booked twice")
        booked[exec_id] = (symbol, side, quantity, price)
        signed = quantity if side == "buy" else -quantity
        net[symbol] += signed
        cash[symbol] -= signed * price
    positions = report.get("positions", {})
    for symbol in set(net) | set(positions):
        position = positions.get(symbol)
        if position is None:
            if net[symbol]:
                problems.append(f"{symbol}: fills net {net[symbol]} but no position")
            continue
        if position["quantity"] != net[symbol]:
            problems.append(
                f"{symbol}: position {position['quantity']} but fills net {net[symbol]}"
            )
        if not _close(position["cash"], cash[symbol]):
            problems.append(f"{symbol}: cash {position['cash']} but fills say {cash[symbol]}")
        total = position["realised_pnl"] + position["unrealised_pnl"]
        expected = cash[symbol] + position["quantity"] * position["mark"]
        if not _close(total, expected):
            problems.append(
                f"{symbol}: realised + unrealised = {total:.6f} but cash + quantity * mark "
                f"= {expected:.6f}"
            )
    return booked


def _audit_messages(reports: Sequence[dict[str, Any]], problems: list[str]) -> None:
    published = merge_published(reports)
    for report in reports:
        stats = report.get("actors", {})
        in_dlq = report.get("dead_letters", {}).get("by_actor", {})
        carried = report.get("carried_over", {})
        for name in report.get("placed", []):
            counters = stats.get(name)
            if counters is None:
                problems.append(f"{name}: no counters reported")
                continue
            expected = sum(published[t] for t in ACTOR_CLASSES[name].handled_types())
            expected += carried.get(name, 0)
            accounted = counters["processed"] + counters["conflated"] + in_dlq.get(name, 0)
            if accounted != expected:
                waiting = f" ({carried[name]} waiting from before)" if carried.get(name) else ""
                problems.append(
                    f"{name}: {expected} message(s) published to it{waiting}, but "
                    f"{counters['processed']} "
                    f"handled + {counters['conflated']} conflated + {in_dlq.get(name, 0)} "
                    f"dead-lettered = {accounted}"
                )


def audit(reports: Sequence[dict[str, Any]], *, messages: bool = True) -> list[str]:
    """Check the reports of one run; return the problems found (none: consistent).

    ``messages=False`` skips the message accounting: a single process of a split
    run cannot do it alone (what it handled, others published).
    """
    problems: list[str] = []
    executed: dict[str, tuple[Any, ...]] = {}
    booked: dict[str, tuple[Any, ...]] = {}
    has_execution = has_position = False
    for report in reports:
        if "orders" in report:
            has_execution = True
            executed.update(_audit_orders(report["orders"]["list"], problems))
        if "positions" in report:
            has_position = True
            booked.update(_audit_positions(report, problems))
    if has_execution and has_position:
        for exec_id in executed.keys() - booked.keys():
            problems.append(f"fill {exec_id} executed but not in positions")
        for exec_id in booked.keys() - executed.keys():
            problems.append(f"fill {exec_id} in positions but never executed")
        for exec_id in executed.keys() & booked.keys():
            if executed[exec_id] != booked[exec_id]:
                problems.append(
                    f"fill {exec_id}: executed {executed[exec_id]}, booked {booked[exec_id]}"
                )
    if messages:
        _audit_messages(reports, problems)
    return problems
