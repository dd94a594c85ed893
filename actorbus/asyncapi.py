"""An AsyncAPI 3.0 document of the wire, for clients in any language.

:func:`asyncapi_document` describes what a RabbitMQ-mode system puts on the
wire: one channel per message type (the routing key on its subsystem's topic
exchange ``<prefix>.<subsystem>``), one per actor queue (``<prefix>.actor.<name>``,
bound to the types the actor handles), the dead-letter queue, and the direct
reply-to that answers ``ask``; a ``send`` operation per type and a ``receive``
operation per actor; the headers every message carries; and the payload JSON
Schema of every type with a registered schema (made by msgspec). Types without
a schema take any value.

The document is a plain dict (JSON-ready); ``actorbus asyncapi`` prints it as
JSON or YAML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from . import __version__
from .actor import Actor
from .codec import CONTENT_TYPES, Format
from .messages import known_types, schema_for, subsystem_of
from .topic import topic_matches

__all__ = ["AMQP_BINDING_VERSION", "asyncapi_document", "channel_id"]

AMQP_BINDING_VERSION = "0.3.0"
"""Version of the AsyncAPI AMQP bindings used."""

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_HEADERS_SCHEMA = "ActorbusHeaders"
_VERSION = {"bindingVersion": AMQP_BINDING_VERSION}
_REPLY_CHANNEL = "replies"
_DEAD_LETTER_CHANNEL = "dead_letters"


def channel_id(name: str) -> str:
    """The document's id of a channel, message or operation named ``name`` (dots to ``_``)."""
    return name.replace(".", "_").replace("*", "star").replace("#", "hash")


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "AMQP headers. Besides these, a message carries the envelope's own string "
            "headers under their own names. The AMQP properties carry the rest: "
            "message_id (envelope id), type (message type), content_type, timestamp, "
            "correlation_id, reply_to, delivery_mode 2 (persistent)."
        ),
        "properties": {
            "x-source": {"type": "string", "description": "Publisher: an actor or a bus name."},
            "x-attempt": {
                "type": "integer",
                "minimum": 1,
                "description": "Delivery attempt (1 on first delivery).",
            },
            "x-timestamp": {
                "type": "string",
                "pattern": r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$",
                "description": (
                    "Creation time: seconds since the epoch, as a decimal string "
                    "(exact; readers also accept a number)."
                ),
            },
            "traceparent": {
                "type": "string",
                "description": "W3C trace context: the span that published the message.",
            },
            "tracestate": {"type": "string", "description": "W3C trace context, vendor part."},
        },
        "additionalProperties": {"type": "string"},
    }


