"""Every exception actorbus raises, in one place.

The tree::

    ActorbusError
    ├── ConfigurationError      bad mode, URL or option
    │   └── QueueMismatch       a queue exists on RabbitMQ with other arguments than declared
    ├── MessageError
    │   ├── UnknownMessageType  a type string that is neither a MessageTypes value nor registered
    │   ├── SchemaError         data does not match the schema registered for its type
    │   ├── DecodeError         bytes that cannot be turned into an envelope or its data
    │   ├── MessageTooLarge     an encoded message over the codec's size limit
    │   └── InvalidMessage      data that cannot travel (unencodable, a set, nested too deeply)
    ├── InvalidHandler          a subscriber that cannot be called as ``handler(type, data)``
    ├── BusClosed               an operation on a bus that was shut down
    ├── PublishError            the broker did not take a message
    │   ├── Unroutable          a mandatory publish that no queue is bound to
    │   ├── QueueFull           a queue (or the outbox while disconnected) is at its limit
    │   └── PublishTimeout      no confirm within the publish timeout
    ├── BrokerUnavailable       the broker cannot be reached (connect failed or timed out)
    │   └── BrokerRefused       it answered but refused: credentials, vhost, TLS, permissions
    │       └── TopologyMissing passive mode: exchanges or queues the bus expects are absent
    ├── AskTimeout              no reply to an ask within its timeout
    ├── AskFailed               the handler of an ask failed for good (the reply carries why)
    ├── ActorStartError         an actor's ``on_start`` failed past its supervisor's limits
    ├── ActorCrashed            a handler error the retry policy marks fatal
    └── SupervisorGaveUp        restarts exceeded ``max_restarts`` within ``within`` seconds
"""

from __future__ import annotations


class ActorbusError(Exception):
    """Base class of every error raised by actorbus."""


class ConfigurationError(ActorbusError, ValueError):
    """Raised for an unknown mode, a malformed URL or an invalid option."""


class QueueMismatch(ConfigurationError):
    """Raised when RabbitMQ refuses a queue declaration: the queue exists with other arguments.

    ``differences`` maps each argument that differs to ``(declared, existing)``
    (``None``: not set on that side); the message says what to do about it.
    """

    def __init__(
        self, message: str, *, queue: str, differences: dict[str, tuple[object, object]]
    ) -> None:
        super().__init__(message)
        self.queue = queue
        """The queue refused."""
        self.differences = differences
        """Argument -> (declared here, existing on the broker)."""


class MessageError(ActorbusError, ValueError):
    """Base class of errors about a message's type, shape or encoding."""


class UnknownMessageType(MessageError):
    """Raised when a type string is not a ``MessageTypes`` value and was never registered."""


class SchemaError(MessageError):
    """Raised when data does not match the schema registered for its message type."""


class DecodeError(MessageError):
    """Raised for any bytes that cannot be decoded; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """Why decoding failed, in words."""


class MessageTooLarge(MessageError):
    """Raised when an encoded message exceeds the codec's ``max_size``."""


class InvalidMessage(MessageError, TypeError):
    """Raised at publish for data that cannot travel as it is.

    Data the codec cannot encode (a custom object, an integer out of range), data
    nested deeper than the encoder goes, or a ``set`` in data of a type without a
    schema (it would arrive as a list). Refused the same way in every mode.
    """


class InvalidHandler(ActorbusError, TypeError):
    """Raised by ``subscribe`` for a handler that cannot be called as ``handler(type, data)``."""


class BusClosed(ActorbusError, RuntimeError):
    """Raised when publishing to, or otherwise using, a bus after ``shutdown()``."""


class PublishError(ActorbusError):
    """Raised when the broker did not take a message."""


class Unroutable(PublishError):
    """Raised by a ``mandatory`` publish that no queue is bound to."""


class QueueFull(PublishError):
    """Raised when a queue, or the outbox kept while disconnected, is at its limit."""


class PublishTimeout(PublishError, TimeoutError):
    """Raised when the broker did not confirm a publish within the publish timeout."""


class BrokerUnavailable(ActorbusError, ConnectionError):
    """Raised when the broker cannot be reached within the connect timeout."""


class BrokerRefused(BrokerUnavailable):
    """Raised when the broker answers but refuses: login, virtual host, TLS, permissions.

    A certificate that does not verify, a user whose permissions refuse the
    bus's declarations, wrong credentials or a missing virtual host are
    configuration (or security) mistakes, so the bus never falls back to
    memory on them, whatever ``fallback`` says.
    """


class TopologyMissing(BrokerRefused):
    """Raised in passive mode when exchanges or queues the bus expects do not exist.

    ``missing`` lists them all (``"exchange <name>"``, ``"queue <name>"``).
    """

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
        """Every missing object, as ``"exchange <name>"`` or ``"queue <name>"``."""


class AskTimeout(ActorbusError, TimeoutError):
    """Raised when no reply to an ``ask`` arrives within its timeout."""


class AskFailed(ActorbusError):
    """Raised when the handler answering an ``ask`` failed for good; the text says why."""


class ActorStartError(ActorbusError):
    """Raised by ``spawn`` when a child's ``on_start`` kept failing past its restart limits."""


class ActorCrashed(ActorbusError):
    """Raised inside the runtime when a handler error is fatal under the actor's retry policy."""


class SupervisorGaveUp(ActorbusError):
    """Raised when a supervisor exceeded ``max_restarts`` within ``within`` seconds."""
