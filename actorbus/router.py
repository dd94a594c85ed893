"""The router: from message types to queues, and from actors to their mailboxes.

The router is the runtime's one link to a broker. Outbound, it publishes each
envelope to the exchange of its type's subsystem (the broker's topic routing
then reaches every queue bound to the type). Inbound, it gives every actor cell
a queue named ``<prefix>.actor.<name>`` bound to the types the actor handles,
and feeds the cell's mailbox from it; the prefetch is the mailbox's capacity,
so a slow actor pushes back through the broker to its publishers.

The same path serves both modes. In memory, the broker delivers straight into
the mailbox. In RabbitMQ mode every message crosses the broker, even between
two actors of one process: that is what makes messages durable and lets any
process (or a client in another language) take part. Where the actors of a
tree run is their placement (``spawn(tree, actors=[...])``): types whose
handlers live elsewhere simply find their queues consumed by another process.

The router also owns request/reply (``ask``): one reply address per bus,
a future per pending request, keyed by the request's id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from threading import get_ident
from typing import Any

from ._loops import running_loop
from .actor import Actor
from .brokers.base import DeadLetter, DeadLetterFilter, MessageBroker, QueueSpec
from .cell import ActorCell
from .errors import AskFailed, AskTimeout
from .hooks import Hooks
from .messages import Envelope, log_fields, make_envelope, new_message_id
from .supervisor import ChildSpec

__all__ = ["Router", "actor_queue_name", "actor_queue_spec"]

logger = logging.getLogger("actorbus.router")

ERROR_HEADER = "x-actorbus-error"
"""Header of a reply that carries a failure instead of a result."""


class _ActorContext:
    """The runtime as one actor sees it."""

    __slots__ = ("_cell", "_router")

    def __init__(self, router: Router, cell: ActorCell) -> None:
        self._router = router
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        mandatory: bool = False,
    ) -> None:
        envelope = make_envelope(
            message_type,
            data,
            source=self._cell.name,
            correlation_id=correlation_id,
            headers=headers,
        )
        pending = self._router.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        return await self._router.ask(message_type, data, timeout=timeout, source=self._cell.name)

    def stop(self) -> None:
        self._cell.request_stop()


class _Deadline:
    """The timeout of one pending ask: ``asyncio.timeout(delay)`` semantics, on a shared timer.

    At the deadline the asking task is cancelled, and the cancellation leaves the
    ``with`` block as ``TimeoutError`` unless someone else also cancelled the task.
    """

    __slots__ = ("_cancelling", "_expired", "_group", "_task", "when")

    def __init__(
        self, group: dict[int, _Deadline], task: asyncio.Task[Any], timeout: float
    ) -> None:
        self._group = group
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self.when = time.monotonic() + timeout
        group[id(self)] = self  # pending in its group (by id: unique while it lives)

    def expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __enter__(self) -> _Deadline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if not self._expired:
            del self._group[id(self)]
        elif self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


class _Deadlines:
    """The timeouts of a router's pending asks, all on one timer.

    A timer per ask (``loop.call_later`` and its cancel) costs more than the rest
    of a local round trip. Asks with the same timeout expire in the order they
    started, so each timeout value keeps its asks in an insertion-ordered dict,
    and one timer is armed for the earliest deadline of all; in a steady stream
    of asks that timer is re-armed about once per timeout, not once per ask.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = get_ident()
        """The thread running ``loop`` (made on it)."""
        self._groups: dict[float, dict[int, _Deadline]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def start(self, timeout: float) -> _Deadline:
        """The deadline of an ask starting now in the current task."""
        task = asyncio.current_task(self.loop)
        if task is None:
            raise RuntimeError("ask must run inside a task")
        group = self._groups.get(timeout)
        if group is None:
            group = self._groups[timeout] = {}  # emptied groups go when the timer fires
        deadline = _Deadline(group, task, timeout)
        if deadline.when < self._armed_at:
            self._arm(deadline.when)
        return deadline

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_at = math.inf
        now = time.monotonic()
        earliest = math.inf
        for timeout, group in list(self._groups.items()):
            while group:
                key = next(iter(group))
                deadline = group[key]
                if deadline.when > now:
                    earliest = min(earliest, deadline.when)
                    break
                del group[key]
                deadline.expire()
            if not group:
                del self._groups[timeout]
        if earliest < math.inf:
            self._arm(earliest)


def actor_queue_name(prefix: str, actor_class: type[Actor], name: str) -> str:
    """The queue an actor named ``name`` consumes from under ``prefix``."""
    return actor_class.queue_options.name or f"{prefix}.actor.{name}"


def actor_queue_spec(actor_class: type[Actor], queue: str) -> QueueSpec:
    """The queue of an actor: bound to every type it handles, shaped by its queue options."""
    return QueueSpec.declared(queue, actor_class.handled_types(), actor_class.queue_options)


class Router:
    """Connects actor cells and publishers to one broker."""

    def __init__(self, broker: MessageBroker, *, prefix: str, source: str) -> None:
        self.broker = broker
        """The transport."""
        self.prefix = prefix
        """Prefix of queue names."""
        self.source = source
        """Source name of messages the bus itself publishes."""
        self.cells: list[ActorCell] = []
        """Every attached cell, in attach order."""
        self.reply_address: str | None = None
        """Where replies to this bus's requests arrive."""
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._deadlines: _Deadlines | None = None
        self.publish_nowait: Callable[..., Awaitable[None] | None] = broker.publish_nowait
        """``publish_nowait(envelope, mandatory=False)``: start publishing; return what is
        left to await, or ``None`` when it is done: the broker's own (see
        ``MessageBroker.publish_nowait``), through the publish hooks when there are some."""
        self.hooks: Hooks | None = None
        """Telemetry called at publish and at handle (see :meth:`install_hooks`)."""

    def install_hooks(self, hooks: Hooks | None) -> None:
        """Call ``hooks`` at every publish and every handled message from now on.

        Without hooks ``publish_nowait`` is the broker's own; with them, a function
        that passes the envelope through ``hooks.on_publish`` first.
        """
        self.hooks = hooks
        direct = self.broker.publish_nowait
        if hooks is None:
            self.publish_nowait = direct
            return
        on_publish = hooks.on_publish

        def publish_nowait(envelope: Envelope, *, mandatory: bool = False) -> Any:
            try:
                envelope = on_publish(envelope)
            except Exception:
                logger.exception("publish hook failed", extra=log_fields(envelope))
            return direct(envelope, mandatory=mandatory)

        self.publish_nowait = publish_nowait

    async def open(self) -> None:
        """Create the reply address."""
        self.reply_address = await self.broker.open_reply_address(self._on_reply)

    def queue_for(self, actor_class: type[Actor], name: str) -> str:
        """The queue an actor consumes from."""
        return actor_queue_name(self.prefix, actor_class, name)

    def make_cell(self, spec: ChildSpec) -> ActorCell:
        """Build the cell of a child spec."""
        name = spec.actor_name
        factory = spec.factory or spec.actor
        return ActorCell(factory, spec.actor, name, self.queue_for(spec.actor, name), self)

    async def attach_bindings(self, cell: ActorCell) -> None:
        """Declare the cell's queue, bound to every type its actor handles now."""
        await self.broker.declare_queue(actor_queue_spec(cell.actor_class, cell.queue))

    async def move_to(self, broker: MessageBroker) -> MessageBroker:
        """Carry on over ``broker`` (connected); return the one used until now.

        Every cell's queue is declared on the new broker first, then publishes and
        replies go to it, then each cell consumes from its new queue and its old
        consumer is cancelled (what the old one already put in the mailbox is
        handled there). The old broker stays open for the caller to empty and close.
        """
        for cell in list(self.cells):
            await broker.declare_queue(actor_queue_spec(cell.actor_class, cell.queue))
        old = self.broker
        self.reply_address = await broker.open_reply_address(self._on_reply)
        self.broker = broker
        self.install_hooks(self.hooks)  # publish_nowait: the new broker's, hooks kept
        for cell in list(self.cells):
            previous = cell.consumer
            cell.consumer = await broker.consume(
                cell.queue, cell.mailbox, prefetch=cell.mailbox.capacity, owner=cell.name
            )
            if previous is not None:
                await previous.cancel()
        return old

    async def attach(self, cell: ActorCell) -> None:
        """Declare the cell's queue and bindings, and start feeding its mailbox."""
        await self.attach_bindings(cell)
        cell.consumer = await self.broker.consume(
            cell.queue, cell.mailbox, prefetch=cell.mailbox.capacity, owner=cell.name
        )
        self.cells.append(cell)

    async def pause(self, cell: ActorCell) -> None:
        """Stop new deliveries to the cell; what its mailbox holds stays the cell's to settle."""
        consumer = cell.consumer
        if consumer is not None:
            await consumer.pause()

    async def detach(self, cell: ActorCell) -> None:
        """Stop feeding the cell, and give its unread deliveries back to the queue."""
        consumer, cell.consumer = cell.consumer, None
        if consumer is None:
            return
        await consumer.cancel()
        if cell in self.cells:
            self.cells.remove(cell)
        # Emptying the mailbox wakes publishers waiting on it (backpressure); let them put
        # their delivery in too, so it goes back to the queue rather than into a dead mailbox.
        unread = cell.mailbox.take_all()
        try:
            while True:
                await asyncio.sleep(0)
                batch = cell.mailbox.take_all()
                if not batch:
                    break
                unread.extend(batch)
        finally:
            # Each requeue goes to the head of the queue: requeue the newest first, keeping order.
            for delivery in reversed(unread):
                delivery.requeue()
            cell.stats.returned += len(unread)

    async def replay_dead_letters(self, actor: str, max_replays: int) -> int:
        """Replay one actor's dead letters, each at most ``max_replays`` times."""
        return await self.broker.replay_dead_letters(
            DeadLetterFilter(actor=actor), max_replays=max_replays
        )

    def context_for(self, cell: ActorCell) -> _ActorContext:
        """The context an actor of ``cell`` talks through."""
        return _ActorContext(self, cell)

    def publish(self, envelope: Envelope, *, mandatory: bool = False) -> Awaitable[None]:
        """Send an envelope to everyone bound to its type (await the result).

        A plain function returning the broker's coroutine, so that a publish costs
        one coroutine less on the hot path.
        """
        if self.hooks is not None:
            try:
                envelope = self.hooks.on_publish(envelope)
            except Exception:
                logger.exception("publish hook failed", extra=log_fields(envelope))
        return self.broker.publish(envelope, mandatory=mandatory)

    async def dead_letter(
        self,
        cell: ActorCell,
        envelope: Envelope,
        error: BaseException | str,
        attempts: int,
        first_failure: float | None,
    ) -> None:
        """Store a message the cell could not handle."""
        await self.broker.dead_letter(
            DeadLetter.for_failure(
                envelope,
                queue=cell.queue,
                actor=cell.name,
                error=error,
                attempts=attempts,
                first_failure=first_failure,
            )
        )

    async def reply(self, request: Envelope, result: Any, error: str | None = None) -> None:
        """Answer ``request`` with ``result``, or with ``error`` when its handler failed."""
        assert request.reply_to is not None
        reply = Envelope(
            id=new_message_id(),
            type=request.type,
            data=result,
            timestamp=request.timestamp,
            source=self.source,
            correlation_id=request.id,
            headers={ERROR_HEADER: error} if error is not None else {},
        )
        try:
            pending = self.broker.send_reply_nowait(request.reply_to, reply)
            if pending is not None:
                await pending
        except Exception:
            logger.exception(
                "reply to %s for %s failed",
                request.reply_to,
                request.id,
                extra=log_fields(request),
            )

    async def ask(
        self, message_type: str, data: Any, *, timeout: float, source: str | None = None
    ) -> Any:
        """Publish a request and wait for the first reply to it."""
        envelope = make_envelope(
            message_type, data, source=source or self.source, reply_to=self.reply_address
        )
        deadlines = self._deadlines
        if deadlines is None or deadlines.thread != get_ident() or not deadlines.loop.is_running():
            loop = running_loop()  # (a thread runs one loop at a time: see actorbus._loops)
            if deadlines is None or deadlines.loop is not loop:
                deadlines = self._deadlines = _Deadlines(loop)
        loop = deadlines.loop
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[envelope.id] = future
        try:
            with deadlines.start(timeout):
                pending = self.publish_nowait(envelope, mandatory=True)
                if pending is not None:
                    await pending
                return await future
        except TimeoutError:
            raise AskTimeout(f"no reply to {message_type} within {timeout}s") from None
        finally:
            self._pending.pop(envelope.id, None)

    def _on_reply(self, reply: Envelope) -> None:
        future = self._pending.get(reply.correlation_id or "")
        if future is None or future.done():
            return
        error = reply.headers.get(ERROR_HEADER)
        if error is not None:
            future.set_exception(AskFailed(error))
        else:
            future.set_result(reply.data)

    def fail_pending(self, error: BaseException) -> None:
        """Fail every ask still waiting for its reply (the bus is going away)."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
