"""A one-actor tree for the least-privilege tests (``--tree passive_tree:tree``)."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio

from actorbus import Actor, Envelope, MessageTypes, Supervisor, handles

SIGNAL = MessageTypes.STRATEGY_SIGNAL


class Echo(Actor):
    """Records the number of every signal it handles."""

    name = "echo"
    seen: ClassVar[list[Any]] = []
    expected = 0
    all_seen: ClassVar[anyio.Event | None] = None

    @handles(SIGNAL)
    async def on_signal(self, envelope: Envelope) -> None:
        Echo.seen.append(envelope.data["n"])
        if len(Echo.seen) >= Echo.expected and Echo.all_seen is not None:
            Echo.all_seen.set()


def tree() -> Supervisor:
    """The tree, the same in the test and in the command."""
    return Supervisor([Echo], name="passive")
