"""``python -m benchmarks``: run the fixed benchmark set and print the table.

Options: ``--json`` prints the report as JSON instead; ``--quick`` runs every
scenario once at a tiny size (a smoke run: its figures mean nothing);
``--repeats N`` sets how many times each scenario runs (default 5);
``--only WORD`` keeps the scenarios whose name contains WORD (repeatable);
``--no-rabbitmq`` leaves out everything that needs the broker on 127.0.0.1:5672.
"""

from __future__ import annotations

import argparse
import sys

from .harness import dump_json, format_table, log, run_all
from .scenarios import scenarios


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print; return the exit status (1 when a scenario failed)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="runs per scenario (5)")
    parser.add_argument(
        "--only", action="append", default=[], help="keep scenarios whose name contains this"
    )
    parser.add_argument("--no-rabbitmq", action="store_true", help="skip the RabbitMQ scenarios")
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")
    options = parser.parse_args(argv)
    selected = scenarios(rabbitmq=not options.no_rabbitmq)
    if options.only:
        keep = {
            scenario.baseline
            for scenario in selected
            if any(word in scenario.name for word in options.only)
        }
        selected = [
            scenario
            for scenario in selected
            if any(word in scenario.name for word in options.only) or scenario.name in keep
        ]
    repeats = options.repeats or (1 if options.quick else 5)
    report = run_all(
        selected, repeats=repeats, quick=options.quick, progress=None if options.quiet else log
    )
    print(dump_json(report) if options.json else format_table(report))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
