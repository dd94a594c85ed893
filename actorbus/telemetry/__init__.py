"""Telemetry beside the runtime: Prometheus metrics, OpenTelemetry traces, a live view.

Each part is optional and imports its library only when used:

- :mod:`actorbus.telemetry.prometheus` (extra ``metrics``): collectors that read
  the runtime's counters at scrape time, histograms fed by the hooks, and
  :func:`~actorbus.telemetry.prometheus.start_metrics_server`;
- :mod:`actorbus.telemetry.otel` (extra ``otel``): W3C trace context in message
  headers, a producer span per publish and a consumer span per handled message;
- :mod:`actorbus.telemetry.view` (extra ``tools``): the live terminal view that
  ``actorbus top`` shows.

Nothing here runs unless it is installed on a bus: without it the runtime pays
nothing (see :mod:`actorbus.hooks`).
"""
