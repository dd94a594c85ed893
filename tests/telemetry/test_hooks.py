"""The hook interface: called at publish and at handle, with what telemetry needs."""

from __future__ import annotations

import msgspec
import pytest
from support.waiting import wait_until

from actorbus import Actor, AsyncMessageBus, MessageTypes, RetryPolicy, handles
from actorbus.hooks import HandleDone
from actorbus.messages import Envelope

pytestmark = pytest.mark.anyio


class Recorder:
    """Stamps a header on every publish and records every handled message."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.handled: list[tuple[str, str, str | None, str]] = []

    def on_publish(self, envelope: Envelope) -> Envelope:
        self.published.append(envelope.type)
        return msgspec.structs.replace(envelope, headers={**envelope.headers, "stamp": "yes"})

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        def done(error: BaseException | None) -> None:
            outcome = "ok" if error is None else type(error).__name__
            self.handled.append((actor, envelope.type, envelope.headers.get("stamp"), outcome))

        return done


class Broken:
    """A hook that fails everywhere: the messages must still go through."""

    def on_publish(self, envelope: Envelope) -> Envelope:
        raise RuntimeError("publish hook broken")

    def on_handle(self, actor: str, envelope: Envelope) -> HandleDone:
        raise RuntimeError("handle hook broken")


class Signals(Actor):
    """Handles signals; a signal for 'BAD' always fails."""

    seen: list[str] = []
    retry = RetryPolicy(max_attempts=2, backoff=0.001)

    @handles(MessageTypes.STRATEGY_SIGNAL)
    def on_signal(self, envelope: Envelope) -> None:
        if envelope.data["symbol"] == "BAD":
            raise ValueError("bad symbol")
        Signals.seen.append(envelope.data["symbol"])


async def test_hooks_see_every_publish_and_handle(bus: AsyncMessageBus) -> None:
    recorder = Recorder()
    bus.add_hooks(recorder)
    Signals.seen = []
    await bus.spawn(Signals)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BTC"})
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "BAD"})
    await wait_until(lambda: len(recorder.handled) == 2)
    assert recorder.handled == [
        ("signals", "strategy.signal", "yes", "ok"),
        ("signals", "strategy.signal", "yes", "ValueError"),
    ]
    assert recorder.published.count("strategy.signal") == 2
    assert bus.stats().actors["signals"].dead_lettered == 1


async def test_a_failing_hook_loses_no_message(bus: AsyncMessageBus) -> None:
    bus.add_hooks(Broken())
    Signals.seen = []
    await bus.spawn(Signals)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "ETH"})
    await wait_until(lambda: Signals.seen == ["ETH"])
    assert bus.stats().actors["signals"].processed == 1


async def test_a_failing_hook_beside_a_working_one_leaves_it_working(
    bus: AsyncMessageBus,
) -> None:
    recorder = Recorder()
    bus.add_hooks(Broken())
    bus.add_hooks(recorder)
    Signals.seen = []
    await bus.spawn(Signals)
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"symbol": "SOL"})
    await wait_until(lambda: Signals.seen == ["SOL"] and len(recorder.handled) == 1)
    assert recorder.handled == [("signals", "strategy.signal", "yes", "ok")]
