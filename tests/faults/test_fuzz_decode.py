"""Fuzzing the codec and the consumer's decode path: bad bytes and headers never escape.

Whatever arrives (any body, any content type, any AMQP properties and header
values), decoding yields an envelope or one ``DecodeError``, and the RabbitMQ
consumer either hands the message on or stores it as a dead letter; no other
exception leaves it (one that did would leave the delivery unsettled, holding a
prefetch slot for good). The last test sends random garbage through a real
broker to a running actor.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actorbus import Codec, DecodeError, Envelope
from actorbus.brokers.base import FunctionSink
from actorbus.errors import MessageTooLarge
from actorbus.messages import register_message_type

FUZZ = register_message_type("faults.fuzz")


class Typed(msgspec.Struct, frozen=True):
    symbol: str
    qty: int


TYPED = register_message_type("faults.fuzz_typed", Typed)

CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/msgpack",
            "application/x-msgpack",
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "",
            ";",
        ]
    ),
    st.text(max_size=30),
)
MESSAGE_TYPES = st.one_of(st.sampled_from([FUZZ, TYPED, "", "x", "nobody.registered"]), st.text())
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# AMQP field-table values as a client library may decode them.
FIELD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.sampled_from([math.inf, -math.inf, math.nan])
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.just(UTC)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
HEADER_KEYS = st.sampled_from(
    ["x-source", "x-attempt", "x-timestamp", "trace", "x-actorbus-replays"]
)
HEADERS = st.one_of(
    st.none(),
    st.dictionaries(st.one_of(HEADER_KEYS, st.text(max_size=10)), FIELD_VALUES, max_size=6),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSONISH.map(lambda v: msgspec.json.encode(v)),
    JSONISH.map(lambda v: msgspec.msgpack.encode(v)),
    st.fixed_dictionaries({"symbol": st.text(max_size=5), "qty": JSONISH}).map(msgspec.json.encode),
)

codec = Codec(max_size=4096)


@settings(max_examples=400, deadline=None)
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_decode_envelope_yields_an_envelope_or_a_decode_error(
    body: bytes, content_type: str | None
) -> None:
    try:
        outcome: object = codec.decode_envelope(body, content_type)
    except DecodeError as exc:
        outcome = exc.reason
    assert isinstance(outcome, Envelope) or (isinstance(outcome, str) and outcome)


@settings(max_examples=400, deadline=None)
@given(body=BODIES, content_type=CONTENT_TYPES, message_type=MESSAGE_TYPES)
def test_decode_data_yields_data_or_a_decode_error(
    body: bytes, content_type: str | None, message_type: str
) -> None:
    reason = "decoded"
    try:
        codec.decode_data(body, content_type, message_type)
    except DecodeError as exc:
        reason = exc.reason
    assert reason


@settings(max_examples=200, deadline=None)
@given(data=JSONISH, fmt=st.sampled_from(["msgpack", "json"]))
def test_encoded_data_decodes_to_the_same_value(data: Any, fmt: str) -> None:
    own = Codec(fmt, max_size=4096)  # type: ignore[arg-type]
    try:
        body = own.encode_data(data)
    except (MessageTooLarge, TypeError):
        return  # refused on the way out, with a typed error: fine
    decoded = own.decode_data(body, own.content_type, FUZZ)
    assert _same(decoded, data)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(b, float) and not math.isfinite(b) and a is None:
        return True  # JSON has no NaN or infinity: msgspec writes null
    return bool(a == b)


# -- the RabbitMQ consumer's decode path ---------------------------------------------------


def _delivered(
    body: bytes,
    properties: dict[str, Any],
    routing_key: str,
    tag: int = 1,
) -> Any:
    from aiormq.abc import DeliveredMessage
    from pamqp.commands import Basic
    from pamqp.header import ContentHeader

    return DeliveredMessage(
        delivery=Basic.Deliver(
            consumer_tag="ctag", delivery_tag=tag, exchange="x", routing_key=routing_key
        ),
        header=ContentHeader(0, len(body), Basic.Properties(**properties)),
        body=body,
        channel=None,  # type: ignore[arg-type]
    )


PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        "content_type": CONTENT_TYPES,
        "message_id": st.text(max_size=20),
        "message_type": MESSAGE_TYPES,
        "correlation_id": st.text(max_size=20),
        "reply_to": st.text(max_size=20),
        "app_id": st.text(max_size=10),
        "timestamp": st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1)),
        "headers": HEADERS,
    },
)


@settings(max_examples=500, deadline=None)
@given(body=BODIES, properties=PROPERTIES, routing_key=st.one_of(MESSAGE_TYPES, st.just("")))
@example(body=b"\xa3\x00\x00\x80", properties={}, routing_key=FUZZ)  # msgpack str, bad UTF-8
@example(body=b"{}", properties={"headers": {"x-attempt": math.inf}}, routing_key=FUZZ)
@example(body=b"{}", properties={"headers": {"x-attempt": Decimal("Infinity")}}, routing_key=FUZZ)
@example(body=b"{}", properties={"headers": {"x-timestamp": math.nan}}, routing_key=FUZZ)
def test_wire_decode_yields_an_envelope_or_a_decode_error(
    body: bytes, properties: dict[str, Any], routing_key: str
) -> None:
    from actorbus.brokers.rabbitmq._wire import decode_message, raw_envelope

    message = _delivered(body, properties, routing_key)
    try:
        envelope = decode_message(codec, message)
    except DecodeError:
        envelope = raw_envelope(message)  # what the consumer dead-letters: must build too
        msgspec.msgpack.encode(envelope)  # ... and be storable
    assert isinstance(envelope, Envelope)
    assert isinstance(envelope.attempt, int)
    assert envelope.attempt >= 1
    assert isinstance(envelope.timestamp, float)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in envelope.headers.items())


class _Acker:
    def __init__(self) -> None:
        self.settled: dict[int, bool] = {}

    def delivered(self, tag: int) -> None:
        pass

    def settle(self, tag: int, ok: bool) -> None:
        self.settled[tag] = ok


ENVELOPES = st.builds(
    Envelope,
    id=st.sampled_from(["m1", "m2", "m3"]),  # repeated ids: copies inside one batch
    type=st.sampled_from([FUZZ, TYPED, "x"]),
    data=JSONISH,
    timestamp=st.floats(allow_nan=False, allow_infinity=False),
    headers=st.dictionaries(st.sampled_from(["a", "x-actorbus-replays"]), st.text(max_size=3)),
)
BATCH_BODIES = st.one_of(
    st.lists(
        st.one_of(
            st.binary(max_size=40),  # a part that is not an envelope
            ENVELOPES.map(lambda e: msgspec.Raw(Codec("msgpack").encode_envelope(e))),
        ),
        max_size=5,
    ).map(msgspec.msgpack.encode),  # as the batcher writes it: envelopes inline
    st.binary(max_size=100),
)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(BODIES, BATCH_BODIES),
    properties=PROPERTIES,
    routing_key=st.one_of(MESSAGE_TYPES, st.just("")),
    batch=st.booleans(),
)
@example(body=b"\xa3\x00\x00\x80", properties={}, routing_key=FUZZ, batch=False)
@example(body=b"{}", properties={"headers": {"x-attempt": math.inf}}, routing_key=FUZZ, batch=False)
@example(body=b"\x90", properties={}, routing_key=FUZZ, batch=True)  # an empty batch
def test_consumer_never_raises_and_always_settles(
    body: bytes, properties: dict[str, Any], routing_key: str, batch: bool
) -> None:
    from actorbus.brokers.rabbitmq._batch import BATCH_CONTENT_TYPE
    from actorbus.brokers.rabbitmq._consumer import RabbitConsumer

    if batch:
        properties = {**properties, "content_type": BATCH_CONTENT_TYPE}
    handed: list[Any] = []
    stored: list[Any] = []

    async def sink(delivery: Any) -> None:
        handed.append(delivery)

    async def dead_letter(entry: Any) -> None:
        msgspec.msgpack.encode(entry)  # the store encodes it: that must work too
        stored.append(entry)

    async def consume_one() -> None:
        consumer = RabbitConsumer(
            "q",
            FunctionSink(sink),
            10,
            codec=codec,
            owner="fuzz",
            dead_letter=dead_letter,
            timeout=1.0,
            on_remove=lambda c: None,
        )
        message = _delivered(body, properties, routing_key)
        await consumer._on_message(acker, message)  # type: ignore[arg-type]
        for delivery in handed:  # the actor handles everything it was given
            delivery.ack()

    acker = _Acker()
    asyncio.run(consume_one())
    # Whatever came in, the AMQP message ends acknowledged once the actor acked what it got,
    # and every envelope handed on is a well-formed one.
    assert acker.settled == {1: True}, (len(handed), len(stored))
    for delivery in handed:
        envelope = delivery.envelope
        assert isinstance(envelope, Envelope)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in envelope.headers.items())


# -- the same through a real broker --------------------------------------------------------


@pytest.mark.faults
@pytest.mark.anyio
async def test_random_garbage_on_the_wire_never_stops_the_consumer(node: Any, prefix: str) -> None:
    import aio_pika
    from support.checker import LossChecker
    from support.scenario import counting_actor, rabbit_bus

    rng = random.Random(6)
    checker = LossChecker("fuzz over the wire")
    garbage = 200

    def random_value(depth: int = 0) -> Any:
        choice = rng.randrange(9 if depth < 2 else 7)
        if choice == 0:
            return rng.getrandbits(62) * rng.choice([1, -1])
        if choice == 1:  # RabbitMQ closes a connection sending an infinite or NaN float
            return rng.choice([rng.random() * 1e30, -rng.random(), 0.0])
        if choice == 2:
            return Decimal(rng.randrange(-(10**6), 10**6)) / 1000
        if choice == 3:
            return bytearray(rng.randbytes(rng.randrange(20)))
        if choice == 4:
            return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(12)))
        if choice == 5:
            return rng.choice([True, False, None])
        if choice == 6:
            return datetime.fromtimestamp(rng.randrange(0, 2**32), UTC)
        if choice == 7:
            return [random_value(depth + 1) for _ in range(rng.randrange(3))]
        return {f"k{i}": random_value(depth + 1) for i in range(rng.randrange(3))}

    async with rabbit_bus(node.url, prefix) as bus:
        await bus.spawn(counting_actor(checker, "fuzzed", types=(FUZZ,)))
        connection = await aio_pika.connect(node.url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"{prefix}.faults", ensure=False)
            for index in range(garbage):
                headers = {
                    rng.choice(["x-attempt", "x-timestamp", "x-source", "h"]): random_value()
                    for _ in range(rng.randrange(4))
                }
                await exchange.publish(
                    aio_pika.Message(
                        rng.randbytes(rng.randrange(64)),
                        content_type=rng.choice(
                            [None, "application/msgpack", "application/json", "text/x-junk"]
                        ),
                        message_id=f"garbage-{index}",
                        type=rng.choice([FUZZ, None]),
                        headers=headers,
                    ),
                    routing_key=FUZZ,
                )
        # After the garbage, good messages still flow.
        for seq in range(50):
            envelope = bus.envelope(FUZZ, {"seq": seq})
            checker.sent(envelope.id)
            await bus.publish_envelope(envelope)
            checker.confirmed(envelope.id)
        began = time.monotonic()
        accounted = False
        handled_garbage = 0
        while time.monotonic() - began < 20 and not accounted:
            dead = await bus.dead_letters(actor="fuzzed")
            handled_garbage = sum(1 for i in checker._handled if i.startswith("garbage-"))
            good = sum(1 for i in checker._handled if not i.startswith("garbage-"))
            accounted = good == 50 and len(dead) + handled_garbage == garbage
            await asyncio.sleep(0.1)
        stored = len(await bus.dead_letters(actor="fuzzed"))
    assert accounted, (
        f"garbage: {stored} dead letters + {handled_garbage} handled != {garbage}; "
        f"{checker.result().summary()}"
    )
