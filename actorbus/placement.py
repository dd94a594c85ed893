"""Placement: which actors of a tree run in this process.

The same tree can be spawned in several processes, each running some of its
actors (``bus.spawn(tree, actors=["risk", "execution"])``): the actors not
placed here run wherever the tree is spawned with their names, and the broker
carries their messages there. A :class:`Placement` is the one place that
decides; the supervisors of the tree ask it for each actor child (a nested
supervisor always runs, so that its placed children can).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["EVERYWHERE", "Placement"]


class Placement:
    """The actors of a tree that run in this process (all of them unless named)."""

    __slots__ = ("actors",)

    def __init__(self, actors: Iterable[str] | None = None) -> None:
        self.actors = None if actors is None else frozenset(actors)
        """Names of the actors placed here; ``None``: every actor."""

    def runs_here(self, actor: str) -> bool:
        """Whether the actor named ``actor`` runs in this process."""
        return self.actors is None or actor in self.actors

    def __repr__(self) -> str:
        if self.actors is None:
            return "Placement(everywhere)"
        return f"Placement({sorted(self.actors)})"


EVERYWHERE = Placement()
"""Every actor of the tree runs here."""
