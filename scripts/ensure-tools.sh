#!/usr/bin/env bash
# Make sure the programs some tests drive are there, installing the missing ones
# from the OS packages: tmux (a real terminal for `actorbus top`) and Node.js with
# npm (the official AsyncAPI parser validates `actorbus asyncapi`).
set -euo pipefail

missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from the OS packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
