"""Plain function subscriptions, run as small actors.

``bus.subscribe(type, handler)`` wraps ``handler(message_type, data)`` in a
one-off Actor class, so a subscription gets what every actor gets: a bounded
mailbox, retries, dead letters, counters and a supervisor.

Queue naming: a module-level function gets the durable queue
``<prefix>.sub.<module>.<qualname>``, the same in every process (so several
processes subscribing the same function share its messages, and messages wait
for it across restarts). A lambda, a nested function, a method bound to an
object or any other callable has no stable name; it gets a private queue of its
own that is deleted when the subscription ends.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from .actor import Actor, Handler
from .messages import Envelope, MessageTypes

__all__ = ["FunctionActor", "MessageHandler", "subscription_class"]

MessageHandler = Callable[[str, Any], Awaitable[Any] | Any]
"""A subscriber: called with the message type and the data; may be async or plain."""

_MEMBERS: dict[str, MessageTypes] = {member.value: member for member in MessageTypes}


class FunctionActor(Actor):
    """An actor that hands every message to one function as ``(message_type, data)``."""

    function: ClassVar[MessageHandler]
    """The subscribed function."""

    def handler_for(self, message_type: str) -> Handler | None:
        """Every delivered type goes to the one function."""
        return _handler_of(type(self))


def _handler_of(cls: type[FunctionActor]) -> Handler:
    cached: Handler | None = cls.__dict__.get("_function_handler")
    if cached is not None:
        return cached
    function = cls.function
    if inspect.iscoroutinefunction(function):

        async def call_async(actor: Actor, envelope: Envelope) -> Any:
            return await function(_MEMBERS.get(envelope.type, envelope.type), envelope.data)

        handler: Handler = (call_async, True)
    else:

        def call(actor: Actor, envelope: Envelope) -> Any:
            return function(_MEMBERS.get(envelope.type, envelope.type), envelope.data)

        handler = (call, False)
    cls._function_handler = handler  # type: ignore[attr-defined]
    return handler


def subscription_class(
    handler: MessageHandler, prefix: str, queue: str | None
) -> type[FunctionActor]:
    """Build the one-off actor class of a subscription to ``handler``."""
    module = getattr(handler, "__module__", None) or "handler"
    qualname = getattr(handler, "__qualname__", None) or type(handler).__name__
    # A method bound to an object is as anonymous as a lambda: two objects of one class
    # must each get every message, not compete for them on one queue named after the class.
    bound_to_object = inspect.ismethod(handler) and not isinstance(handler.__self__, type)
    anonymous = (
        "<" in qualname
        or bound_to_object
        or (queue is None and not getattr(handler, "__qualname__", None))
    )
    if anonymous:
        stable = f"{qualname.replace('<', '').replace('>', '')}.{uuid.uuid4().hex[:8]}"
    else:
        stable = f"{module}.{qualname}"
    name = f"sub.{stable}"
    return type(
        f"Subscription[{qualname}]",
        (FunctionActor,),
        {
            "name": name,
            "queue_name": queue or f"{prefix}.{name}",
            "function": staticmethod(handler),
            "durable": queue is not None or not anonymous,
            "_handlers": {},
        },
    )
