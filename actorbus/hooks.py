"""The one interface telemetry plugs into: a call at publish, a call at handle.

The runtime keeps its own counters (``bus.stats()``); what counters cannot give
(trace context carried in headers, the time a handler takes, the latency from
publish to handled) comes through :class:`Hooks`, installed per bus with
``bus.add_hooks(hooks)``. ``actorbus.telemetry`` implements them for
Prometheus and OpenTelemetry; any object with these two methods will do.

With no hook installed nothing changes on the hot path: the publisher
(``publishing.py``) hands each message straight to the broker, and an actor cell
pays one ``if`` per message.

Both calls run on the bus's event loop, inline: they must be quick and should
not raise (an error in a hook is logged and the message goes on unobserved; with
several hooks, each is on its own).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from .messages import Envelope

__all__ = ["HandleDone", "Hooks", "chain"]

logger = logging.getLogger("actorbus.hooks")

HandleDone = Callable[[BaseException | None], None]
"""Called once when an actor is done with a message: ``None`` when it was handled, else
the error that ended it (the last failure before the dead letter, or a cancellation)."""


class Hooks(Protocol):
    """Calls the runtime makes at publish and at handle."""

    def on_publish(self, envelope: Envelope) -> Envelope:
        """An envelope is about to go to the broker: return it, or a copy with headers added."""

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        """Actor ``actor`` starts handling ``envelope`` (first attempt; retries included).

        Runs in the actor's task, so a context set here (a current span) is seen by
        what the handler publishes. Return the function to call when it is done.
        """


class _Chain:
    """Several hooks as one, each on its own: one that raises is logged and skipped."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self._hooks = tuple(hooks)

    def on_publish(self, envelope: Envelope) -> Envelope:
        for hook in self._hooks:
            try:
                envelope = hook.on_publish(envelope)
            except Exception:
                logger.exception("publish hook %r failed", hook)
        return envelope

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        done: list[HandleDone] = []
        for hook in self._hooks:
            try:
                done.append(hook.on_handle(actor, envelope))
            except Exception:
                logger.exception("handle hook %r failed", hook, extra={"actor": actor})

        def finish(error: BaseException | None) -> None:
            for callback in reversed(done):  # innermost first, like nested context managers
                try:
                    callback(error)
                except Exception:
                    logger.exception("handle hook failed", extra={"actor": actor})

        return finish


def chain(hooks: Sequence[Hooks]) -> Hooks | None:
    """The one hook to install for ``hooks`` (called in order); ``None`` for none."""
    if not hooks:
        return None
    return hooks[0] if len(hooks) == 1 else _Chain(hooks)
