"""``python -m benchmarks``: run the fixed benchmark set and print the table.

Options: ``--json`` prints the report as JSON instead; ``--quick`` runs every
scenario once at a tiny size (a smoke run: its figures mean nothing);
``--repeats N`` sets how many times each scenario runs (default 5);
``--only WORD`` keeps the scenarios whose name contains WORD (repeatable);
``--no-rabbitmq`` leaves out everything that needs the broker on 127.0.0.1:5672;
``--instructions`` counts CPU instructions per message of the in-process paths
under valgrind's callgrind instead of timing (see :mod:`benchmarks.instructions`).
"""

from __future__ import annotations

import argparse
import sys

from .harness import dump_json, format_table, log, run_all
from .instructions import instruction_scenarios, valgrind_missing
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
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message under valgrind (callgrind) instead of timing",
    )
    options = parser.parse_args(argv)
    if options.instructions:
        missing = valgrind_missing()
        if missing is not None:
            print(f"python -m benchmarks --instructions: {missing}", file=sys.stderr)
            return 2
        selected = instruction_scenarios(quick=options.quick)
    else:
        selected = scenarios(rabbitmq=not options.no_rabbitmq)
    if options.only:
        keep = {
            reference
            for scenario in selected
            if any(word in scenario.name for word in options.only)
            for reference in (scenario.baseline, scenario.ceiling)
        }
        selected = [
            scenario
            for scenario in selected
            if any(word in scenario.name for word in options.only) or scenario.name in keep
        ]
    # Instruction counts repeat to within a few parts per million: one run is enough.
    repeats = options.repeats or (1 if options.quick or options.instructions else 5)
    report = run_all(
        selected, repeats=repeats, quick=options.quick, progress=None if options.quiet else log
    )
    print(dump_json(report) if options.json else format_table(report))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
