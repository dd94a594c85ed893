"""The ``Actor`` base class and the ``@handles`` declaration.

Subclass :class:`Actor`, mark methods with :func:`handles`, and spawn the class
(or a :class:`~actorbus.supervisor.Supervisor` holding it) on a bus::

    class Strategy(Actor):
        @handles(MessageTypes.MARKET_DATA_UPDATE)
        async def on_tick(self, msg: Envelope) -> None:
            await self.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": msg.data["symbol"]})

An actor handles one message at a time, in arrival order. A handler's return
value answers an ``ask``. A handler that raises is retried by the actor's
:class:`RetryPolicy`, then dead-lettered; an exception the policy marks fatal
crashes the actor, and its supervisor restarts it with a fresh instance.
Handlers may be ``async def`` or plain ``def`` (plain ones run on the event
loop, so they must be quick).

An actor sees the world only through its :class:`ActorContext`: ``publish``,
``ask`` and ``stop``; never the bus object itself.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar

from ._retry import Backoff
from .clock import REAL_CLOCK, Clock
from .mailbox import Conflate
from .messages import Envelope
from .queues import QueueOptions
from .topic import is_pattern, topic_matches

__all__ = ["Actor", "ActorContext", "ActorState", "Handler", "RetryPolicy", "handles"]

F = TypeVar("F", bound=Callable[..., Any])
Handler = tuple[Callable[[Any, Envelope], Any], bool]
"""A resolved handler: the function (taking the actor and the envelope) and whether it is async."""

_HANDLES_ATTR = "__actorbus_handles__"


class ActorState(StrEnum):
    """Where an actor is in its life."""

    NEW = "new"
    """Created, never started."""
    STARTING = "starting"
    """``on_start`` is running."""
    RUNNING = "running"
    """Taking messages from its mailbox."""
    STOPPING = "stopping"
    """``on_stop`` is running."""
    STOPPED = "stopped"
    """Ended normally or was stopped; may be started again by its supervisor."""
    FAILED = "failed"
    """Ended by a crash or a failed start; its supervisor decides what next."""


@dataclass(frozen=True)
class RetryPolicy:
    """How an actor retries a failing handler before dead-lettering the message."""

    max_attempts: int = 3
    """Tries per message, the first included."""
    backoff: float = 0.01
    """Seconds before the second try; each later wait is ``multiplier`` times longer."""
    multiplier: float = 2.0
    """Growth of the wait between tries."""
    max_backoff: float = 1.0
    """Longest wait between two tries."""
    fatal: tuple[type[BaseException], ...] = ()
    """Exception types that are not retried but crash the actor (after dead-lettering)."""

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures (``actorbus._retry.Backoff``)."""
        return Backoff(self.backoff, self.max_backoff, self.multiplier).nth(failed_attempts)


def handles(*message_types: str) -> Callable[[F], F]:
    """Declare the message types (or topic patterns) a method of an Actor handles."""
    if not message_types:
        raise TypeError("@handles needs at least one message type")

    def mark(function: F) -> F:
        setattr(function, _HANDLES_ATTR, tuple(str(t) for t in message_types))
        return function

    return mark


