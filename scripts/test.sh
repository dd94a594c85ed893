#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite:
# a virtual environment with the package and its dev tools, a running RabbitMQ,
# then pytest (arguments are passed on to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
bash scripts/ensure-rabbitmq.sh
exec .venv/bin/python -m pytest "$@"
