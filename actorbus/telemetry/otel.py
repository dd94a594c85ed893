"""OpenTelemetry traces: context in message headers, a span per publish and per handle.

``instrument_tracing(bus)`` installs :class:`TracingHooks`. Needs only
``opentelemetry-api`` (extra ``otel``); the application sets up the SDK and its
exporter (Jaeger, Tempo, an OTLP collector) as usual, or passes a
``tracer_provider``.

- **publish**: a ``PRODUCER`` span ``publish <type>``, a child of the current span
  (inside a handler: that handler's span). Its context is injected into the
  envelope headers with the global propagator (W3C ``traceparent`` and
  ``tracestate`` by default), which travel as AMQP headers, so any client that
  reads them joins the trace. The span ends once the message is handed on (the
  publish's confirm is the broker's business, timed in the metrics).
- **handle**: a ``CONSUMER`` span ``process <type>`` whose parent is the context
  extracted from the headers (a foreign client's ``traceparent`` works the same),
  current while the handler runs, ended when the message is handled or
  dead-lettered (then with status ``ERROR`` and the exception recorded).

Attributes follow the OpenTelemetry messaging semantic conventions:
``messaging.system`` (``rabbitmq``, or ``actorbus`` in memory),
``messaging.operation.type`` (``send`` / ``process``), ``messaging.operation.name``
(``publish`` / ``process``), ``messaging.destination.name`` (the subsystem's
exchange), ``messaging.rabbitmq.destination.routing_key`` (the type),
``messaging.message.id``, ``messaging.message.conversation_id`` (the correlation
id), ``messaging.consumer.group.name`` (the actor: each actor has its own queue),
plus ``actorbus.actor`` and ``actorbus.attempt``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from .. import __version__
from ..bus import AsyncMessageBus
from ..hooks import HandleDone
from ..messages import Envelope, subsystem_of

__all__ = ["TracingHooks", "instrument_tracing"]


class TracingHooks:
    """Producer and consumer spans, with the trace context carried in headers."""

    def __init__(self, bus: AsyncMessageBus, tracer_provider: TracerProvider | None = None) -> None:
        self.bus = bus
        """The bus traced (for its mode and prefix)."""
        self.tracer = trace.get_tracer("actorbus", __version__, tracer_provider=tracer_provider)
        """Where the spans are made."""

    def _attributes(self, envelope: Envelope, operation: str, kind: str) -> dict[str, Any]:
        mode = self.bus.mode
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq" if mode == "rabbitmq" else "actorbus",
            "messaging.operation.type": kind,
            "messaging.operation.name": operation,
            "messaging.destination.name": f"{self.bus.prefix}.{subsystem_of(envelope.type)}",
            "messaging.rabbitmq.destination.routing_key": envelope.type,
            "messaging.message.id": envelope.id,
        }
        if envelope.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = envelope.correlation_id
        return attributes

    def on_publish(self, envelope: Envelope) -> Envelope:
        """Make the producer span and put its context into the envelope's headers."""
        span = self.tracer.start_span(
            f"publish {envelope.type}",
            kind=SpanKind.PRODUCER,
            attributes=self._attributes(envelope, "publish", "send"),
        )
        headers = dict(envelope.headers)
        propagate.inject(headers, context=trace.set_span_in_context(span))
        span.end()
        return msgspec.structs.replace(envelope, headers=headers)

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        """Start the consumer span as a child of the headers' context; make it current."""
        attributes = self._attributes(envelope, "process", "process")
        attributes["messaging.consumer.group.name"] = actor
        attributes["actorbus.actor"] = actor
        attributes["actorbus.attempt"] = envelope.attempt
        span = self.tracer.start_span(
            f"process {envelope.type}",
            context=propagate.extract(envelope.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
        token = context.attach(trace.set_span_in_context(span))

        def done(error: BaseException | None) -> None:
            try:
                if error is not None:
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.end()
            finally:
                context.detach(token)

        return done


def instrument_tracing(
    bus: AsyncMessageBus, tracer_provider: TracerProvider | None = None
) -> TracingHooks:
    """Trace every publish and handled message of ``bus`` (global provider unless given)."""
    hooks = TracingHooks(bus, tracer_provider)
    bus.add_hooks(hooks)
    return hooks
