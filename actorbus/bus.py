"""``AsyncMessageBus``: the one core of actorbus, a thin facade over its parts.

Its methods are in three places: this module (start, shutdown, hooks, actor
trees, stats), :mod:`actorbus.bus_publishing` (publish, ask, stop requests) and
:mod:`actorbus.bus_queues` (subscriptions, dead letters, queue lengths).

Every operation is a coroutine. The bus starts lazily on first use (or on
``async with``), on the event loop of that first use, and belongs to that loop;
from other threads use :class:`~actorbus.sync_bus.MessageBus`.

What does the work, each in a module of its own:

- the broker, made by mode or URL and connected with the fallback rule
  (:mod:`actorbus.brokers.factory`); a bus that fell back to memory moves back
  to RabbitMQ by itself once it answers (:mod:`actorbus.healing`);
- the :class:`~actorbus.runtime.Runtime`: the actors' link to the broker,
  publishing, requests (``ask``) and dead letters;
- the actor trees (:mod:`actorbus.hosting`), placed by
  :class:`~actorbus.placement.Placement`;
- subscriptions (:mod:`actorbus.subscribing`, :mod:`actorbus.subscription`);
- the one stop of a whole system (:mod:`actorbus.control`);
- the shutdown's phases and report (:mod:`actorbus.shutdown`);
- ``stats()`` (:mod:`actorbus.stats`).

Start-up picks the broker by mode (constructor ``mode=`` > the
``TRADING_SYSTEM_MESSAGE_BUS_MODE`` variable > ``"in_memory"``). In RabbitMQ
mode an unreachable broker is not fatal by default: the bus logs a warning and
runs in memory (``bus.mode`` then says ``"in_memory"``); ``fallback=False``
makes it raise ``BrokerUnavailable`` instead; ``heal=False`` keeps a bus that
fell back in memory for good. A broker that answers but refuses (login,
virtual host, TLS, permissions) raises ``BrokerRefused`` either way. A prefix
that cannot make AMQP names is a ``ConfigurationError`` at construction.
``declare="passive"`` checks the RabbitMQ topology instead of declaring it.
``url`` may list several nodes of a cluster; ``queue_type``, ``delivery_limit``
and ``shuffle_nodes`` go to the RabbitMQ broker, and ``broker_options`` passes
any other of its options (see ``brokers/rabbitmq/broker.py``).
Messages no queue is bound to are counted and logged at a limited rate;
``unroutable="keep"`` keeps them in the queue ``<prefix>.unroutable``.

A second ``shutdown`` does nothing; any later publish raises ``BusClosed``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from threading import get_ident
from typing import Any, Literal

from .actor import Actor
from .background import Background
from .brokers._unroutable import UnroutablePolicy
from .brokers.base import MessageBroker
from .brokers.factory import BrokerFactory
from .brokers.memory import InMemoryServer
from .bus_publishing import BusPublishing
from .bus_queues import BusQueues
from .children import ChildSpec
from .codec import Codec
from .config import Mode, check_prefix, resolve_mode
from .control import StopControl
from .errors import BusClosed, ConfigurationError
from .healing import Healer
from .hooks import Hooks, chain
from .hosting import TreeHost, name_of
from .messages import MessageTypes
from .placement import Placement
from .runtime import Runtime
from .shutdown import BusParts, shut_down
from .shutdown_report import ShutdownReport
from .stats import BusStats, actor_stats
from .subscribing import Subscriptions
from .supervisor import Supervisor

__all__ = ["AsyncMessageBus"]


class AsyncMessageBus(BusPublishing, BusQueues):
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
        broker_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._requested: Mode = resolve_mode(mode) if broker is None else broker.name  # type: ignore[assignment]
        self.prefix = check_prefix(prefix)
        """Prefix of exchange and queue names (``<prefix>.<subsystem>``)."""
        self.source = source or f"{socket.gethostname()}.{os.getpid()}"
        """Source name of messages published by the bus itself."""
        if unroutable not in ("drop", "keep"):
            raise ConfigurationError(f"unroutable must be 'drop' or 'keep', not {unroutable!r}")
        self._broker = broker
        self._fallback, self._heal = fallback, heal
        self._connect_timeout = connect_timeout
        self._brokers = BrokerFactory(
            prefix=self.prefix,
            codec=codec or Codec(),
            url=url,
            server=server,
            connect_timeout=connect_timeout,
            unroutable=unroutable,
            declare=declare,
            rabbitmq_options={
                "queue_type": queue_type,
                "delivery_limit": delivery_limit,
                "shuffle_nodes": shuffle_nodes,
                **(broker_options or {}),
            },
        )
        self._parts: BusParts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._starting: asyncio.Future[None] | None = None
        self._closing = self._closed = False
        self._done: asyncio.Event | None = None
        self._report: ShutdownReport | None = None
        self._healing: Healer | None = None
        self._hooks: list[Hooks] = []
        self._background = Background("a background publish or subscribe")
        self._announcements = Background("announcing a system message")
        self._subscriptions = Subscriptions(
            self.prefix, ready=self._ready, spawn=self.spawn, stop=self.stop
        )
        self._stops = StopControl(self.prefix, self.source)
        self.stop_requested = self._stops.requested
        """Set when a ``system.stop`` for this prefix arrived (see :mod:`actorbus.control`)."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The mode in effect: the broker's once started, the requested one before."""
        parts = self._parts
        return parts.runtime.broker.name if parts is not None else self._requested  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._closed or self._closing

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this bus runs on, once started."""
        return self._loop

    @property
    def broker(self) -> MessageBroker | None:
        """The broker in use, once started."""
        return self._parts.runtime.broker if self._parts is not None else None

    async def __aenter__(self) -> AsyncMessageBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Connect and start the runtime; called by every operation, so optional."""
        if self._closed:
            raise BusClosed("the message bus was shut down")
        if self._parts is not None:
            if self._loop is not asyncio.get_running_loop():
                raise RuntimeError(
                    "this AsyncMessageBus runs on another event loop; "
                    "use MessageBus (the sync face) from other threads"
                )
            return
        if self._starting is not None:
            await asyncio.shield(self._starting)
            return
        self._loop, self._thread = asyncio.get_running_loop(), get_ident()
        starting = self._starting = self._loop.create_future()
        try:
            await self._start()
        except BaseException as exc:
            starting.set_exception(exc)
            starting.exception()  # retrieved: the caller gets it below
            self._starting = None
            raise
        starting.set_result(None)

    async def _start(self) -> None:
        broker, offline = await self._brokers.connect(
            self._broker or self._brokers.make(self._requested),
            fallback=self._fallback,
            heal=self._heal,
        )
        runtime = Runtime(broker, prefix=self.prefix, source=self.source)
        runtime.install_hooks(chain(self._hooks))
        await runtime.open()
        await self._stops.reopen(broker)
        host = TreeHost(runtime, source=self.source, closing=lambda: self._closing)
        await host.open()
        self._parts = BusParts(
            runtime, host, self._subscriptions, self._background, self._announcements, self._stops
        )
        self._announce(MessageTypes.SYSTEM_STARTUP, {"mode": broker.name})
        if offline is not None and self._heal:
            self._healing = Healer(
                offline,
                runtime,
                closed=lambda: self.closed,
                reopen_control=self._stops.reopen,
                announce=self._announce,
            )

    async def _ready(self) -> Runtime:
        if self._closed:
            raise BusClosed("the message bus was shut down")
        if self._parts is None:
            await self.start()
            assert self._parts is not None
        return self._parts.runtime

    async def shutdown(self, timeout: float = 5.0, *, drain: float | None = None) -> ShutdownReport:
        """Drain, stop deliveries, stop every actor, close the broker; report what was left.

        Returns within ``timeout`` plus a bounded margin (see :mod:`actorbus.shutdown`
        for the phases): for ``drain`` seconds (default: half the timeout) the bus
        finishes its work in flight; then deliveries stop, no actor starts a new
        message, handlers in progress get until ``timeout`` to finish, and only then
        is anything cancelled. The :class:`~actorbus.shutdown_report.ShutdownReport`
        counts what was handled, dead-lettered, returned to its queue or dropped. A
        spawn still starting fails with ``BusClosed``. A second call returns the first
        one's report (once that one is done, on the bus's loop).
        """
        if self.closed:
            done = self._done
            if done is not None and not done.is_set() and self._loop is asyncio.get_running_loop():
                await done.wait()
            return self._report or ShutdownReport(mode=self.mode, timeout=timeout, seconds=0.0)
        self._closing = True
        done = self._done = asyncio.Event()
        begun = time.monotonic()
        try:
            if self._healing is not None:  # a switch under way finishes first (within timeout)
                await self._healing.stop(timeout)
            if self._parts is None and self._starting is not None:  # a start under way
                await asyncio.wait([self._starting], timeout=max(timeout, self._connect_timeout))
            if self._parts is None:
                self._report = ShutdownReport(mode=self.mode, timeout=timeout, seconds=0.0)
            else:
                self._announce(MessageTypes.SYSTEM_SHUTDOWN, {"mode": self.mode})
                drain_for = timeout / 2 if drain is None else drain
                self._report = await shut_down(self._parts, self.mode, timeout, drain_for, begun)
            return self._report
        finally:
            self._closed = True
            done.set()

    def add_hooks(self, hooks: Hooks) -> None:
        """Call ``hooks`` at every publish and every handled message (see ``actorbus.hooks``).

        Telemetry (``actorbus.telemetry``) installs itself this way; any time, before or
        after start. Hooks run in the order they were added.
        """
        self._hooks.append(hooks)
        if self._parts is not None:
            self._parts.runtime.install_hooks(chain(self._hooks))

    # -- one stop for the whole system --------------------------------------------------------

    def add_stop_listener(self, listener: Callable[[str], Any]) -> None:
        """Call ``listener(reason)`` (on the bus's loop) when a ``system.stop`` arrives."""
        self._stops.add_listener(listener)

    # -- subscribers and actors ---------------------------------------------------------------

    async def spawn(
        self,
        target: type[Actor] | ChildSpec | Supervisor,
        *,
        actors: list[str] | tuple[str, ...] | None = None,
    ) -> Supervisor:
        """Start an actor or a supervisor tree; return once every child has started.

        ``actors`` places the tree: only the actors named run in this process (see
        :mod:`actorbus.placement`). A child that cannot start within its supervisor's
        limits (or whose ``on_start`` outlasts its ``start_timeout``) makes this raise
        ``ActorStartError``; a shutdown meanwhile, ``BusClosed``.
        """
        await self._ready()
        if self._closing:
            raise BusClosed("the message bus is shutting down")
        supervisor = (
            target if isinstance(target, Supervisor) else Supervisor([target], name=name_of(target))
        )
        assert self._parts is not None
        await self._parts.host.spawn(supervisor, Placement(actors))
        return supervisor

    async def stop(self, supervisor: Supervisor) -> None:
        """Stop a tree started with :meth:`spawn`; its unread messages go back to its queues."""
        if self._parts is not None:
            await self._parts.host.stop(supervisor)

    # -- stats ----------------------------------------------------------------------------------

    def stats(self) -> BusStats:
        """A snapshot: the mode, the broker's counters, and each actor's (see ``stats``)."""
        if self._parts is None:
            return BusStats(mode=self.mode, closed=self.closed)
        runtime = self._parts.runtime
        actors = {}
        for cell in runtime.cells:
            key, number = cell.name, 1
            while key in actors:
                number += 1
                key = f"{cell.name}#{number}"
            actors[key] = actor_stats(cell)
        broker = runtime.broker.stats()
        return BusStats(
            mode=self.mode,
            closed=self.closed,
            unroutable=broker.unroutable,
            broker=broker,
            actors=actors,
        )
