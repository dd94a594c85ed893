"""Bounded mailboxes: where an actor's deliveries wait their turn.

A mailbox is a deque and a few futures, not an ``asyncio.Queue``: it is the
part of an actor that exists once per actor, so its size is the size of an idle
actor. One consumer (the actor's loop) takes; any number of producers put, and
wait while the mailbox is full: that wait is the backpressure a publisher feels.

:class:`ConflatingMailbox` keeps only the latest message per key for the types
it is told to conflate (market data: the newest quote of a symbol replaces an
unread older one); the message it replaces is acknowledged as handled, and
counted. Other types queue as usual.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from ._loops import running_loop
from .messages import Delivery, Envelope

__all__ = ["Conflate", "ConflatingMailbox", "Mailbox", "Reader"]


class _NoItems(deque[Any]):
    """The one shared, always-empty deque of every mailbox that never held anything.

    An empty deque costs about 760 bytes (its first block), as much as the rest
    of an idle actor's mailbox, so a mailbox gets its own on its first message.
    Adding to this one is a bug, and fails loudly instead of leaking items.
    """

    def append(self, item: Any) -> None:
        raise RuntimeError("the shared empty deque of mailboxes cannot hold items")

    def appendleft(self, item: Any) -> None:
        raise RuntimeError("the shared empty deque of mailboxes cannot hold items")


_NO_ITEMS = _NoItems()


class Reader(Protocol):
    """Who reads a mailbox without a task while it is empty: an actor cell."""

    def activate(self) -> None:
        """A delivery arrived: start reading."""


class Mailbox:
    """A bounded FIFO of deliveries for one consumer.

    A mailbox is the consumer's ``DeliverySink``: calling it is :meth:`put`, and
    :meth:`offer` lets a broker in the same event loop hand a delivery over
    without a coroutine when there is room.
    """

    __slots__ = ("_getter", "_interrupted", "_items", "_putters", "_reader", "capacity")

    def __init__(self, capacity: int = 1000) -> None:
        if capacity < 1:
            raise ValueError("mailbox capacity must be at least 1")
        self.capacity = capacity
        """Most deliveries held at once; a put beyond it waits."""
        self._items: deque[Any] = _NO_ITEMS
        self._getter: asyncio.Future[None] | None = None
        self._putters: deque[asyncio.Future[None]] | None = None
        self._interrupted = False
        self._reader: Reader | None = None

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, delivery: Delivery) -> None:
        """Add a delivery, waiting while the mailbox is full."""
        while len(self._items) >= self.capacity:
            await self._wait_for_room()
        self._append(delivery)

    def offer(self, delivery: Delivery) -> bool:
        """Add a delivery if that needs no wait; return whether it was added.

        Refuses when the mailbox is full or a put is already waiting (so an offer
        never overtakes a waiting publisher). Same effect as a ``put`` that does
        not wait, without a coroutine: the broker's fast path.
        """
        items = self._items
        if len(items) >= self.capacity or self._putters:
            return False
        if items is _NO_ITEMS:
            items = self._items = deque()
        items.append(delivery)  # _append, inlined
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)
                return True
        if self._reader is not None:
            self._wake_reader()
        return True

    def _append(self, item: Any) -> None:
        items = self._items
        if items is _NO_ITEMS:
            items = self._items = deque()
        items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)
                return
        if self._reader is not None:
            self._wake_reader()

    def wake_on_arrival(self, reader: Reader) -> None:
        """Call ``reader.activate()`` once, when the next delivery arrives (an actor with no task).

        An idle actor waits without a task of its own: its mailbox starts one when
        a delivery comes (see ``cell``). Called at once when one is waiting already.
        """
        self._reader = reader
        if self._items:
            self._wake_reader()

    def _wake_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.activate()

    @property
    def awaited(self) -> bool:
        """Whether a reader is waiting for the next delivery (a :meth:`waiter` not done)."""
        getter = self._getter
        return getter is not None and not getter.done()

    async def _wait_for_room(self) -> None:
        if self._putters is None:
            self._putters = deque()
        waiter = running_loop().create_future()
        self._putters.append(waiter)
        try:
            await waiter
        except BaseException:
            if not waiter.cancelled() and waiter.done():
                self._wake_putter()  # pass the turn we were given on
            elif waiter in self._putters:
                self._putters.remove(waiter)
            raise

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            waiter = putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def get_nowait(self) -> Delivery | None:
        """Take the oldest delivery, or ``None`` when empty."""
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if self._putters:
            self._wake_putter()
        return item  # type: ignore[no-any-return]  # (ConflatingMailbox unwraps its slots)

    def waiter(self) -> asyncio.Future[None] | None:
        """A future that completes when a delivery arrives or on :meth:`interrupt`.

        ``None`` when there is nothing to wait for: a delivery is waiting, or an
        interrupt came (which this consumes). The consumer's loop awaits it and
        then takes with :meth:`get_nowait`: :meth:`get` without a coroutine.
        """
        if self._items:
            return None
        if self._interrupted:
            self._interrupted = False
            return None
        getter = self._getter = running_loop().create_future()
        return getter

    async def get(self) -> Delivery | None:
        """Take the oldest delivery, waiting for one; ``None`` after :meth:`interrupt`."""
        while not self._items:
            if self._interrupted:
                self._interrupted = False
                return None
            self._getter = running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        item = self._items.popleft()
        if self._putters:
            self._wake_putter()
        return self._unwrap(item)

    def _unwrap(self, item: Any) -> Delivery:
        return item  # type: ignore[no-any-return]

    def interrupt(self) -> None:
        """Make a waiting (or the next waiting) :meth:`get` return ``None``."""
        self._interrupted = True
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def push_front(self, delivery: Delivery) -> None:
        """Put a delivery back at the head (an interrupted handler's message), over capacity."""
        if self._items is _NO_ITEMS:
            self._items = deque()
        self._items.appendleft(delivery)

    def take_back(self, which: Callable[[Delivery], bool]) -> list[Delivery]:
        """Remove the waiting deliveries ``which`` selects; return them, oldest first."""
        kept: list[Any] = []
        taken: list[Delivery] = []
        for item in self._items:
            delivery = self._unwrap_peek(item)
            if which(delivery):
                taken.append(self._unwrap(item))
            else:
                kept.append(item)
        if taken:
            self._items.clear()
            self._items.extend(kept)
            while self._putters and len(self._items) < self.capacity:
                self._wake_putter()
        return taken

    def _unwrap_peek(self, item: Any) -> Delivery:
        return item  # type: ignore[no-any-return]

    def take_all(self) -> list[Delivery]:
        """Empty the mailbox and return what it held, oldest first."""
        items = [self._unwrap(item) for item in self._items]
        self._items.clear()
        while self._putters:
            self._wake_putter()
        return items


class Conflate:
    """Mailbox policy: keep only the latest unread message per key for some types.

    ``key`` maps an envelope to its conflation key; the default is the type and
    ``data["symbol"]`` (or the attribute ``symbol`` of a Struct).
    """

    def __init__(
        self, types: Iterable[str], key: Callable[[Envelope], Hashable] | None = None
    ) -> None:
        self.types = frozenset(str(t) for t in types)
        """Message types that conflate; others queue as usual."""
        self.key = key or _symbol_key
        """Conflation key of an envelope of one of ``types``."""


def _symbol_key(envelope: Envelope) -> Hashable:
    data = envelope.data
    symbol = data.get("symbol") if isinstance(data, dict) else getattr(data, "symbol", None)
    return (envelope.type, symbol)


class ConflatingMailbox(Mailbox):
    """A mailbox applying a :class:`Conflate` policy."""

    __slots__ = ("_latest", "conflated", "policy")

    def __init__(self, capacity: int, policy: Conflate) -> None:
        super().__init__(capacity)
        self.policy = policy
        """The conflation policy."""
        self.conflated = 0
        """How many unread messages were replaced by newer ones."""
        self._latest: dict[Hashable, Delivery] = {}

    def offer(self, delivery: Delivery) -> bool:
        """Like :meth:`Mailbox.offer`; a conflated type replaces its unread one at once."""
        if delivery.envelope.type not in self.policy.types:
            return super().offer(delivery)
        return self._conflate(delivery, behind=self._putters)

    async def put(self, delivery: Delivery) -> None:
        """Replace an unread message with the same key, else queue (waiting when full)."""
        if delivery.envelope.type not in self.policy.types:
            await super().put(delivery)
            return
        while not self._conflate(delivery, behind=None):
            await self._wait_for_room()

    def _conflate(self, delivery: Delivery, behind: Any) -> bool:
        """Replace the unread message of its key (the older one is settled), else queue it.

        Refuses when a new slot is needed and there is no room, or ``behind`` (the
        putters an offer must not overtake) is not empty.
        """
        key = self.policy.key(delivery.envelope)
        older = self._latest.get(key)
        if older is not None:  # replaces the unread one: needs no room
            self._latest[key] = delivery
            self.conflated += 1
            older.ack()
            return True
        if len(self._items) >= self.capacity or behind:
            return False
        self._latest[key] = delivery
        self._append(_Slot(key))
        return True

    def _unwrap(self, item: Any) -> Delivery:
        if type(item) is _Slot:
            return self._latest.pop(item.key)
        return item  # type: ignore[no-any-return]

    def _unwrap_peek(self, item: Any) -> Delivery:
        if type(item) is _Slot:
            return self._latest[item.key]
        return item  # type: ignore[no-any-return]

    def get_nowait(self) -> Delivery | None:
        """Take the oldest delivery (the latest of its key, if conflated), or ``None``."""
        item = super().get_nowait()
        return None if item is None else self._unwrap(item)


class _Slot:
    __slots__ = ("key",)

    def __init__(self, key: Hashable) -> None:
        self.key = key
