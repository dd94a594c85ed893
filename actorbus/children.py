"""What a supervisor supervises: child specs and when a child is restarted.

A supervisor's children are Actor classes (taken as a :class:`ChildSpec` with
the defaults), :class:`ChildSpec` objects, or nested supervisors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .actor import Actor
from .queues import QueueOptions

__all__ = ["ChildSpec", "Restart"]


class Restart(StrEnum):
    """When a child is restarted."""

    PERMANENT = "permanent"
    """Always, whether it crashed or stopped."""
    TRANSIENT = "transient"
    """Only after a crash."""
    TEMPORARY = "temporary"
    """Never."""


@dataclass(frozen=True)
class ChildSpec:
    """How to build and restart one actor child."""

    actor: type[Actor]
    """The actor class."""
    factory: Callable[[], Actor] | None = None
    """Builds each instance; default: ``actor()``."""
    name: str | None = None
    """Actor name; default: the class's ``default_name()``."""
    restart: Restart = Restart.PERMANENT
    """When this child is restarted (a ``Restart`` or its value, ``"transient"``)."""
    start_timeout: float | None = None
    """Seconds ``on_start`` may take; default: the actor class's ``start_timeout``."""
    queue_options: QueueOptions | None = None
    """This child's queue; default: the actor class's ``queue_options`` (two children of
    one class on queues of their own, for instance)."""
    patterns: tuple[str, ...] | None = None
    """The types (or patterns) its queue is bound to; default: those the class handles."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "restart", Restart(self.restart))

    @property
    def actor_name(self) -> str:
        """The effective name."""
        return self.name or self.actor.default_name()

    @property
    def effective_start_timeout(self) -> float:
        """The start timeout in effect: this spec's, else the actor class's."""
        return self.actor.start_timeout if self.start_timeout is None else self.start_timeout
