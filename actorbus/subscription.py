"""Plain function subscriptions, run as small actors.

``bus.subscribe(type, handler)`` runs ``handler(message_type, data)`` as a
:class:`FunctionActor` child (see :func:`subscription_spec`), so a subscription
gets what every actor gets: a bounded mailbox, retries, dead letters, counters
and a supervisor. Its name, queue and bound types are the child spec's; the
actor class is the same for every subscription.

A subscription is one ``subscribe`` call: a handler and the set of types (or
patterns) given to it. Each gets exactly the types it subscribed to, whoever
else subscribes under the same prefix. Two subscriptions share a queue (and so
compete for its messages, each message going to one of them) only when:

- the user gives both the same explicit ``queue=`` name (the user owns that
  sharing; subscribing again adds the types to that queue), or
- they are identical subscriptions of the same program: the same function
  (module and qualified name; for a function of the main script, the script's
  module name or file name stands for ``__main__``) and the same set of types.
  That is how several instances of one service share its work.

Queue naming: such a function gets the durable queue
``<prefix>.sub.<module>.<qualname>.<hash>``, ``<hash>`` being the first 8 hex
digits of the SHA-256 of its sorted types, one per line. Subscribing the same
function to another type makes a second subscription, with its own queue and
actor (the two may run at once); give several types in one call
(``subscribe([a, b], handler)``) for one queue and one order over them. No
queue is ever re-bound behind another program's back.

A default durable subscription queue holds at most ``SUBSCRIPTION_MAX_LENGTH``
messages while nobody consumes it, dropping the oldest past that
(``x-overflow=drop-head``: a dead subscriber never blocks publishers), and is
deleted after ``SUBSCRIPTION_EXPIRY`` seconds without a consumer
(``x-expires``); the in-memory broker does the same. An explicit ``queue=`` has
no limit and no expiry.

A lambda, a nested function, a method bound to an object or any other callable
has no stable name; it gets a private queue of its own that is deleted when the
subscription ends.

The handler is checked at ``subscribe``: it must be callable as
``handler(message_type, data)`` (``*args``, defaults, bound methods,
``functools.partial`` and callable objects are fine), else ``InvalidHandler``.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from .actor import Actor, Handler
from .children import ChildSpec
from .errors import InvalidHandler
from .messages import Envelope, MessageTypes
from .queues import QueueOptions

__all__ = [
    "SUBSCRIPTION_EXPIRY",
    "SUBSCRIPTION_MAX_LENGTH",
    "FunctionActor",
    "MessageHandler",
    "check_handler",
    "patterns_hash",
    "subscription_spec",
]

SUBSCRIPTION_MAX_LENGTH = 100_000
"""Most messages a default durable subscription queue keeps with no consumer (drop-head)."""
SUBSCRIPTION_EXPIRY = 24 * 3600.0
"""Seconds without a consumer after which a default durable subscription queue is deleted."""

MessageHandler = Callable[[str, Any], Awaitable[Any] | Any]
"""A subscriber: called with the message type and the data; may be async or plain."""

_MEMBERS: dict[str, MessageTypes] = {member.value: member for member in MessageTypes}


class FunctionActor(Actor):
    """An actor that hands every message it gets to one function as ``(message_type, data)``.

    The types it gets are those its queue is bound to (its child spec's ``patterns``).
    """

    def __init__(self, function: MessageHandler) -> None:
        super().__init__()
        self.function = function
        """The subscribed function."""
        self._handler = _handler_of(function)

    def handler_for(self, message_type: str) -> Handler | None:
        """Every delivered type goes to the one function."""
        return self._handler


def _handler_of(function: MessageHandler) -> Handler:
    if inspect.iscoroutinefunction(function):

        async def call_async(actor: Actor, envelope: Envelope) -> Any:
            return await function(_MEMBERS.get(envelope.type, envelope.type), envelope.data)

        return (call_async, True)

    def call(actor: Actor, envelope: Envelope) -> Any:
        return function(_MEMBERS.get(envelope.type, envelope.type), envelope.data)

    return (call, False)


def check_handler(handler: Any) -> None:
    """Raise ``InvalidHandler`` unless ``handler(message_type, data)`` is a valid call."""
    if not callable(handler):
        raise InvalidHandler(
            f"a subscriber must be callable as handler(message_type, data), not {handler!r}"
        )
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # no signature to read (some builtins): taken as given
        return
    try:
        signature.bind("message.type", None)
    except TypeError as exc:
        raise InvalidHandler(
            f"{handler!r} cannot be called as handler(message_type, data): {exc}"
        ) from None


def patterns_hash(patterns: Iterable[str]) -> str:
    """The 8 hex digits naming a set of patterns in a subscription queue's name."""
    text = "\n".join(sorted(set(patterns)))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _program_module(module: str) -> str:
    """A module name that tells programs apart: the main script's own name for ``__main__``."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)  # run with ``python -m``
    file = getattr(main, "__file__", None)
    return f"__main__.{Path(file).stem}" if file else module


def subscription_spec(
    handler: MessageHandler, prefix: str, queue: str | None, patterns: Iterable[str]
) -> ChildSpec:
    """The child spec of a subscription of ``handler`` to ``patterns`` (see the module doc)."""
    patterns = tuple(patterns)
    module = _program_module(getattr(handler, "__module__", None) or "handler")
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
        stable = f"{module}.{qualname}.{patterns_hash(patterns)}"
    name = f"sub.{stable}"
    bounded = queue is None and not anonymous
    return ChildSpec(
        actor=FunctionActor,
        factory=partial(FunctionActor, handler),
        name=name,
        queue_options=QueueOptions(
            name=queue or f"{prefix}.{name}",
            durable=queue is not None or not anonymous,
            max_length=SUBSCRIPTION_MAX_LENGTH if bounded else None,
            overflow="drop-head",
            expires=SUBSCRIPTION_EXPIRY if bounded else None,
        ),
        patterns=patterns,
    )
