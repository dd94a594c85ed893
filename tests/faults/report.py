"""Print the reliability table from the rows the fault suite recorded.

Run the suite, then this script::

    ACTORBUS_FAULT_REPORT_DIR=/tmp/faults .venv/bin/python -m pytest -m faults
    ACTORBUS_FAULT_REPORT_DIR=/tmp/faults .venv/bin/python tests/faults/report.py

Each scenario writes one JSON row (see ``tests/support/checker.py``); this
prints the numbered scenarios' rows (the fault suite's, then the cluster
suite's ``C1.``-``C6.``) as a Markdown table, in scenario order,
ready for the README (``--all`` adds rows other tests recorded).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.checker import report_dir

SCENARIO = re.compile(r"(C?)(\d+)\.")
"""A numbered scenario: ``4. ...`` (fault suite) or ``C4. ...`` (cluster suite, after them)."""


def _order(row: dict[str, object]) -> tuple[int, int, str]:
    match = SCENARIO.match(str(row["scenario"]))
    if match is None:
        return (2, 0, str(row["scenario"]))
    return (1 if match.group(1) else 0, int(match.group(2)), str(row["scenario"]))


def _recovery(value: object) -> str:
    if value is None:
        return "-"
    seconds = float(value)  # type: ignore[arg-type]
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(directory: Path, *, numbered_only: bool = True) -> str:
    """The Markdown table of the rows in ``directory``.

    ``numbered_only`` keeps the issue's numbered scenarios; other tests may record
    rows of their own in the same directory (``--all`` prints those too).
    """
    rows = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    if numbered_only:
        rows = [row for row in rows if SCENARIO.match(str(row["scenario"]))]
    rows.sort(key=_order)
    lines = [
        "| scenario | messages | lost | duplicates | recovery time | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['messages']} | {row['lost']} | {row['duplicates']} "
            f"| {_recovery(row['recovery_s'])} | {row.get('note', '')} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Print the table; fail when no scenario has recorded a row yet."""
    args = sys.argv[1:]
    everything = "--all" in args
    paths = [a for a in args if a != "--all"]
    directory = Path(paths[0]) if paths else report_dir()
    if not any(directory.glob("*.json")):
        print(f"no scenario rows in {directory}: run the fault suite first", file=sys.stderr)
        return 1
    print(table(directory, numbered_only=not everything))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
