"""``AsyncMessageBus``: the one core of actorbus.

Every operation is a coroutine. The bus starts lazily on first use (or on
``async with``), on the event loop of that first use, and belongs to that loop;
from other threads use :class:`~actorbus.sync_bus.MessageBus`.

Start-up picks the broker by mode (constructor ``mode=`` > the
``TRADING_SYSTEM_MESSAGE_BUS_MODE`` variable > ``"in_memory"``). In RabbitMQ
mode an unreachable broker is not fatal by default: the bus logs a warning and
runs in memory (``bus.mode`` then says ``"in_memory"``); ``fallback=False``
makes it raise ``BrokerUnavailable`` instead. A bus that fell back keeps trying
RabbitMQ in the background and moves there by itself once it answers
(``heal=False`` keeps it in memory; see :mod:`actorbus.healing`). A broker that
answers but refuses (login, virtual host, a TLS certificate that does not verify,
permissions that refuse the bus's declarations) raises ``BrokerRefused`` either
way: that is a configuration or security mistake, and running in memory would
hide it. A prefix that cannot make AMQP names is a ``ConfigurationError`` at
construction. ``declare="passive"`` checks the RabbitMQ topology instead of
declaring it.

In RabbitMQ mode ``url`` may list several nodes of a cluster (a list, or URLs
separated by commas); ``queue_type`` (``classic`` | ``quorum``, else
``TRADING_SYSTEM_RABBITMQ_QUEUE_TYPE``), ``delivery_limit`` and
``shuffle_nodes`` go to the broker (see ``brokers/rabbitmq/broker.py``), and
``stats()["broker"]`` says which node is in use.
Messages no queue is bound to are counted (``stats()["unroutable"]``) and
logged at a limited rate; ``unroutable="keep"`` keeps them in the queue
``<prefix>.unroutable`` (see :mod:`actorbus.brokers._unroutable`; a broker
handed in with ``broker=`` takes the option itself). Subscriptions and their
queues follow the rules of :mod:`actorbus.subscription`.

Shutdown drains the work in flight, then stops deliveries and lets each actor
finish the handler it is in (all within its timeout), then stops every actor
tree and closes the broker; it returns a :class:`~actorbus.shutdown.ShutdownReport`
of what was handled and where the rest went (see :mod:`actorbus.shutdown`).
A second ``shutdown`` does nothing; any later publish raises ``BusClosed``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from threading import get_ident
from typing import Any, Literal

import msgspec

from . import shutdown as shutdown_phases
from .actor import Actor
from .brokers._unroutable import UnroutablePolicy
from .brokers.base import DeadLetter, DeadLetterFilter, MessageBroker
from .brokers.factory import BrokerFactory
from .brokers.memory import InMemoryServer
from .bus_stats import bus_stats
from .codec import Codec
from .config import Mode, check_prefix, resolve_mode
from .control import STOP_TYPE, StopControl
from .errors import BusClosed, ConfigurationError
from .healing import Healer
from .hooks import Hooks, chain
from .hosting import TreeHost, name_of
from .messages import Envelope, MessageTypes, make_envelope, validate_data, validate_type
from .router import Router
from .shutdown import GRACE, Accounting, ShutdownReport
from .subscribing import Subscriptions, validate_pattern
from .subscription import MessageHandler
from .supervisor import ChildSpec, Supervisor

__all__ = ["AsyncMessageBus", "validate_pattern"]

logger = logging.getLogger("actorbus.bus")


class AsyncMessageBus:
    """Publish, subscribe, spawn actor trees, ask, and manage dead letters; all async."""

    def __init__(
        self,
        mode: str | None = None,
        *,
        url: str | list[str] | None = None,
        prefix: str = "trading",
        source: str | None = None,
        broker: MessageBroker | None = None,
        server: InMemoryServer | None = None,
        codec: Codec | None = None,
        fallback: bool = True,
        heal: bool = True,
        connect_timeout: float = 5.0,
        unroutable: UnroutablePolicy = "drop",
        declare: Literal["create", "passive"] = "create",
        queue_type: str | None = None,
        delivery_limit: int | None = None,
        shuffle_nodes: bool = False,
    ) -> None:
        self._requested: Mode = resolve_mode(mode) if broker is None else broker.name  # type: ignore[assignment]
        self.prefix = check_prefix(prefix)
        """Prefix of exchange and queue names (``<prefix>.<subsystem>``)."""
        self.source = source or f"{socket.gethostname()}.{os.getpid()}"
        """Source name of messages published by the bus itself."""
        self._broker = broker
        self._fallback = fallback
        self._heal_enabled = heal
        self._healing: Healer | None = None
        self._connect_timeout = connect_timeout
        if unroutable not in ("drop", "keep"):
            raise ConfigurationError(f"unroutable must be 'drop' or 'keep', not {unroutable!r}")
        self._brokers = BrokerFactory(
            prefix=self.prefix,
            codec=codec or Codec(),
            url=url,
            server=server,
            connect_timeout=connect_timeout,
            unroutable=unroutable,
            declare=declare,
            queue_options={
                "queue_type": queue_type,
                "delivery_limit": delivery_limit,
                "shuffle_nodes": shuffle_nodes,
            },
        )
        self._router: Router | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._starting: asyncio.Future[None] | None = None
        self._closed = False
        self._closing = False
        self._shut_down: asyncio.Event | None = None
        self._hosting: TreeHost | None = None
        self._subscriptions = Subscriptions(
            self.prefix, ready=self._ready, spawn=self.spawn, stop=self.stop
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._announcements: set[asyncio.Task[None]] = set()
        self._hooks: list[Hooks] = []
        self._report: ShutdownReport | None = None
        self._stops = StopControl(self.prefix, self.source)
        self.stop_requested = self._stops.requested
        """Set when a ``system.stop`` for this prefix arrived (see :mod:`actorbus.control`)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The mode in effect: the broker's once started, the requested one before."""
        if self._router is not None:
            return self._router.broker.name  # type: ignore[return-value]
        return self._requested

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._closed or self._closing

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this bus runs on, once started."""
        return self._loop

    async def __aenter__(self) -> AsyncMessageBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Connect and start the runtime; called by every operation, so optional."""
        if self._closed:
            raise BusClosed("the message bus was shut down")
        if self._router is not None:
            self._check_loop()
            return
        if self._starting is not None:
            await asyncio.shield(self._starting)
            return
        self._loop = asyncio.get_running_loop()
        self._thread = get_ident()
        self._starting = self._loop.create_future()
        try:
            await self._start()
        except BaseException as exc:
            self._starting.set_exception(exc)
            self._starting.exception()  # retrieved: the caller gets it below
            self._starting = None
            raise
        self._starting.set_result(None)

    async def _start(self) -> None:
        broker, offline = await self._brokers.connect(
            self._broker or self._brokers.make(self._requested),
            fallback=self._fallback,
            heal=self._heal_enabled,
        )
        router = Router(broker, prefix=self.prefix, source=self.source)
        router.install_hooks(chain(self._hooks))
        await router.open()
        await self._stops.reopen(broker)
        self._hosting = TreeHost(router, source=self.source, closing=lambda: self._closing)
        await self._hosting.open()
        self._router = router
        logger.info("message bus started in %s mode", broker.name)
        self._announce(MessageTypes.SYSTEM_STARTUP, {"mode": broker.name})
        if offline is not None and self._heal_enabled:
            self._healing = Healer(
                offline,
                router,
                closed=lambda: self.closed,
                reopen_control=self._stops.reopen,
                announce=self._announce,
            )

    def _check_loop(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "this AsyncMessageBus runs on another event loop; "
                "use MessageBus (the sync face) from other threads"
            )

    async def _ready(self) -> Router:
        router = self._router
        if router is None or self._closed:
            if self._closed:
                raise BusClosed("the message bus was shut down")
            await self.start()
            assert self._router is not None
            return self._router
        return router

    async def shutdown(self, timeout: float = 5.0, *, drain: float | None = None) -> ShutdownReport:
        """Stop deliveries, drain, stop every actor, close the broker; report what was left.

        Returns within ``timeout`` plus a bounded margin (see :mod:`actorbus.shutdown`
        for the phases): for ``drain`` seconds (default: half the timeout) the bus
        finishes its work in flight; then deliveries stop, no actor starts a new
        message, handlers in progress get until ``timeout`` to finish, and only then
        is anything cancelled.
        The :class:`~actorbus.shutdown.ShutdownReport` counts what was handled,
        dead-lettered, returned to its queue or dropped; a WARNING line sums it up
        when anything was left unhandled. A spawn still starting fails with
        ``BusClosed``.

        A second call returns the first one's report: at once, or, while the first is
        still at work (on the bus's loop), once that one is done.
        """
        if self._closed or self._closing:
            done = self._shut_down
            if done is not None and not done.is_set() and self._loop is asyncio.get_running_loop():
                await done.wait()
            return self._report or self._empty_report(timeout)
        self._closing = True
        done = self._shut_down = asyncio.Event()
        try:
            self._report = await self._shutdown(timeout, timeout / 2 if drain is None else drain)
            return self._report
        finally:
            done.set()

    def _empty_report(self, timeout: float) -> ShutdownReport:
        return ShutdownReport(mode=self.mode, timeout=timeout, seconds=0.0)

    async def _shutdown(self, timeout: float, drain: float) -> ShutdownReport:
        begun = time.monotonic()
        deadline = begun + max(0.0, timeout)
        if self._healing is not None:  # a switch under way finishes first (within the timeout)
            await self._healing.stop(deadline - time.monotonic())
        if self._router is None:
            starting = self._starting
            if starting is not None:  # a start under way (bounded by the connect timeout)
                await asyncio.wait([starting], timeout=max(timeout, self._connect_timeout))
            if self._router is None:
                self._closed = True
                return self._empty_report(timeout)
        router = self._router
        self._announce(MessageTypes.SYSTEM_SHUTDOWN, {"mode": self.mode})
        accounting = Accounting(router.cells)
        cells = accounting.cells
        # 1. Drain: finish the work in flight, follow-ups through this bus's actors included
        # (publishing stays open while handlers run).
        await shutdown_phases.drain(cells, self._background, min(deadline, begun + drain))
        # 2. Stop: no new deliveries (the broker keeps what it holds), then no new message
        # started; handlers in progress have until the deadline.
        for cell in cells:
            cell.stop_deadline = deadline + GRACE
            await _quietly(router.pause(cell))
        assert self._hosting is not None
        trees = list(self._hosting.trees.items())
        await shutdown_phases.stop([tree for tree, _ in trees], cells, deadline)
        self._closed = True
        # 3. Cut what still runs (and spawns still starting), then wait a moment for it.
        for _, (scope, _ended) in trees:
            scope.cancel()
        ends = [ended for _, (_, ended) in trees]
        assert self._hosting is not None
        abandoned = await shutdown_phases.end_trees(router, self._hosting, ends, deadline + GRACE)
        await shutdown_phases.close(
            router,
            accounting,
            subscriptions=self._subscriptions,
            announcements=self._announcements,
            stops=self._stops,
            until=deadline + 2 * GRACE,
        )
        report = accounting.report(self.mode, timeout, abandoned)
        if report.unhandled or report.cut or report.abandoned:
            logger.warning("message bus %s", report.summary())
        else:
            logger.info("message bus %s", report.summary())
        return report

    def add_hooks(self, hooks: Hooks) -> None:
        """Call ``hooks`` at every publish and every handled message (see ``actorbus.hooks``).

        Telemetry (``actorbus.telemetry``) installs itself this way; any time, before or
        after start. Hooks run in the order they were added.
        """
        self._hooks.append(hooks)
        if self._router is not None:
            self._router.install_hooks(chain(self._hooks))

    @property
    def broker(self) -> MessageBroker | None:
        """The broker in use, once started (telemetry reads its connection state)."""
        return self._router.broker if self._router is not None else None

    # -- one stop for the whole system --------------------------------------------------------

    def add_stop_listener(self, listener: Callable[[str], Any]) -> None:
        """Call ``listener(reason)`` (on the bus's loop) when a ``system.stop`` arrives."""
        self._stops.add_listener(listener)

    async def request_stop(self, reason: str = "stop requested") -> None:
        """Ask every process on this prefix (every other bus) to wind down; see ``control``."""
        await self._ready()
        await self.publish(STOP_TYPE, {"reason": reason, "from": self._stops.asker})

    # -- publishing --------------------------------------------------------------------------

    def envelope(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
    ) -> Envelope:
        """Build a validated envelope as this bus would publish it (raises on bad input)."""
        return make_envelope(
            message_type,
            data,
            source=source or self.source,
            correlation_id=correlation_id,
            headers=headers,
        )

    async def publish(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
        mandatory: bool = False,
    ) -> str:
        """Publish a message; return its id once the broker has it.

        Waits while a receiving mailbox is full (backpressure). With ``mandatory``,
        raises ``Unroutable`` when nobody is bound to the type.
        """
        router = self._router
        loop = self._loop
        # On the bus's loop? Its thread with its loop running says so cheaply (a
        # thread runs one loop at a time; see actorbus._loops).
        if (
            router is None
            or self._closed
            or loop is None
            or get_ident() != self._thread
            or not loop.is_running()
        ):
            router = await self._ready()
            self._check_loop()
        envelope = make_envelope(
            message_type,
            data,
            source=source or self.source,
            correlation_id=correlation_id,
            headers=headers,
        )
        pending = router.publish_nowait(envelope, mandatory=mandatory)
        if pending is not None:
            await pending
        return envelope.id

    async def publish_envelope(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish an envelope built beforehand (by :meth:`envelope`).

        A hand-built envelope is checked like any publish: an unknown type raises
        ``UnknownMessageType``, data not matching the type's schema ``SchemaError``.
        """
        data = validate_data(validate_type(envelope.type), envelope.data)
        if data is not envelope.data:
            envelope = msgspec.structs.replace(envelope, data=data)
        router = await self._ready()
        await router.publish(envelope, mandatory=mandatory)

    def publish_soon(self, envelope: Envelope, *, mandatory: bool = False) -> None:
        """Publish in the background (from the bus's own loop); shutdown waits for it.

        A failure (``Unroutable`` for a ``mandatory`` one nobody is bound to) is logged.
        """
        if self._closed:
            raise BusClosed("the message bus was shut down")
        task = asyncio.get_running_loop().create_task(
            self.publish_envelope(envelope, mandatory=mandatory)
        )
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background publish failed", exc_info=task.exception())

    def _announce(self, message_type: str, data: dict[str, Any]) -> None:
        """Publish a system message (startup, shutdown) in the background.

        Not awaited: a subscriber may live on an event loop that is blocked waiting
        for this very start or shutdown (the sync face called from async code), and
        an announcement must never deadlock the bus. Shutdown gives them a moment.
        """
        task = asyncio.get_running_loop().create_task(self._publish_system(message_type, data))
        self._announcements.add(task)
        task.add_done_callback(self._announcement_done)

    def _announcement_done(self, task: asyncio.Task[None]) -> None:
        self._announcements.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("could not announce a system message", exc_info=task.exception())

    async def _publish_system(self, message_type: str, data: dict[str, Any]) -> None:
        assert self._router is not None
        await self._router.publish(
            make_envelope(message_type, {"source": self.source, **data}, source=self.source)
        )

    async def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request; return the first reply (``AskTimeout`` when none comes in time)."""
        router = self._router
        if router is None or self._closed:
            router = await self._ready()
        return await router.ask(message_type, data, timeout=timeout)

    # -- subscribers and actors ---------------------------------------------------------------

    async def subscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """Call ``handler(message_type, data)`` for every message of the types (or patterns).

        ``message_type`` is one type or topic pattern, or several (one queue, one order
        for them all). Each call is one subscription with a queue of its own, named
        after the handler and its set of types (see :mod:`actorbus.subscription` for
        when queues are shared); the same call again does nothing. With ``queue=`` the
        types go to that queue: subscribing the handler again adds them to it.
        Raises ``InvalidHandler`` for a handler not callable as ``handler(type, data)``.
        """
        await self._subscriptions.subscribe(message_type, handler, queue)

    async def unsubscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """End the subscription made with the same arguments (nothing if there is none).

        With ``queue=``, removes those types from that queue's subscription instead; its
        last type ends it.
        """
        await self._subscriptions.unsubscribe(message_type, handler, queue)

    async def spawn(
        self,
        target: type[Actor] | ChildSpec | Supervisor,
        *,
        actors: list[str] | tuple[str, ...] | None = None,
    ) -> Supervisor:
        """Start an actor or a supervisor tree; return once every child has started.

        ``actors`` places the tree: only the actors named run in this process (the
        others run wherever the same tree is spawned with their names). A child that
        cannot start within its supervisor's limits (or whose ``on_start`` outlasts its
        ``start_timeout``) makes this raise ``ActorStartError``; a shutdown meanwhile,
        ``BusClosed``.
        """
        await self._ready()
        if self._closing:
            raise BusClosed("the message bus is shutting down")
        supervisor = (
            target if isinstance(target, Supervisor) else Supervisor([target], name=name_of(target))
        )
        supervisor.place(frozenset(actors) if actors is not None else None)
        assert self._hosting is not None
        await self._hosting.spawn(supervisor)
        return supervisor

    async def stop(self, supervisor: Supervisor) -> None:
        """Stop a tree started with :meth:`spawn`; its unread messages go back to its queues."""
        if self._hosting is not None:
            await self._hosting.stop(supervisor)

    # -- dead letters and stats --------------------------------------------------------------

    async def dead_letters(
        self, *, actor: str | None = None, type: str | None = None
    ) -> list[DeadLetter]:
        """List dead letters, oldest first, optionally of one actor and/or type."""
        router = await self._ready()
        return await router.broker.dead_letters(DeadLetterFilter(actor=actor, type=type))

    async def replay_dead_letters(
        self, *, actor: str | None = None, type: str | None = None, max_replays: int | None = None
    ) -> int:
        """Send dead letters back to the queues they failed in; return how many."""
        router = await self._ready()
        return await router.broker.replay_dead_letters(
            DeadLetterFilter(actor=actor, type=type), max_replays=max_replays
        )

    async def purge_dead_letters(self, *, actor: str | None = None, type: str | None = None) -> int:
        """Delete dead letters; return how many."""
        router = await self._ready()
        return await router.broker.purge_dead_letters(DeadLetterFilter(actor=actor, type=type))

    async def queued(self) -> dict[str, int]:
        """Messages waiting in the broker for each actor of this process, by actor name.

        These are in the actor's queue but not yet in its mailbox (over RabbitMQ: ready
        in the queue, not yet delivered); with :meth:`stats`, whose ``mailbox`` and
        ``busy`` cover the rest, they tell whether an actor has work left.
        """
        router = await self._ready()
        return {
            cell.name: await router.broker.queue_length(cell.queue) for cell in list(router.cells)
        }

    async def queue_length(self, queue: str) -> int:
        """Messages waiting in the broker's queue ``queue`` (0: none, or no such queue)."""
        router = await self._ready()
        return await router.broker.queue_length(queue)

    def stats(self) -> dict[str, Any]:
        """Counters: the mode, and per actor its state, counts, mailbox depth and ``busy``.

        ``busy``: a message is being handled right now (or retried after a failure).
        ``unroutable``: messages this bus published that no queue was bound to. In
        memory also ``dropped`` (messages queues dropped at their length limit) and
        ``dead_letters_dropped`` (dead letters dropped at the store's cap), for the
        whole in-memory server.
        ``broker``: over RabbitMQ, the node in use (``node``, without credentials,
        ``node_index`` of ``nodes``), ``reconnects``, the queue type and delivery
        limit, and ``unavailable_queues`` (queues the node in use cannot serve now).
        ``role`` (``single_active`` actors only): ``"active"`` or ``"standby"`` (see
        ``RabbitConsumer.active`` for what a RabbitMQ consumer can know of it). A
        second instance of an actor in this bus is listed as ``name#2``, and so on.
        """
        return bus_stats(self._router, self.mode, self.closed)


async def _quietly(operation: Any) -> None:
    try:
        await operation
    except Exception:
        logger.debug("cleanup step failed", exc_info=True)
