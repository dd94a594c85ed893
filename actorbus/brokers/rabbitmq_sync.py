"""``RabbitMQBroker``: the thread-safe synchronous face of ``AsyncRabbitMQBroker``.

The async broker runs on a background event-loop thread (an anyio blocking
portal, as :class:`~actorbus.sync_bus.MessageBus` does); every method here is
one call through the portal (one typed helper, ``_call``), so any number of
threads may call at once and each call returns when the async one did
(``publish`` once the broker confirmed).
Nothing is implemented twice.

``consume`` takes a plain function ``callback(delivery)``; it runs in a worker
thread, and the delivery is acknowledged when it returns (requeued when it
raises), so a slow callback holds back only its own consumer's prefetch window.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ..messages import Delivery, Envelope
from .base import (
    ConsumerHandle,
    DeadLetter,
    DeadLetterFilter,
    FunctionSink,
    QueueSpec,
    ReplyHandler,
)
from .rabbitmq import AsyncRabbitMQBroker

__all__ = ["RabbitMQBroker", "SyncConsumer"]

P = ParamSpec("P")
T = TypeVar("T")


class SyncConsumer:
    """A consumer started through the sync face; :meth:`cancel` stops it."""

    def __init__(self, broker: RabbitMQBroker, handle: ConsumerHandle) -> None:
        self._broker = broker
        self._handle = handle

    def cancel(self) -> None:
        """Stop consuming; unsettled deliveries go back to the queue."""
        self._broker._call(self._handle.cancel)


def _in_a_thread(callback: Callable[[Delivery], None]) -> Callable[[Delivery], Awaitable[None]]:
    """Run ``callback`` in a worker thread; ack when it returns, requeue when it raises."""

    async def settle(delivery: Delivery) -> None:
        try:
            await anyio.to_thread.run_sync(callback, delivery)
        except Exception:
            delivery.requeue()
            raise
        delivery.ack()

    return settle


class RabbitMQBroker:
    """Thread-safe blocking RabbitMQ broker; takes the same options as the async one."""

    name = "rabbitmq"

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._lock = threading.Lock()
        self._url = url
        self._options = options
        self._broker: AsyncRabbitMQBroker | None = None

    @property
    def async_broker(self) -> AsyncRabbitMQBroker:
        """The async broker doing the work (on the portal's loop)."""
        if self._broker is None:
            raise RuntimeError("RabbitMQBroker is not connected: call connect() first")
        return self._broker

    def _call(self, function: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function(*args, **kwargs)`` on the broker's loop; return what it returned."""
        portal = self._portal
        if portal is None:
            raise RuntimeError("RabbitMQBroker is not connected: call connect() first")

        async def call() -> T:
            return await function(*args, **kwargs)

        return portal.call(call)

    def connect(self) -> None:
        """Start the loop thread and connect (``BrokerUnavailable`` when unreachable)."""
        with self._lock:
            if self._portal is not None:
                return
            portal_cm = start_blocking_portal(backend="asyncio")
            portal = portal_cm.__enter__()
            try:
                broker = portal.call(self._make_broker)
                portal.call(broker.connect)
            except BaseException:
                portal_cm.__exit__(None, None, None)
                raise
            self._portal_cm, self._portal, self._broker = portal_cm, portal, broker

    async def _make_broker(self) -> AsyncRabbitMQBroker:
        return AsyncRabbitMQBroker(self._url, **self._options)

    def close(self) -> None:
        """Close the broker and stop the loop thread; harmless twice."""
        with self._lock:
            portal_cm, broker = self._portal_cm, self._broker
            if portal_cm is None or broker is None:
                return
            try:
                self._call(broker.close)
            finally:
                self._portal_cm = self._portal = None
                portal_cm.__exit__(None, None, None)

    def __enter__(self) -> RabbitMQBroker:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def declare_queue(self, spec: QueueSpec) -> None:
        """Create a queue and its bindings."""
        self._call(self.async_broker.declare_queue, spec)

    def delete_queue(self, name: str) -> None:
        """Delete a queue."""
        self._call(self.async_broker.delete_queue, name)

    def unbind_queue(self, name: str, pattern: str) -> None:
        """Remove one binding."""
        self._call(self.async_broker.unbind_queue, name, pattern)

    def publish(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish; return once the broker confirmed."""
        self._call(self.async_broker.publish, envelope, mandatory=mandatory)

    def send_to_queue(self, queue: str, envelope: Envelope) -> None:
        """Put an envelope straight into one queue."""
        self._call(self.async_broker.send_to_queue, queue, envelope)

    def consume(
        self,
        queue: str,
        callback: Callable[[Delivery], None],
        *,
        prefetch: int = 100,
        owner: str | None = None,
    ) -> SyncConsumer:
        """Call ``callback(delivery)`` in a worker thread per message; ack when it returns.

        ``owner`` names the consumer in the dead letters the broker makes for it
        (default: the queue's name).
        """
        return SyncConsumer(
            self,
            self._call(
                self.async_broker.consume,
                queue,
                FunctionSink(_in_a_thread(callback)),
                prefetch=prefetch,
                owner=owner or queue,
            ),
        )

    def open_reply_address(self, on_reply: ReplyHandler) -> str:
        """Create the reply address (``on_reply`` runs on the broker's loop thread)."""
        return self._call(self.async_broker.open_reply_address, on_reply)

    def send_reply(self, address: str, envelope: Envelope) -> None:
        """Send a reply."""
        self._call(self.async_broker.send_reply, address, envelope)

    def dead_letter(self, entry: DeadLetter) -> None:
        """Store a dead letter."""
        self._call(self.async_broker.dead_letter, entry)

    def dead_letters(self, selection: DeadLetterFilter | None = None) -> list[DeadLetter]:
        """List dead letters."""
        return self._call(self.async_broker.dead_letters, selection or DeadLetterFilter())

    def replay_dead_letters(
        self, selection: DeadLetterFilter | None = None, *, max_replays: int | None = None
    ) -> int:
        """Replay dead letters to their queues; return how many."""
        return self._call(
            self.async_broker.replay_dead_letters,
            selection or DeadLetterFilter(),
            max_replays=max_replays,
        )

    def purge_dead_letters(self, selection: DeadLetterFilter | None = None) -> int:
        """Delete dead letters; return how many."""
        return self._call(self.async_broker.purge_dead_letters, selection or DeadLetterFilter())
