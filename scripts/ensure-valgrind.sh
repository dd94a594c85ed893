#!/usr/bin/env bash
# Make sure valgrind is installed: `python -m benchmarks --instructions` counts
# instructions per message with its callgrind tool, and a smoke test runs it.
set -euo pipefail

if command -v valgrind >/dev/null 2>&1; then
  exit 0
fi
echo "valgrind is not installed: installing it from the OS packages" >&2
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