class ActorContext(Protocol):
    """What the runtime gives an actor: its name and the means to talk."""

    @property
    def name(self) -> str:
        """This actor's name."""

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        mandatory: bool = False,
    ) -> None:
        """Publish a message as this actor (``mandatory``: ``Unroutable`` if nobody is bound)."""

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request and wait for its reply."""

    def stop(self) -> None:
        """Stop this actor after the current message (a normal exit)."""


def _snake(name: str) -> str:
    base = name[: -len("Actor")] if name.endswith("Actor") and name != "Actor" else name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


class Actor:
    """Base class of actors; see the module documentation for the whole picture."""

    name: ClassVar[str | None] = None
    """Actor name (queue and dead-letter key); default: the class name in snake case
    without an ``Actor`` suffix (``RiskActor`` -> ``"risk"``)."""
    mailbox_size: ClassVar[int] = 1000
    """Mailbox capacity; a publisher waits while it is full."""
    mailbox_policy: ClassVar[Conflate | None] = None
    """Set to a :class:`~actorbus.mailbox.Conflate` to keep only the latest per key."""
    retry: ClassVar[RetryPolicy] = RetryPolicy()
    """Retry policy of this actor's handlers."""
    queue_options: ClassVar[QueueOptions] = QueueOptions()
    """How this actor's queue is declared (see :mod:`actorbus.queues`): its name,
    durability, length limit, expiry, queue type, delivery limit, single active
    consumer. The defaults: ``<prefix>.actor.<name>``, durable, no limit."""
    clock: Clock = REAL_CLOCK
    """The clock time-based rules read (see :mod:`actorbus.clock`); assign another per
    instance, e.g. a simulated one, to replay the actor's input deterministically."""
    start_timeout: ClassVar[float] = 10.0
    """Seconds ``on_start`` may take; past them the start fails with ``ActorStartError``
    (not retried: a hung start would otherwise hang ``spawn`` once per retry). A
    :class:`~actorbus.supervisor.ChildSpec` may set its own."""

    _handlers: ClassVar[dict[str, str]] = {}
    _handler_cache: ClassVar[dict[str, Handler | None]] = {}
    _handled_types: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(cls._handlers)
        for attribute, value in vars(cls).items():
            for message_type in getattr(value, _HANDLES_ATTR, ()):
                handlers[message_type] = attribute
        cls._handlers = handlers
        cls._handled_types = tuple(handlers)  # (one tuple per class, shared by its actors)
        cls._handler_cache = {}

    def __init__(self) -> None:
        self._context: ActorContext | None = None

    @classmethod
    def default_name(cls) -> str:
        """The name this class gets when none is given."""
        return cls.name or _snake(cls.__name__)

    @classmethod
    def handled_types(cls) -> tuple[str, ...]:
        """Every message type or pattern this class handles, in declaration order."""
        return cls._handled_types

    def handler_for(self, message_type: str) -> Handler | None:
        """The handler of ``message_type``: an exact declaration first, then the first pattern."""
        cache = type(self)._handler_cache
        try:
            return cache[message_type]
        except KeyError:
            pass
        attribute = self._handlers.get(message_type)
        if attribute is None:
            attribute = next(
                (
                    attr
                    for pattern, attr in self._handlers.items()
                    if is_pattern(pattern) and topic_matches(pattern, message_type)
                ),
                None,
            )
        handler: Handler | None = None
        if attribute is not None:
            function = getattr(type(self), attribute)
            handler = (function, inspect.iscoroutinefunction(function))
        cache[message_type] = handler
        return handler

    @property
    def context(self) -> ActorContext:
        """This actor's link to the runtime (set before ``on_start``)."""
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} is not running: spawn it on a bus")
        return self._context

    def bind(self, context: ActorContext) -> None:
        """Attach the runtime context; called by the runtime before ``on_start``."""
        self._context = context

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        mandatory: bool = False,
    ) -> None:
        """Publish a message with this actor as its source.

        With ``mandatory``, raises ``Unroutable`` when no queue is bound to the type.
        """
        await self.context.publish(
            message_type, data, correlation_id=correlation_id, headers=headers, mandatory=mandatory
        )

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request and return the reply; ``AskTimeout`` when none comes in time."""
        return await self.context.ask(message_type, data, timeout=timeout)

    def stop(self) -> None:
        """Stop after the current message (a normal exit: a transient child stays down)."""
        self.context.stop()

    async def on_start(self) -> None:
        """Called before the first message; raising here, or outlasting ``start_timeout``, fails."""

    async def on_stop(self) -> None:
        """Called after the last message, whether the actor stopped or crashed."""
