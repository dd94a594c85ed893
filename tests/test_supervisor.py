"""Supervision: strategies, restart types, intensity, escalation, start failures, replays."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from support.waiting import wait_until

from actorbus import (
    Actor,
    ActorStartError,
    ActorState,
    AsyncMessageBus,
    ChildSpec,
    Envelope,
    MessageTypes,
    Restart,
    RetryPolicy,
    Strategy,
    Supervisor,
    handles,
)
from actorbus import supervisor as supervisor_module
from actorbus.brokers.memory import InMemoryServer

pytestmark = pytest.mark.anyio

CRASH = MessageTypes.EXCHANGE_ORDER_CANCEL  # a message whose handler crashes its actor
PING = MessageTypes.COMPONENT_STATUS


class Crash(Exception):
    """Marked fatal by the test actors' retry policy."""


FATAL = RetryPolicy(max_attempts=1, backoff=0.001, fatal=(Crash,))


class Log:
    """What the test actors did: starts per name, and instances seen."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.stops: dict[str, int] = {}
        self.instances: dict[str, list[int]] = {}

    def started(self, actor: Actor) -> None:
        name = actor.context.name
        self.starts[name] = self.starts.get(name, 0) + 1
        self.instances.setdefault(name, []).append(id(actor))

    def stopped(self, actor: Actor) -> None:
        name = actor.context.name
        self.stops[name] = self.stops.get(name, 0) + 1


def family(log: Log, *names: str) -> list[ChildSpec]:
    """Child specs of actors that count their starts and crash on CRASH addressed to them."""

    class Member(Actor):
        retry = FATAL

        def __init__(self) -> None:
            super().__init__()
            self.handled = 0

        async def on_start(self) -> None:
            log.started(self)

        async def on_stop(self) -> None:
            log.stopped(self)

        @handles(CRASH)
        async def on_crash(self, msg: Envelope) -> None:
            if msg.data["target"] == self.context.name:
                raise Crash(f"{self.context.name} told to crash")

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> str:
            self.handled += 1
            if msg.data.get("stop") == self.context.name:
                self.stop()
            return self.context.name

    return [ChildSpec(Member, name=name) for name in names]


def sup(children: list[Any], **options: Any) -> Supervisor:
    """A supervisor that does not replay dead letters (tests of replays say so)."""
    options.setdefault("max_replays", 0)
    return Supervisor(children, **options)


async def system_errors(bus: AsyncMessageBus) -> list[Any]:
    errors: list[Any] = []

    def on_error(message_type: str, data: Any) -> None:
        errors.append(data)

    await bus.subscribe(MessageTypes.SYSTEM_ERROR, on_error)
    return errors


async def test_children_are_started_in_order_and_spawn_waits(bus: AsyncMessageBus) -> None:
    log = Log()
    supervisor = await bus.spawn(sup(family(log, "a", "b", "c")))
    assert list(log.starts) == ["a", "b", "c"]
    assert [cell.name for cell in supervisor.cells] == ["a", "b", "c"]
    assert all(cell.state is ActorState.RUNNING for cell in supervisor.cells)


async def test_one_for_one_restarts_only_the_crashed_child(bus: AsyncMessageBus) -> None:
    log = Log()
    supervisor = await bus.spawn(sup(family(log, "a", "b", "c"), strategy="one_for_one"))
    await bus.publish(CRASH, {"target": "b"})
    await wait_until(lambda: log.starts.get("b") == 2)
    assert log.starts == {"a": 1, "b": 2, "c": 1}
    # fresh instance
    assert len(set(log.instances["b"])) == 2
    b = supervisor.cells[1]
    assert b.instance is not None
    assert b.instance.handled == 0  # type: ignore[attr-defined]
    await wait_until(lambda: b.state is ActorState.RUNNING)
    assert bus.stats().actors["b"].restarts == 1
    assert bus.stats().actors["a"].restarts == 0


async def test_one_for_all_restarts_every_child(bus: AsyncMessageBus) -> None:
    log = Log()
    await bus.spawn(sup(family(log, "a", "b", "c"), strategy=Strategy.ONE_FOR_ALL))
    await bus.publish(CRASH, {"target": "b"})
    await wait_until(lambda: log.starts == {"a": 2, "b": 2, "c": 2})
    assert log.stops == {"a": 1, "b": 1, "c": 1}
    stats = bus.stats().actors
    assert [stats[n].restarts for n in "abc"] == [1, 1, 1]


async def test_rest_for_one_restarts_the_child_and_those_after(bus: AsyncMessageBus) -> None:
    log = Log()
    await bus.spawn(sup(family(log, "a", "b", "c"), strategy="rest_for_one"))
    await bus.publish(CRASH, {"target": "b"})
    await wait_until(lambda: log.starts == {"a": 1, "b": 2, "c": 2})
    await bus.publish(CRASH, {"target": "c"})
    await wait_until(lambda: log.starts == {"a": 1, "b": 2, "c": 3})
    await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: log.starts == {"a": 2, "b": 3, "c": 4})


async def test_restarted_children_keep_their_mailbox(bus: AsyncMessageBus) -> None:
    log = Log()
    await bus.spawn(sup(family(log, "a")))
    await bus.publish(CRASH, {"target": "a"})
    for _ in range(20):
        await bus.publish(PING, {})
    await wait_until(lambda: bus.stats().actors["a"].processed == 20)


async def test_permanent_child_restarts_after_a_normal_stop(bus: AsyncMessageBus) -> None:
    log = Log()
    await bus.spawn(sup(family(log, "a")))
    await bus.publish(PING, {"stop": "a"})
    await wait_until(lambda: log.starts.get("a") == 2)


async def test_transient_child_restarts_after_a_crash_only(bus: AsyncMessageBus) -> None:
    log = Log()
    (spec,) = family(log, "t")
    await bus.spawn(sup([ChildSpec(spec.actor, name="t", restart=Restart.TRANSIENT)]))
    await bus.publish(CRASH, {"target": "t"})
    await wait_until(lambda: log.starts.get("t") == 2)
    await bus.publish(PING, {"stop": "t"})
    await wait_until(lambda: "t" not in bus.stats().actors)
    assert log.starts["t"] == 2


async def test_temporary_child_is_never_restarted(bus: AsyncMessageBus) -> None:
    log = Log()
    specs = family(log, "tmp", "other")
    tree = sup([ChildSpec(specs[0].actor, name="tmp", restart="temporary"), specs[1]])  # type: ignore[arg-type]
    await bus.spawn(tree)
    await bus.publish(CRASH, {"target": "tmp"})
    await wait_until(lambda: "tmp" not in bus.stats().actors)
    assert log.starts == {"tmp": 1, "other": 1}
    assert tree.state is ActorState.RUNNING
    assert await bus.ask(PING, {}, timeout=2) == "other"


async def test_root_giving_up_publishes_system_error_and_stops_the_tree(
    bus: AsyncMessageBus,
) -> None:
    errors = await system_errors(bus)
    log = Log()
    tree = sup(family(log, "a", "b"), max_restarts=2, within=60.0, name="root")
    await bus.spawn(tree)
    for _ in range(3):
        await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: len(errors) == 1)
    assert errors[0]["supervisor"] == "root"
    assert "SupervisorGaveUp" in errors[0]["error"]
    await wait_until(lambda: tree.state is ActorState.FAILED)
    assert "a" not in bus.stats().actors
    assert "b" not in bus.stats().actors
    assert log.starts == {"a": 3, "b": 1}
    # the bus keeps working
    log2 = Log()
    await bus.spawn(sup(family(log2, "c")))
    assert await bus.ask(PING, {}, timeout=2) == "c"


async def test_restart_intensity_window_forgets_old_restarts(
    bus: AsyncMessageBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    # the supervisor's own clock, moved by hand (the event loop keeps the real one)
    monkeypatch.setattr(supervisor_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    log = Log()
    tree = sup(family(log, "a"), max_restarts=1, within=10.0)
    await bus.spawn(tree)
    for n in range(3):
        await bus.publish(CRASH, {"target": "a"})
        await wait_until(lambda n=n: log.starts.get("a") == n + 2)  # type: ignore[misc]
        now[0] += 11.0  # the window passes: older restarts no longer count
    assert tree.state is ActorState.RUNNING
    # two restarts within the window are one too many
    await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: log.starts.get("a") == 5)
    await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: tree.state is ActorState.FAILED)


async def test_nested_supervisor_escalates_to_its_parent(bus: AsyncMessageBus) -> None:
    errors = await system_errors(bus)
    log = Log()
    inner = sup(family(log, "x", "y"), max_restarts=1, within=60.0, name="inner")
    outer = sup([inner, *family(log, "z")], strategy="one_for_one", name="outer")
    await bus.spawn(outer)
    assert [cell.name for cell in outer.cells] == ["x", "y", "z"]
    await bus.publish(CRASH, {"target": "x"})  # inner restarts x
    await wait_until(lambda: log.starts.get("x") == 2)
    await bus.publish(CRASH, {"target": "x"})  # inner gives up; outer restarts inner
    await wait_until(lambda: log.starts.get("x") == 3 and log.starts.get("y") == 2)
    await wait_until(lambda: inner.state is ActorState.RUNNING)
    assert log.starts["z"] == 1
    # the restarted inner supervisor starts with a fresh restart budget
    await bus.publish(CRASH, {"target": "x"})
    await wait_until(lambda: log.starts.get("x") == 4)
    await wait_until(lambda: outer.cells[0].state is ActorState.RUNNING)
    assert log.starts["y"] == 2
    assert errors == []
    assert await bus.ask(PING, {}, timeout=2) in {"x", "y", "z"}


async def test_escalation_all_the_way_up(bus: AsyncMessageBus) -> None:
    errors = await system_errors(bus)
    log = Log()
    inner = sup(family(log, "x"), max_restarts=0, within=60.0, name="inner")
    outer = sup([inner], max_restarts=0, within=60.0, name="outer")
    await bus.spawn(outer)
    await bus.publish(CRASH, {"target": "x"})
    await wait_until(lambda: len(errors) == 1)
    assert errors[0]["supervisor"] == "outer"
    await wait_until(lambda: outer.state is ActorState.FAILED)


async def test_on_start_failure_is_retried(bus: AsyncMessageBus) -> None:
    attempts = 0

    class Shaky(Actor):
        async def on_start(self) -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise ConnectionError("exchange not ready")

    supervisor = await bus.spawn(sup([Shaky], max_restarts=5, within=60.0))
    assert attempts == 3
    assert supervisor.cells[0].state is ActorState.RUNNING
    assert bus.stats().actors["shaky"].restarts == 2


async def test_on_start_failing_for_good_makes_spawn_raise(bus: AsyncMessageBus) -> None:
    attempts = 0

    class Doomed(Actor):
        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None: ...

        async def on_start(self) -> None:
            nonlocal attempts
            attempts += 1
            raise ConnectionError("exchange down")

    with pytest.raises(ActorStartError, match="ConnectionError: exchange down") as info:
        await bus.spawn(sup([Doomed], max_restarts=2, within=60.0))
    assert attempts == 3
    assert isinstance(info.value.__cause__, ConnectionError)
    assert "doomed" not in bus.stats().actors
    # plain actor class: same, with the default limits
    with pytest.raises(ActorStartError):
        await bus.spawn(Doomed)
    # the bus keeps working
    log = Log()
    await bus.spawn(sup(family(log, "ok")))
    assert await bus.ask(PING, {}, timeout=2) == "ok"


async def test_start_failure_after_earlier_children_stops_them(bus: AsyncMessageBus) -> None:
    log = Log()

    class Never(Actor):
        async def on_start(self) -> None:
            raise RuntimeError("no")

    with pytest.raises(ActorStartError):
        await bus.spawn(sup([*family(log, "first"), Never], max_restarts=0))
    assert log.starts == {"first": 1}
    assert log.stops == {"first": 1}
    assert bus.stats().actors == {}


async def test_nested_start_failure_reaches_spawn(bus: AsyncMessageBus) -> None:
    class Never(Actor):
        async def on_start(self) -> None:
            raise RuntimeError("never")

    inner = sup([Never], max_restarts=0, name="inner")
    with pytest.raises(ActorStartError, match="never"):
        await bus.spawn(sup([inner], max_restarts=1, name="outer"))


async def test_on_start_failing_during_a_restart_gives_up_cleanly(server: InMemoryServer) -> None:
    starts: dict[str, int] = {}

    class Worker(Actor):
        retry = FATAL

        @handles(CRASH)
        async def on_crash(self, msg: Envelope) -> None:
            raise Crash("boom")

        async def on_start(self) -> None:
            starts["worker"] = starts.get("worker", 0) + 1

    class Fragile(Actor):
        """Starts once, then never again."""

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> str:
            return "fragile"

        async def on_start(self) -> None:
            starts["fragile"] = starts.get("fragile", 0) + 1
            if starts["fragile"] > 1:
                raise RuntimeError("cannot come back")

    async with AsyncMessageBus(mode="in_memory", server=server) as bus:
        errors = await system_errors(bus)
        tree = sup([Worker, Fragile], strategy="one_for_all", max_restarts=2, name="root")
        await bus.spawn(tree)
        await bus.publish(CRASH, {})
        await wait_until(lambda: len(errors) == 1)
        assert errors[0]["supervisor"] == "root"
        await wait_until(lambda: tree.state is ActorState.FAILED)
        assert not {"worker", "fragile"} & set(bus.stats().actors)
        # the bus keeps working after the tree is gone
        await bus.spawn(sup(family(Log(), "alive")))
        assert await bus.ask(PING, {}, timeout=2) == "alive"
    # and shuts down without raising what happened to the tree


async def test_simultaneous_crashes_restart_the_group_once(bus: AsyncMessageBus) -> None:
    log = Log()

    class Both(Actor):
        retry = FATAL

        async def on_start(self) -> None:
            log.started(self)

        @handles(CRASH)
        async def on_crash(self, msg: Envelope) -> None:
            raise Crash("everyone crashes")

    tree = sup(
        [ChildSpec(Both, name="p"), ChildSpec(Both, name="q")],
        strategy="one_for_all",
        max_restarts=10,
        within=60.0,
    )
    await bus.spawn(tree)
    await bus.publish(CRASH, {})
    await wait_until(lambda: bus.stats().actors["p"].dead_lettered >= 1)
    await wait_until(lambda: bus.stats().actors["q"].dead_lettered >= 1)
    await wait_until(lambda: all(c.state is ActorState.RUNNING for c in tree.cells))
    await asyncio.sleep(0.05)  # give a spurious second restart the chance to show up
    assert log.starts == {"p": 2, "q": 2}


async def test_dead_letters_are_replayed_after_restart_with_a_cap(bus: AsyncMessageBus) -> None:
    log = Log()
    (spec,) = family(log, "victim")
    tree = Supervisor([spec], max_restarts=20, within=60.0, max_replays=2)
    await bus.spawn(tree)
    await bus.publish(CRASH, {"target": "victim"})
    # crash, replay 1, crash, replay 2, crash, then the cap keeps it in the dead-letter queue
    await wait_until(lambda: log.starts.get("victim") == 4)
    await wait_until(lambda: tree.cells[0].state is ActorState.RUNNING)
    (entry,) = await bus.dead_letters(actor="victim")
    assert entry.replays == 2
    assert entry.error_type == "Crash"
    await asyncio.sleep(0.05)  # nothing loops on
    assert log.starts["victim"] == 4
    assert tree.state is ActorState.RUNNING


async def test_restart_replays_messages_that_now_succeed(bus: AsyncMessageBus) -> None:
    healthy = False
    handled: list[Any] = []

    class Fixable(Actor):
        retry = RetryPolicy(max_attempts=1, fatal=(Crash,))

        @handles(MessageTypes.STRATEGY_SIGNAL)
        async def on_signal(self, msg: Envelope) -> None:
            if not healthy:
                raise ValueError("bug")
            handled.append(msg.data)

        @handles(CRASH)
        async def on_crash(self, msg: Envelope) -> None:
            raise Crash("restart me")

    await bus.spawn(Supervisor([Fixable], max_replays=1, max_restarts=5, within=60.0))
    await bus.publish(MessageTypes.STRATEGY_SIGNAL, {"n": 1})
    await wait_until(lambda: bus.stats().actors["fixable"].dead_lettered == 1)
    healthy = True
    await bus.publish(CRASH, {})
    await wait_until(lambda: handled == [{"n": 1}])
    # the crash message itself stays dead-lettered after its one replay
    await wait_until(lambda: bus.stats().actors["fixable"].restarts == 2)
    entries = await bus.dead_letters()
    assert [e.envelope.type for e in entries] == [CRASH]


def test_child_validation() -> None:
    with pytest.raises(TypeError, match="child must be"):
        Supervisor([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="one_for_some"):
        Supervisor([], strategy="one_for_some")


async def test_spawning_a_running_supervisor_again_fails(bus: AsyncMessageBus) -> None:
    tree = sup(family(Log(), "solo"))
    await bus.spawn(tree)
    with pytest.raises(RuntimeError, match="already running"):
        await bus.spawn(tree)
    assert await bus.ask(PING, {}, timeout=2) == "solo"


async def test_stop_a_tree(bus: AsyncMessageBus) -> None:
    log = Log()
    tree = await bus.spawn(sup(family(log, "a", "b")))
    await bus.stop(tree)
    assert log.stops == {"a": 1, "b": 1}
    assert tree.state is ActorState.STOPPED
    assert [cell.state for cell in tree.cells] == [ActorState.STOPPED] * 2
    assert bus.stats().actors == {}
    await bus.stop(tree)  # twice is harmless


async def test_factory_builds_each_incarnation_and_on_stop_errors_are_contained(
    bus: AsyncMessageBus,
) -> None:
    built: list[int] = []

    class Configured(Actor):
        retry = FATAL

        def __init__(self, threshold: int) -> None:
            super().__init__()
            self.threshold = threshold
            built.append(threshold)

        @handles(CRASH)
        async def on_crash(self, msg: Envelope) -> None:
            raise Crash("again")

        @handles(PING)
        async def on_ping(self, msg: Envelope) -> int:
            return self.threshold

        async def on_stop(self) -> None:
            raise RuntimeError("on_stop is broken too")

    spec = ChildSpec(Configured, factory=lambda: Configured(7), name="configured")
    await bus.spawn(sup([spec]))
    await bus.publish(CRASH, {})
    await wait_until(lambda: len(built) == 2)
    assert await bus.ask(PING, {}, timeout=2) == 7
    assert bus.stats().actors["configured"].restarts == 1


def test_child_spec_restart_values() -> None:
    class Plain(Actor):
        pass

    assert ChildSpec(Plain, restart="transient").restart is Restart.TRANSIENT  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sometimes"):
        ChildSpec(Plain, restart="sometimes")  # type: ignore[arg-type]
    assert ChildSpec(Plain).actor_name == "plain"
    assert ChildSpec(Plain, name="other").actor_name == "other"


async def test_one_for_all_restarts_a_nested_supervisor_without_losing_messages(
    bus: AsyncMessageBus,
) -> None:
    log = Log()
    inner = sup(family(log, "x"), name="inner")
    outer = sup([inner, *family(log, "z")], strategy="one_for_all", name="outer")
    await bus.spawn(outer)
    for _ in range(10):
        await bus.publish(PING, {})
    await bus.publish(CRASH, {"target": "z"})
    for _ in range(10):
        await bus.publish(PING, {})
    await wait_until(lambda: log.starts == {"x": 2, "z": 2})
    # x handles the crash message too (it is not the target), z dead-lettered it
    await wait_until(lambda: bus.stats().actors["x"].processed == 21)
    await wait_until(lambda: bus.stats().actors["z"].processed == 20)
    assert inner.state is ActorState.RUNNING
    assert bus.stats().actors["x"].restarts == 0  # restarted by way of its supervisor


async def test_a_tree_that_gave_up_can_be_spawned_again(bus: AsyncMessageBus) -> None:
    errors = await system_errors(bus)
    log = Log()
    tree = sup(family(log, "a"), max_restarts=0, name="again")
    await bus.spawn(tree)
    await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: len(errors) == 1 and tree.state is ActorState.FAILED)
    await bus.publish(PING, {})  # waits in the durable queue meanwhile
    await bus.spawn(tree)
    assert tree.state is ActorState.RUNNING
    assert log.starts["a"] == 2
    await wait_until(lambda: bus.stats().actors["a"].processed == 1)
    assert await bus.ask(PING, {}, timeout=2) == "a"


async def test_each_layer_logs_through_its_own_logger(
    bus: AsyncMessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="actorbus")
    errors = await system_errors(bus)
    log = Log()
    await bus.spawn(sup(family(log, "a"), max_restarts=0, name="logged"))
    await bus.publish(CRASH, {"target": "a"})
    await wait_until(lambda: len(errors) == 1)
    names = {record.name for record in caplog.records}
    assert {
        "actorbus.brokers.memory",  # the dead letter
        "actorbus.supervisor",  # the crash and the giving up
        "actorbus.bus",  # the tree that stopped
    } <= names
    assert all(name.startswith("actorbus.") for name in names)


async def test_no_task_outlives_its_tree(bus: AsyncMessageBus) -> None:
    await asyncio.sleep(0)
    before = set(asyncio.all_tasks())
    log = Log()
    inner = sup(family(log, "x", "y"), name="inner")
    tree = await bus.spawn(sup([inner, *family(log, "z")], strategy="one_for_all", name="outer"))
    await bus.publish(CRASH, {"target": "y"})
    await wait_until(lambda: log.starts.get("y") == 2 and inner.state is ActorState.RUNNING)
    assert len(set(asyncio.all_tasks()) - before) >= 3  # the actors run in tasks of their own
    await bus.stop(tree)
    for _ in range(3):
        await asyncio.sleep(0)
    assert set(asyncio.all_tasks()) - before == set()
