"""What differs when RabbitMQ refuses to declare a queue again with other arguments.

RabbitMQ answers a ``queue.declare`` whose arguments differ from the existing
queue's with ``PRECONDITION_FAILED`` and closes the channel. A passive declare
does not return a queue's arguments, and AMQP has no other way to read them,
but the refusal names one argument that differs and both values, e.g.::

    inequivalent arg 'x-max-length' for queue 'q' in vhost '/':
    received the value '10' of type 'byte' but current is none

So :func:`find_differences` parses that text, and, to find every difference
and not just the first, declares again with that one argument set as it
exists, on a fresh channel, until RabbitMQ accepts: a declaration equal to
the existing queue changes nothing. Each step is bounded; a text it cannot
parse ends the search with what was found so far, and the raw text is kept.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiormq.abc import AbstractChannel
from aiormq.exceptions import ChannelPreconditionFailed

from ...errors import QueueMismatch

__all__ = ["find_differences", "mismatch_error", "parse_refusal"]

_REFUSAL = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']*)' in vhost '[^']*': "
    r"received (?P<received>.+?) but current is (?P<current>.+?)\"?\)?$"
)
_VALUE = re.compile(
    r"^(?:the value '(?P<value>[^']*)' of type '(?P<type>[^']+)'|'(?P<plain>[^']*)'|none)$"
)
_INTEGER_TYPES = {
    "byte",
    "short",
    "signedint",
    "long",
    "unsignedbyte",
    "unsignedshort",
    "unsignedint",
}
MAX_STEPS = 12
"""Most declarations tried to find every difference."""


def _value(text: str) -> Any:
    """A value as RabbitMQ prints it, back in Python (``None`` for ``none``)."""
    match = _VALUE.match(text.strip())
    if match is None:
        return text
    if match["type"] is not None:
        raw, kind = match["value"], match["type"]
        if kind == "bool":
            return raw == "true"
        if kind in _INTEGER_TYPES:
            return int(raw)
        if kind == "double" or kind == "float":
            return float(raw)
        return raw
    plain = match["plain"]
    if plain is None:
        return None
    if plain in ("true", "false"):
        return plain == "true"
    return int(plain) if plain.lstrip("-").isdigit() else plain


def parse_refusal(text: str) -> tuple[str, str, Any, Any] | None:
    """``(queue, argument, received, current)`` from a refusal's text, or ``None``."""
    match = _REFUSAL.search(text.strip())
    if match is None:
        return None
    return match["queue"], match["arg"], _value(match["received"]), _value(match["current"])


async def find_differences(
    open_channel: Callable[[], Awaitable[AbstractChannel]],
    name: str,
    *,
    durable: bool,
    arguments: dict[str, Any],
    first: str,
) -> dict[str, tuple[object, object]]:
    """Every argument of queue ``name`` that differs: ``{argument: (declared, existing)}``.

    ``first`` is the text of the refusal already met; see the module docs for how
    the others are found.
    """
    differences: dict[str, tuple[object, object]] = {}
    probe = dict(arguments)
    text = first
    for _ in range(MAX_STEPS):
        parsed = parse_refusal(text)
        if parsed is None:
            break
        _, argument, received, current = parsed
        if argument in differences:
            break  # no progress: stop rather than loop
        differences[argument] = (received, current)
        if argument == "durable":
            durable = bool(current)
        elif current is None:
            probe.pop(argument, None)
        else:
            probe[argument] = current
        channel = await open_channel()
        try:
            await channel.queue_declare(name, durable=durable, arguments=probe)
        except ChannelPreconditionFailed as exc:
            text = str(exc)
            continue
        break
    return differences


def mismatch_error(
    name: str, differences: dict[str, tuple[object, object]], raw: str
) -> QueueMismatch:
    """The error to raise, saying what differs and what to do."""

    def shown(value: object) -> str:
        return "not set" if value is None else repr(value)

    if differences:
        listed = "; ".join(
            f"{argument}: declared {shown(declared)}, existing {shown(existing)}"
            for argument, (declared, existing) in differences.items()
        )
    else:
        listed = f"RabbitMQ said: {raw}"
    message = (
        f"queue {name!r} exists on RabbitMQ with other arguments than declared here ({listed}). "
        "RabbitMQ cannot change the arguments of an existing queue. Either declare it as it is, "
        "or move it to the new declaration without losing its messages: stop the processes "
        f"consuming it (actorbus stop), then run `actorbus queue migrate {name}` "
        "with the new options (see `actorbus queue migrate --help`)."
    )
    return QueueMismatch(message, queue=name, differences=differences)
