#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672: install it from the OS
# packages when missing, start it when stopped, wait until it takes connections.
set -euo pipefail

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if port_open; then
  exit 0
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ is not installed: installing it from the OS packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
echo "starting RabbitMQ" >&2
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 120); do
  if port_open && rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then
    echo "RabbitMQ is up" >&2
    exit 0
  fi
  sleep 0.5
done
echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2
exit 1
