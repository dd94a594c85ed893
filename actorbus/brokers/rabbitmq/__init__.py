"""The RabbitMQ broker: ``AsyncRabbitMQBroker`` and its connection settings.

It speaks AMQP through aiormq, the protocol layer under aio-pika, rather than
through aio-pika's robust objects: the publish path pipelines confirms and
coalesces writes, acks are batched, and recovery is done here (replay every
declaration, then check every consumer is back), because aio-pika's robust
recovery has lost consumers after reconnects (its issues #231, #334, #594, #626)
and its per-message overhead put the remote path under the 1.5x target.

Modules, one concern each: ``_params`` (settings, URL, TLS, redaction),
``_wire`` (an envelope as an AMQP message, and the one header filter back),
``_link`` (the self-healing connection), ``_refusals`` (a refusal told from an
outage, by exception type), ``_aiormq`` (the only use of aiormq internals,
version-checked at import), ``_closing`` (closing quietly), ``_queue_defaults``
(the bus-wide queue type and delivery limit), ``_topology`` (what was declared,
the binding rules, passive checks), ``_declarer`` (topology operations across
outages), ``_definitions`` (the topology of a system as RabbitMQ definitions),
``_migrate`` (moving a queue to a new declaration), ``_sender`` (one confirmed
publish across outages, nacks and timeouts), ``_publisher`` (many publishes per
socket write), ``_publishing`` (routing to exchanges, batches, unroutable
messages), ``_batch`` (opt-in many envelopes per AMQP message), ``_consumer``
(a consumer's channel, start, recovery, pause and cancel), ``_window`` (the
redelivery window on queues with a delivery limit), ``_intake`` (decoding
each message and handing it on), ``_delivery`` (a delivery, and copies
recognised by id), ``_acker`` (batched acks, written at once past a count or an
age), ``_registry`` (the consumers of a broker, their recovery and health
check, and who owns each queue), ``_replies`` (direct reply-to),
``_dead_letters`` (the dead-letter store), ``_listen`` (overhearing a type for
read-only tools) and ``broker`` (the ``MessageBroker`` itself). The sync face is
:class:`actorbus.brokers.rabbitmq_sync.RabbitMQBroker`.
"""

from ._definitions import topology_definitions as topology_definitions
from ._params import DEFAULT_CONNECTION_PARAMS as DEFAULT_CONNECTION_PARAMS
from ._params import ConnectionSettings as ConnectionSettings
from ._params import redact as redact
from ._replies import DIRECT_REPLY_TO as DIRECT_REPLY_TO
from .broker import AsyncRabbitMQBroker as AsyncRabbitMQBroker

__all__ = [
    "DEFAULT_CONNECTION_PARAMS",
    "DIRECT_REPLY_TO",
    "AsyncRabbitMQBroker",
    "ConnectionSettings",
    "redact",
    "topology_definitions",
]
