#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite:
# a virtual environment with the package and its dev tools, a running RabbitMQ,
# valgrind (for the instruction-count benchmark's smoke test),
# the style and type checks, then pytest (arguments are passed on to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bench,telemetry-test]'
bash scripts/ensure-rabbitmq.sh
bash scripts/ensure-tools.sh
bash scripts/ensure-valgrind.sh

echo "ruff check, ruff format --check, mypy --strict" >&2
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy --no-error-summary

exec .venv/bin/python -m pytest "$@"