def _payloads(types: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Payload schema per type, and the shared component schemas they refer to."""
    with_schema = [t for t in types if schema_for(t) is not None]
    structs = [schema_for(t) for t in with_schema]
    schemas, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    payloads: dict[str, Any] = dict(zip(with_schema, schemas, strict=True))
    for message_type in types:
        payloads.setdefault(
            message_type,
            {"description": "Any value (this type has no registered schema); often an object."},
        )
    return payloads, components


def _exchange(prefix: str, message_type: str) -> dict[str, Any]:
    return {
        "name": f"{prefix}.{subsystem_of(message_type)}",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }


def _message(message_type: str, payload: dict[str, Any], content_type: str) -> dict[str, Any]:
    return {
        "name": message_type,
        "title": message_type,
        "summary": f"A {message_type} message; its routing key and AMQP type property.",
        "contentType": content_type,
        "headers": {"$ref": f"#/components/schemas/{_HEADERS_SCHEMA}"},
        "payload": payload,
        "bindings": {"amqp": {"messageType": message_type, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def _actor_channels(
    prefix: str, actors: Mapping[str, type[Actor]], types: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, actor_class in actors.items():
        queue = actor_class.queue_options.name or f"{prefix}.actor.{name}"
        patterns = actor_class.handled_types()
        handled = [t for t in types if any(topic_matches(p, t) for p in patterns)]
        key = f"actor_{channel_id(name)}"
        channels[key] = {
            "address": queue,
            "title": f"queue of actor {name}",
            "description": (
                f"Bound to {', '.join(patterns)} on the subsystem exchanges. "
                "Prefetch is the actor's mailbox size; a message is acknowledged once handled."
            ),
            "messages": {
                channel_id(t): {"$ref": f"#/components/messages/{channel_id(t)}"} for t in handled
            },
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": queue,
                        "durable": actor_class.queue_options.durable,
                        "exclusive": False,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        operations[f"{key}_receive"] = {
            "action": "receive",
            "title": f"{name} handles its messages",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{channel_id(t)}"} for t in handled],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }
    return channels, operations


def _fixed_channels(prefix: str) -> dict[str, Any]:
    return {
        _REPLY_CHANNEL: {
            "address": None,
            "title": "replies to ask",
            "description": (
                f"RabbitMQ direct reply-to ({DIRECT_REPLY_TO}): the address is the "
                "request's reply_to property; the reply's correlation_id is the request's "
                "message_id, and an x-actorbus-error header says the handler failed."
            ),
            "messages": {"reply": {"$ref": "#/components/messages/reply"}},
        },
        _DEAD_LETTER_CHANNEL: {
            "address": f"{prefix}.dead_letters",
            "title": "dead letters",
            "description": (
                "Messages a handler failed on for good, one entry each (msgpack), with "
                "x-actor, x-queue, x-error-type and x-reason headers."
            ),
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": f"{prefix}.dead_letters",
                        "durable": True,
                        "exclusive": False,
                        "autoDelete": False,
                        "vhost": "/",
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        },
    }


def asyncapi_document(
    *,
    prefix: str = "trading",
    actors: Mapping[str, type[Actor]] | None = None,
    requests: Iterable[str] = (),
    host: str = "localhost:5672",
    format: Format = "msgpack",
    title: str = "actorbus",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every known message type under ``prefix``.

    ``actors`` (name to class) adds a channel and a receive operation per actor
    queue; ``requests`` names the types answered by a reply (``ask``); ``host`` is
    the broker in the ``servers`` section; ``format`` is the codec publishers
    write (``msgpack`` or ``json``; consumers accept both).
    """
    if format not in CONTENT_TYPES:
        raise ValueError(f"format {format!r}: use one of {', '.join(CONTENT_TYPES)}")
    content_type = CONTENT_TYPES[format]
    types = sorted(known_types())
    answered = {str(t) for t in requests}
    payloads, components = _payloads(types)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for message_type in types:
        key = channel_id(message_type)
        messages[key] = _message(message_type, payloads[message_type], content_type)
        channels[key] = {
            "address": message_type,
            "title": message_type,
            "description": (
                f"Routing key {message_type} on the topic exchange "
                f"{prefix}.{subsystem_of(message_type)}."
            ),
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": _exchange(prefix, message_type),
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        operation: dict[str, Any] = {
            "action": "send",
            "title": f"publish {message_type}",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "bindings": {"amqp": {"deliveryMode": 2, "timestamp": True, **_VERSION}},
        }
        if message_type in answered:
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{_REPLY_CHANNEL}"},
                "messages": [{"$ref": f"#/channels/{_REPLY_CHANNEL}/messages/reply"}],
            }
        operations[f"send_{key}"] = operation
    channels.update(_fixed_channels(prefix))
    actor_channels, actor_operations = _actor_channels(prefix, actors or {}, types)
    channels.update(actor_channels)
    operations.update(actor_operations)
    messages["reply"] = {
        "name": "reply",
        "title": "reply to ask",
        "contentType": content_type,
        "headers": {"$ref": f"#/components/schemas/{_HEADERS_SCHEMA}"},
        "payload": {"description": "The handler's return value (null when it failed)."},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{title} (prefix {prefix})",
            "version": __version__,
            "description": (
                "Typed messages between supervised actors over RabbitMQ. Each message type "
                "is a routing key <subsystem>.<event> on the topic exchange "
                f"{prefix}.<subsystem>; each actor consumes from its own durable queue."
            ),
        },
        "defaultContentType": content_type,
        "servers": {
            "rabbitmq": {"host": host, "protocol": "amqp", "protocolVersion": "0.9.1"},
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {_HEADERS_SCHEMA: _headers_schema(), **components},
            "messages": messages,
        },
    }
