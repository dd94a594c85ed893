"""The runtime a bus gives its actor trees: each actor's link to the broker.

A :class:`Runtime` owns, for one bus and one broker at a time:

- the actor **cells**: it builds each from its child spec, declares the cell's
  queue (bound to every type the actor handles), and feeds the cell's mailbox
  from it with a prefetch equal to the mailbox's capacity, so a slow actor holds
  its messages back in the queue (see ``brokers.base``); detaching a cell gives
  back what it had not handled;
- the **publisher** every actor and the bus publish through (``publishing``);
- **requests** and replies (``requests``);
- the actors' **dead letters** and their replay after a restart.

Every message crosses the broker, even between two actors of one process: that
is what makes messages durable over RabbitMQ and lets any process (or a client
in another language) take part; in memory the broker hands it straight to the
mailbox. Where each actor runs is its tree's :class:`~actorbus.placement.Placement`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .actor import ActorContext
from .brokers.base import DeadLetter, DeadLetterFilter, MessageBroker, QueueSpec
from .cell import ActorCell
from .children import ChildSpec
from .hooks import Hooks
from .messages import Envelope, make_envelope
from .publishing import Publisher
from .queues import actor_queue_name
from .requests import Requests
from .supervisor import Supervisor

__all__ = ["Runtime", "queue_spec_of", "tree_queue_specs"]

logger = logging.getLogger("actorbus.runtime")

IDLE_SWEEP = 1.0
"""Seconds between sweeps for idle actors: an actor idle that long gives up its task."""


def queue_spec_of(spec: ChildSpec, prefix: str) -> QueueSpec:
    """The queue of a child under ``prefix``: bound to what it handles, shaped by its options."""
    options = spec.queue_options or spec.actor.queue_options
    patterns = spec.patterns if spec.patterns is not None else spec.actor.handled_types()
    return QueueSpec.declared(actor_queue_name(prefix, options, spec.actor_name), patterns, options)


def tree_queue_specs(prefix: str, tree: Supervisor) -> list[QueueSpec]:
    """The queue of every actor in ``tree`` (nested trees too), as a runtime declares it."""
    specs: list[QueueSpec] = []
    for child in tree.children:
        if isinstance(child, Supervisor):
            specs.extend(tree_queue_specs(prefix, child))
        else:
            specs.append(queue_spec_of(child, prefix))
    return specs


class _ActorContext:
    """The runtime as one actor sees it (see ``actor.ActorContext``)."""

    __slots__ = ("_cell", "_runtime")

    def __init__(self, runtime: Runtime, cell: ActorCell) -> None:
        self._runtime = runtime
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
        pending = self._runtime.publisher.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        return await self._runtime.ask(message_type, data, timeout=timeout, source=self._cell.name)

    def stop(self) -> None:
        self._cell.request_stop()


class Runtime:
    """One bus's actor cells, publisher and requests, over one broker."""

    def __init__(self, broker: MessageBroker, *, prefix: str, source: str) -> None:
        self.prefix = prefix
        """Prefix of queue names."""
        self.publisher = Publisher(broker)
        """The outbound path."""
        self.requests = Requests(source)
        """Pending asks and the replies this bus sends."""
        self.cells: list[ActorCell] = []
        """Every attached cell, in attach order."""
        self.hooks: Hooks | None = None
        """Telemetry called at every publish and handled message, if any (an attribute:
        every handled message reads it)."""
        self.epoch = 0
        """Sweeps for idle actors so far (see :meth:`sweep`)."""
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def broker(self) -> MessageBroker:
        """The broker in use."""
        return self.publisher.broker

    def install_hooks(self, hooks: Hooks | None) -> None:
        """Call ``hooks`` at every publish and every handled message from now on."""
        self.hooks = hooks
        self.publisher.use(self.broker, hooks)

    async def open(self) -> None:
        """Create the reply address; start sweeping idle actors' tasks away."""
        await self.requests.open(self.broker)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_every(IDLE_SWEEP))

    async def close(self) -> None:
        """Stop sweeping (the bus is shutting down)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.wait([sweeper])

    async def _sweep_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.sweep()

    def sweep(self) -> None:
        """Let go of the tasks of actors idle since the last sweep (they keep their state).

        An actor's task ends after it has waited, idle, across one whole sweep
        period; its next delivery starts a new one. A busy actor is never touched.
        """
        self.epoch += 1
        for cell in self.cells:
            cell.go_dormant(self.epoch)

    # -- cells and their queues --------------------------------------------------------------

    def make_cell(self, spec: ChildSpec) -> ActorCell:
        """Build the cell of a child spec (its queue named and shaped for this prefix)."""
        return ActorCell(
            spec.factory or spec.actor,
            spec.actor,
            spec.actor_name,
            queue_spec_of(spec, self.prefix),
            self,
        )

    async def declare(self, cell: ActorCell) -> None:
        """Declare the cell's queue, bound to every pattern it has now."""
        await self.broker.declare_queue(cell.queue_spec)

    async def attach(self, cell: ActorCell) -> None:
        """Declare the cell's queue and bindings, and start feeding its mailbox."""
        await self.declare(cell)
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
        """Stop feeding the cell; its unread deliveries go back to the queue.

        Cancelling the consumer gives back every delivery it had not settled (see
        ``brokers.base``): what waits in the mailbox is only dropped from it.
        """
        consumer, cell.consumer = cell.consumer, None
        if consumer is None:
            return
        if cell in self.cells:
            self.cells.remove(cell)
        unread = cell.mailbox.take_all()
        cell.stats.returned += len(unread)
        await consumer.cancel()

    async def move_to(self, broker: MessageBroker) -> MessageBroker:
        """Carry on over ``broker`` (connected); return the one used until now.

        Every cell's queue is declared on the new broker first, then publishes and
        replies go to it, then each cell consumes from its new queue and its old
        consumer is paused (what it already put in the mailbox is handled and settled
        there). The old broker stays open for the caller to empty and close.
        """
        for cell in list(self.cells):
            await broker.declare_queue(cell.queue_spec)
        old = self.broker
        await self.requests.open(broker)
        self.publisher.use(broker, self.hooks)
        for cell in list(self.cells):
            previous = cell.consumer
            cell.consumer = await broker.consume(
                cell.queue, cell.mailbox, prefetch=cell.mailbox.capacity, owner=cell.name
            )
            if previous is not None:
                await previous.pause()
        return old

    # -- what cells and supervisors ask of the runtime -----------------------------------------

    def context_for(self, cell: ActorCell) -> ActorContext:
        """The context an actor of ``cell`` talks through."""
        return _ActorContext(self, cell)

    async def dead_letter(self, entry: DeadLetter) -> None:
        """Store a message an actor could not handle."""
        await self.broker.dead_letter(entry)

    async def replay_dead_letters(self, actor: str, max_replays: int) -> int:
        """Replay one actor's dead letters, each at most ``max_replays`` times."""
        return await self.broker.replay_dead_letters(
            DeadLetterFilter(actor=actor), max_replays=max_replays
        )

    async def reply(self, request: Envelope, result: Any, error: str | None = None) -> None:
        """Answer ``request`` with ``result``, or with ``error`` when its handler failed."""
        await self.requests.reply(self.broker, request, result, error)

    async def ask(
        self, message_type: str, data: Any, *, timeout: float, source: str | None = None
    ) -> Any:
        """Publish a request and wait for the first reply to it."""
        return await self.requests.ask(
            self.publisher.publish_nowait, message_type, data, timeout=timeout, source=source
        )
