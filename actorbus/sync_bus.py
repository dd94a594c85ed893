"""``MessageBus``: the synchronous face of :class:`~actorbus.bus.AsyncMessageBus`.

Each sync method is one call through an anyio blocking portal to the async core,
which runs on a background event-loop thread (uvloop when available) started on
first use. Nothing here re-implements the bus.

Calls are thread-safe. Two cases never block, so they cannot deadlock:

- ``publish_sync`` from a thread that is running an event loop (a handler of
  this bus, or async code elsewhere): the message is validated right away (bad
  input raises here) and then published in the background; ``shutdown`` waits
  for it.
- ``subscribe`` from a handler of this bus: it is scheduled the same way.

Other blocking methods (``spawn``, ``ask``, ``shutdown``, ...) raise a clear
error when called from this bus's own loop thread; there, use the async API.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from .actor import Actor
from .brokers.base import DeadLetter
from .bus import AsyncMessageBus, validate_pattern
from .config import Mode, check_prefix
from .errors import BusClosed
from .messages import Envelope
from .shutdown import GRACE, ShutdownReport
from .subscription import MessageHandler, check_handler
from .supervisor import ChildSpec, Supervisor

__all__ = ["MessageBus"]

logger = logging.getLogger("actorbus.bus")

T = TypeVar("T")

_live: weakref.WeakSet[MessageBus] = weakref.WeakSet()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MessageBus:
    """The message bus for synchronous code; same options as ``AsyncMessageBus``."""

    def __init__(self, mode: str | None = None, **options: Any) -> None:
        if "prefix" in options:
            check_prefix(options["prefix"])  # a name RabbitMQ cannot take fails here, not later
        self._mode = mode
        self._options = options
        self._lock = threading.Lock()
        self._bus: AsyncMessageBus | None = None
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopped = False  # the loop thread is gone: nothing reaches the core any more
        self._shut_down = threading.Event()  # set once shutdown() has done its work
        self._report: ShutdownReport | None = None

    # -- the loop thread ---------------------------------------------------------------------

    def _ensure(self) -> AsyncMessageBus:
        bus = self._bus
        if bus is not None and not self._stopped:
            return bus  # while shutdown drains too: the core decides what it still takes
        with self._lock:
            if self._closed and (self._bus is None or self._stopped):
                raise BusClosed("the message bus was shut down")
            if self._bus is None:
                bus = AsyncMessageBus(self._mode, **self._options)
                self._portal = self._start_loop_thread()
                try:
                    self._portal.call(bus.start)
                except BaseException:
                    self._stop_loop_thread()
                    raise
                self._bus = bus
                _live.add(self)
            return self._bus

    def _start_loop_thread(self) -> BlockingPortal:
        handoff: queue.Queue[BlockingPortal | BaseException] = queue.Queue()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                handoff.put(portal)
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve, backend="asyncio", backend_options=_loop_options())
            except BaseException as exc:  # reaches the starting thread
                handoff.put(exc)

        self._thread = threading.Thread(target=main, name="actorbus-loop", daemon=True)
        self._thread.start()
        result = handoff.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def _stop_loop_thread(
        self, timeout: float = 10.0, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Stop the loop thread, cancelling calls still under way; wait at most ``timeout``.

        Given the portal's ``loop``, the stop is only scheduled there (a blocked loop
        cannot make this wait); the join bounds the wait either way.
        """
        portal, thread = self._portal, self._thread
        self._portal = self._thread = None
        if portal is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: already stopped, or closed
                if loop is not None:
                    asyncio.run_coroutine_threadsafe(portal.stop(True), loop)
                else:
                    portal.start_task_soon(portal.stop, True)
        if thread is not None:
            thread.join(timeout=timeout)
            if thread.is_alive():
                logger.error("the bus's event loop thread did not stop; left behind (daemon)")

    def _on_loop_thread(self) -> bool:
        bus = self._bus
        return bus is not None and bus.loop is not None and _running_loop() is bus.loop

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._ensure()
        if self._on_loop_thread():
            raise RuntimeError(
                f"MessageBus.{function.__name__} blocks and cannot run on the bus's own loop "
                "(inside a handler); use the async API there"
            )
        return self._through_portal(partial(function, *args, **kwargs))

    def _through_portal(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` on the loop thread; a shutdown that won the race is ``BusClosed``."""
        portal = self._portal
        try:
            if portal is None:
                raise RuntimeError("the bus's event loop thread is gone")
            return portal.call(function, *args)
        except RuntimeError:
            if self._closed:
                raise BusClosed("the message bus was shut down") from None
            raise

    # -- the API -----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The mode in effect (starts the bus to find out)."""
        return self._ensure().mode

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._closed

    def publish_sync(
        self,
        message_type: str,
        data: Any = None,
        *,
        correlation_id: str | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
        mandatory: bool = False,
    ) -> str:
        """Publish a message from any thread; return its id.

        Outside an event loop, returns once the broker has the message (with
        ``mandatory``, raises ``Unroutable`` when no queue is bound to the type).
        Inside one (e.g. from a handler), validates now and publishes in the
        background: an unroutable mandatory publish is then logged as an error.
        """
        bus = self._ensure()
        envelope = bus.envelope(
            message_type, data, correlation_id=correlation_id, headers=headers, source=source
        )
        if self._on_loop_thread():  # a handler of this bus: BusClosed, if so, raises here
            bus.publish_soon(envelope, mandatory=mandatory)
        elif _running_loop() is not None:
            assert bus.loop is not None
            try:
                bus.loop.call_soon_threadsafe(
                    partial(bus.publish_soon, envelope, mandatory=mandatory)
                )
            except RuntimeError:  # the loop is closed: the bus was shut down meanwhile
                raise BusClosed("the message bus was shut down") from None
        else:
            self._publish_from_thread(bus, envelope, mandatory)
        return envelope.id

    def _publish_from_thread(
        self, bus: AsyncMessageBus, envelope: Envelope, mandatory: bool = False
    ) -> None:
        """Publish on the loop thread and wait for it: the hottest sync path.

        Straight through ``run_coroutine_threadsafe`` rather than the portal, whose
        per-call task bookkeeping cost three times as much; the semantics are the
        same (the caller blocks until the broker has the message, errors re-raised).
        """
        loop = bus.loop
        publishing = bus.publish_envelope(envelope, mandatory=mandatory)
        try:
            if loop is None:
                raise RuntimeError("the bus's event loop thread is gone")
            future = asyncio.run_coroutine_threadsafe(publishing, loop)
        except RuntimeError:  # the loop is closed: a shutdown won the race
            publishing.close()
            if self._closed:
                raise BusClosed("the message bus was shut down") from None
            raise
        future.result()

    publish = publish_sync

    def subscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """Call ``handler(message_type, data)`` for each message of the types or patterns.

        As :meth:`AsyncMessageBus.subscribe`; a bad pattern or handler raises here.
        """
        bus = self._ensure()
        if self._on_loop_thread():
            for pattern in [message_type] if isinstance(message_type, str) else message_type:
                validate_pattern(pattern)
            check_handler(handler)
            task = asyncio.get_running_loop().create_task(
                bus.subscribe(message_type, handler, queue=queue)
            )
            bus._background.add(task)
            task.add_done_callback(bus._background_done)
            return
        self._call(bus.subscribe, message_type, handler, queue=queue)

    def unsubscribe(
        self,
        message_type: str | Sequence[str],
        handler: MessageHandler,
        *,
        queue: str | None = None,
    ) -> None:
        """End the subscription made with the same arguments (as the async one)."""
        self._call(self._ensure().unsubscribe, message_type, handler, queue=queue)

    def spawn(
        self,
        target: type[Actor] | ChildSpec | Supervisor,
        *,
        actors: list[str] | tuple[str, ...] | None = None,
    ) -> Supervisor:
        """Start an actor or supervisor tree; return once every child has started."""
        result: Supervisor = self._call(self._ensure().spawn, target, actors=actors)
        return result

    def ask(self, message_type: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request and return its reply."""
        return self._call(self._ensure().ask, message_type, data, timeout=timeout)

    def dead_letters(
        self, *, actor: str | None = None, type: str | None = None
    ) -> list[DeadLetter]:
        """List dead letters."""
        result: list[DeadLetter] = self._call(self._ensure().dead_letters, actor=actor, type=type)
        return result

    def replay_dead_letters(
        self, *, actor: str | None = None, type: str | None = None, max_replays: int | None = None
    ) -> int:
        """Replay dead letters; return how many."""
        result: int = self._call(
            self._ensure().replay_dead_letters, actor=actor, type=type, max_replays=max_replays
        )
        return result

    def purge_dead_letters(self, *, actor: str | None = None, type: str | None = None) -> int:
        """Delete dead letters; return how many."""
        result: int = self._call(self._ensure().purge_dead_letters, actor=actor, type=type)
        return result

    def stats(self) -> dict[str, Any]:
        """Counters per actor (also from inside a handler: reading them never blocks)."""
        bus = self._ensure()
        if self._on_loop_thread():
            return bus.stats()
        result: dict[str, Any] = self._call(_as_async(bus.stats))
        return result

    def shutdown(self, timeout: float = 5.0, *, drain: float | None = None) -> ShutdownReport:
        """Stop deliveries, drain, stop and close; return the report of what was left.

        Same phases and bounds as ``AsyncMessageBus.shutdown`` (it returns within
        ``timeout`` plus a bounded margin, spawns or calls still pending included).
        A second call returns the same report, once the first is done.
        """
        if self._on_loop_thread():  # refused before anything changes: the bus stays usable
            raise RuntimeError("MessageBus.shutdown cannot run inside a handler of the same bus")
        with self._lock:
            already, self._closed = self._closed, True
            bus = self._bus
        if already:
            self._shut_down.wait()
            return self._report or _empty_report(self._mode, timeout)
        if bus is None:
            self._report = _empty_report(self._mode, timeout)
            self._shut_down.set()
            return self._report
        try:
            assert bus.loop is not None
            begun = time.monotonic()
            # Scheduled without waiting for the loop (the portal would wait for it to answer):
            # a loop blocked by a plain handler must not block this call beyond its bound.
            call = asyncio.run_coroutine_threadsafe(bus.shutdown(timeout, drain=drain), bus.loop)
            try:
                self._report = call.result(timeout=max(0.0, timeout) + 4 * GRACE)
            except concurrent.futures.TimeoutError:  # the loop itself is blocked (a sync handler)
                logger.error("shutdown: the bus's event loop did not answer; left behind")
                self._report = ShutdownReport(
                    mode=bus.mode,
                    timeout=timeout,
                    seconds=time.monotonic() - begun,
                    abandoned=("event loop",),
                )
            return self._report
        finally:
            self._stopped = True
            self._stop_loop_thread(timeout=GRACE * 2, loop=bus.loop)
            _live.discard(self)
            self._shut_down.set()

    def __enter__(self) -> MessageBus:
        self._ensure()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


def _empty_report(mode: str | None, timeout: float) -> ShutdownReport:
    return ShutdownReport(mode=mode or "in_memory", timeout=timeout, seconds=0.0)


def _as_async(function: Callable[[], T]) -> Callable[[], Any]:
    async def call() -> T:
        return function()

    call.__name__ = function.__name__
    return call


def _loop_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


@atexit.register
def _shutdown_live_buses() -> None:
    for bus in list(_live):
        try:
            bus.shutdown(timeout=2.0)
        except Exception:
            logger.exception("shutdown at exit failed")
