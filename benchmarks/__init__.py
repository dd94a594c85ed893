"""Throughput, latency and memory of actorbus, side by side with raw baselines and peers.

Run ``python -m benchmarks`` for the fixed set and its table (``--json`` for
machine output, ``--quick`` for a smoke run). Every figure is shown with its
ratio to a baseline measured in the same run, because only ratios measured side
by side mean anything on a shared, noisy machine. The pytest-benchmark suites
(``pytest benchmarks --benchmark-enable``) time the same scenarios one by one.

Modules: :mod:`benchmarks.local` (in-process scenarios and their raw
``asyncio`` baselines), :mod:`benchmarks.memory` (memory per idle actor, each
measurement in a fresh process), :mod:`benchmarks.remote` (RabbitMQ scenarios
of actorbus), :mod:`benchmarks.raw_pika` (their raw aio-pika baselines),
:mod:`benchmarks.rabbit` (what the RabbitMQ scenarios share),
:mod:`benchmarks.latency` (publish-to-handled latency at fixed rates, beside raw
asyncio and raw aio-pika),
:mod:`benchmarks.ceiling` (the broker's own ceiling, by a Node.js client),
:mod:`benchmarks.peers` (Pykka and FastStream, when installed),
:mod:`benchmarks.instructions` (instructions per message under callgrind),
:mod:`benchmarks.profile` (where a path's time or memory goes),
:mod:`benchmarks.harness` (repetition, statistics, the table).
"""
