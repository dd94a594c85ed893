"""Process death, with real OS processes: ``kill -9`` of consumers and of a publisher.

Every scenario counts by message sequence number, from what each process wrote
down (``worker.py``): a consumer records a message before its handler returns,
so before the ack; a publisher records a message once its publish returned,
i.e. RabbitMQ confirmed it. The broker is the shared one (only client
processes die here), each test on its own prefix.

- **competing consumers**, one killed: 0 lost; duplicates are messages the
  killed process had finished but whose ack died with it, so RabbitMQ gave
  them to the survivor again. Each must be on both records, the killed
  process's first, and there can be no more than its prefetch.
- **single_active**, the active instance killed: the standby takes over; 0
  lost; the survivor handles in publish order; and its first message starts
  after the killed one's last ended (never two handling at once).
- **a publisher killed mid-burst**: every message it recorded as confirmed is
  delivered; the ones delivered that it never saw confirmed are counted, and
  it claimed none of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from process_workers import Record, Worker, confirmed, records
from support.checker import LossChecker, record_row

from actorbus import Actor, AsyncMessageBus, Envelope, MessageTypes, handles

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

ORDER = MessageTypes.EXECUTION_ORDER_REQUEST
PREFETCH = 20  # the workers' mailbox size, hence their prefetch


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Wait (bounded) until ``condition()`` holds; return whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def publish_paced(bus: AsyncMessageBus, checker: LossChecker, count: int) -> None:
    """Publish ``seq`` 0..count-1, a few in flight, every one confirmed before it counts."""
    in_flight = asyncio.Semaphore(16)

    async def one(seq: int) -> None:
        try:
            checker.sent(str(seq))
            await bus.publish(ORDER, {"seq": seq})
            checker.confirmed(str(seq))
        finally:
            in_flight.release()

    tasks = []
    for seq in range(count):
        await in_flight.acquire()
        tasks.append(asyncio.create_task(one(seq)))
        await asyncio.sleep(0.001)
    await asyncio.gather(*tasks)


def handled_by(path: Path) -> list[Record]:
    return records(path)


async def test_kill_9_of_one_of_two_competing_consumers(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    count = 1500
    files = [tmp_path / "a.records", tmp_path / "b.records"]
    workers = [
        Worker("consume", rabbitmq_url, unique_prefix, str(path), "--delay", "0.001")
        for path in files
    ]
    checker = LossChecker("13. kill -9 of a competing consumer")
    try:
        async with AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        ) as bus:
            publishing = asyncio.create_task(publish_paced(bus, checker, count))
            assert await wait_for(lambda: len(records(files[0])) >= 200)
            killed_at = workers[0].kill()
            checker.mark_recovery_point(time.monotonic())
            await asyncio.wait_for(publishing, 120)

            def everything_handled() -> bool:
                return len({r.seq for f in files for r in records(f)}) >= count

            assert await wait_for(everything_handled), "not every message was handled"
            await asyncio.sleep(0.5)  # late duplicates show up
    finally:
        for worker in workers:
            worker.stop()
    killed, survivor = records(files[0]), records(files[1])
    for record in killed + survivor:
        checker.handled(str(record.seq))
    result = checker.result()
    calls = Counter(r.seq for r in killed + survivor)
    duplicates = sorted(seq for seq, n in calls.items() if n > 1)
    killed_seqs = {r.seq for r in killed}
    record_row(
        "13. kill -9 of one of two competing consumers",
        messages=count,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=None,
        note=(
            f"{len(killed)} handled by the killed process before kill -9; every duplicate "
            "was handled there, its ack lost with the process, then redelivered"
        ),
        result=result,
        extra={"killed_at": killed_at, "duplicate_seqs": duplicates},
    )
    assert result.lost == 0, result.summary()
    assert result.unexpected == 0, result.summary()
    assert all(r.end <= killed_at for r in killed)
    # Explained duplicates: handled by the killed process (ack lost with it), then
    # once more by the survivor; never more than the killed one's unacked window.
    assert set(duplicates) <= killed_seqs, duplicates
    assert all(calls[seq] == 2 for seq in duplicates)
    assert len(duplicates) <= PREFETCH, duplicates


async def test_kill_9_of_the_active_single_active_instance(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    count = 1000
    files = [tmp_path / "active.records", tmp_path / "standby.records"]
    active = Worker(
        "consume", rabbitmq_url, unique_prefix, str(files[0]), "--single-active", "--delay", "0.002"
    )
    standby = Worker(
        "consume", rabbitmq_url, unique_prefix, str(files[1]), "--single-active", "--delay", "0.002"
    )
    checker = LossChecker("14. kill -9 of the active single_active instance")
    try:
        assert (active.role, standby.role) == ("active", "standby")
        async with AsyncMessageBus(
            mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
        ) as bus:
            publishing = asyncio.create_task(publish_paced(bus, checker, count))
            assert await wait_for(lambda: len(records(files[0])) >= 300)
            assert not records(files[1]), "the standby handled while the active one ran"
            killed_at = active.kill()
            await asyncio.wait_for(publishing, 120)

            def everything_handled() -> bool:
                return len({r.seq for f in files for r in records(f)}) >= count

            assert await wait_for(everything_handled), "not every message was handled"
            await asyncio.sleep(0.5)
    finally:
        active.stop()
        standby.stop()
    first, second = records(files[0]), records(files[1])
    for record in first + second:
        checker.handled(str(record.seq))
    result = checker.result()
    takeover = second[0].start - killed_at
    overlap = max(r.end for r in first) - second[0].start
    calls = Counter(r.seq for r in first + second)
    duplicates = sorted(seq for seq, n in calls.items() if n > 1)
    record_row(
        "14. kill -9 of the active instance of a single_active actor",
        messages=count,
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=takeover,
        note=(
            "recovery = takeover: kill -9 to the standby's first handler start; the standby "
            "handled nothing before, and in publish order after"
        ),
        result=result,
        extra={"duplicate_seqs": duplicates, "killed_handled": len(first)},
    )
    assert result.lost == 0, result.summary()
    assert {r.pid for r in first} == {active.pid}
    assert {r.pid for r in second} == {standby.pid}
    assert overlap < 0, "the standby started a message before the active one's last ended"
    assert [r.seq for r in second] == sorted({r.seq for r in second}), "order broken"
    assert [r.seq for r in first] == sorted({r.seq for r in first})
    assert set(duplicates) <= {r.seq for r in first}
    assert len(duplicates) <= PREFETCH


class Tally(Actor):
    """The consumer of the publisher test: counts each message by its sequence number."""

    name = "counter"
    checker: LossChecker

    @handles(ORDER)
    async def on_order(self, msg: Envelope) -> None:
        self.checker.handled(str(msg.data["seq"]))


async def test_kill_9_of_a_publisher_mid_burst(
    rabbitmq_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    count = 50_000  # far more than it gets to send before it is killed
    path = tmp_path / "confirmed"
    checker = LossChecker("15. kill -9 of a publisher mid-burst")
    Tally.checker = checker
    async with AsyncMessageBus(
        mode="rabbitmq", url=rabbitmq_url, prefix=unique_prefix, fallback=False
    ) as bus:
        await bus.spawn(Tally)  # the queue is bound before the publisher starts
        publisher = Worker("publish", rabbitmq_url, unique_prefix, str(path), str(count))
        try:
            assert await wait_for(lambda: len(confirmed(path)) >= 1000)
            publisher.kill()
        finally:
            publisher.stop()
        claimed = set(confirmed(path))
        for seq in claimed:
            checker.sent(str(seq))
            checker.confirmed(str(seq))
        assert await wait_for(lambda: all(checker.seen(str(seq)) for seq in claimed), 60)
        await checker.wait_quiet(1.0)
    result = checker.result()
    delivered = {int(s) for s in checker._handled}
    unclaimed = delivered - claimed
    record_row(
        "15. kill -9 of a publisher process mid-burst",
        messages=len(claimed),
        lost=result.lost,
        duplicates=result.duplicated,
        recovery=None,
        note=(
            f"every publish it saw confirmed was delivered; {len(unclaimed)} more were "
            "delivered that it never saw confirmed (in flight at the kill), and it claimed none"
        ),
        result=result,
        extra={"delivered_unclaimed": len(unclaimed)},
    )
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert delivered <= set(range(count))
    assert len(unclaimed) <= 32, "more unconfirmed deliveries than publishes in flight"
