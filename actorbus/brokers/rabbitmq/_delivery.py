"""A delivery from RabbitMQ, and the copies of it that one consumer recognises.

:class:`RabbitDelivery` settles its message on the channel it came on, once, and
settles every copy of it that arrived meanwhile the same way. :class:`Dedup`
decides, for each message a consumer decodes, whether it is new (a delivery to
hand on) or a copy of one this consumer already has. Both are plain
bookkeeping: no I/O, no event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...messages import REPLAYS_HEADER, Delivery, Envelope

if TYPE_CHECKING:
    from ._acker import Acker

__all__ = ["Dedup", "RabbitDelivery", "Settle"]

Settle = Callable[[bool], None]
"""Settles one delivery on the broker: ``True`` acknowledges, ``False`` requeues."""


class RabbitDelivery(Delivery):
    """A delivery from RabbitMQ: ``ack``/``requeue`` settle it on its own channel."""

    __slots__ = ("_copies", "_dedup", "_settle", "_settled", "acker", "key")

    def __init__(
        self,
        envelope: Envelope,
        settle: Settle,
        dedup: Dedup | None = None,
        key: str = "",
        acker: Acker | None = None,
    ) -> None:
        self.envelope = envelope
        self._settle = settle
        self._settled = False
        self._dedup = dedup
        self.key = key
        """What :class:`Dedup` knows this message by (empty without one)."""
        self._copies: list[Settle] | None = None
        self.acker = acker
        """The acker of the channel it came on, when known (to tell a dead channel's)."""

    def add_copy(self, settle: Settle) -> None:
        """Settle a redelivered copy together with this delivery."""
        if self._copies is None:
            self._copies = []
        self._copies.append(settle)

    def ack(self) -> None:
        """Acknowledge (batched with its neighbours); settling twice does nothing."""
        self._done(True)

    def requeue(self) -> None:
        """Give the message back to its queue; settling twice does nothing."""
        self._done(False)

    def _done(self, handled: bool) -> None:
        if self._settled:
            return
        self._settled = True
        self._settle(handled)
        if self._copies is not None:
            for settle in self._copies:
                settle(handled)
        if self._dedup is not None:
            self._dedup.done(self, handled)


class Dedup:
    """Recognises copies of a message one consumer already has, by envelope id.

    A copy comes from a redelivery (the ack of a handled message was lost with
    its connection, or the message sat in a mailbox when the connection
    dropped) or from a publish sent again after its confirm was lost. A copy of
    a message handled recently (the last ``window`` ids) is acknowledged and
    dropped; a copy of a message still waiting or being handled is settled
    together with it. A replayed dead letter is not a copy: its replay count
    is part of the key. Only copies reaching the same consumer are recognised.
    """

    __slots__ = ("_order", "inflight", "recent", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        """How many handled ids are remembered."""
        self.recent: set[str] = set()
        """Keys of messages handled recently."""
        self._order: deque[str] = deque()
        self.inflight: dict[str, RabbitDelivery] = {}
        """Deliveries handed on and not yet settled, by key."""

    @staticmethod
    def key_of(envelope: Envelope) -> str:
        """What a message is known by: its id, and its replay count when it was replayed."""
        replays = envelope.headers.get(REPLAYS_HEADER)
        return envelope.id if replays is None else f"{envelope.id}/{replays}"

    def admit(
        self, envelope: Envelope, settle: Settle, acker: Acker | None = None
    ) -> RabbitDelivery | None:
        """The delivery to hand on, or ``None`` when ``envelope`` is a copy.

        A copy of a message handled recently is acknowledged here; a copy of one in
        flight is settled when that one is.
        """
        key = self.key_of(envelope)
        if key in self.recent:
            settle(True)
            return None
        original = self.inflight.get(key)
        if original is not None:
            original.add_copy(settle)
            return None
        delivery = self.inflight[key] = RabbitDelivery(envelope, settle, self, key, acker)
        return delivery

    def abandon(self, delivery: RabbitDelivery) -> None:
        """Forget a delivery that could not be handed on (it was not handled)."""
        if self.inflight.get(delivery.key) is delivery:
            del self.inflight[delivery.key]

    def done(self, delivery: RabbitDelivery, handled: bool) -> None:
        """Note that ``delivery`` was settled (``handled``, or given back)."""
        key = delivery.key
        if self.inflight.get(key) is delivery:
            del self.inflight[key]
        if handled and key not in self.recent:
            self.recent.add(key)
            order = self._order
            order.append(key)
            if len(order) > self.window:
                self.recent.discard(order.popleft())
