"""What to benchmark: the actor class or tree, and the payload, from the command line.

A target is ``module:attribute`` where the attribute is an :class:`Actor`
subclass, a :class:`Supervisor`, or a function of no arguments returning one of
them. A payload is a JSON text, ``@path.json`` (a file holding JSON), or
``module:function`` (called once per message, with no arguments).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..actor import Actor
from ..supervisor import Supervisor

__all__ = ["BenchError", "Payload", "Target", "load_payload", "load_target"]

Target = type[Actor] | Supervisor | Callable[[], type[Actor] | Supervisor]
"""What can be benchmarked: an actor class, a tree, or a function building one."""
Payload = Callable[[], Any]
"""Gives the data of each message."""


class BenchError(ValueError):
    """A benchmark cannot start: a bad target, payload, type or setting (a usage error)."""


def _resolve(spec: str, what: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise BenchError(f"{what} {spec!r} is not of the form module:attribute")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # a module beside the caller, as `python -m` would find it
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BenchError(
            f"cannot import module {module_name!r} of {what} {spec!r}: {exc}"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise BenchError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return value


def load_target(spec: str) -> Target:
    """Import ``module:attribute`` and check that it is something :func:`build_tree` takes."""
    value = _resolve(spec, "target")
    if isinstance(value, Supervisor) or (isinstance(value, type) and issubclass(value, Actor)):
        return value
    if callable(value) and not isinstance(value, type):
        factory: Callable[[], type[Actor] | Supervisor] = value
        return factory
    raise BenchError(
        f"target {spec!r} is {type(value).__name__}, not an Actor subclass, a Supervisor "
        "or a function returning one"
    )


def load_payload(spec: str | None) -> Payload:
    """The payload function of a JSON text, ``@file.json`` or ``module:function`` spec."""
    if spec is None:
        return lambda: None
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BenchError(f"cannot read payload file {str(path)!r}: {exc.strerror}") from None
        return _constant(text, f"payload file {str(path)!r}")
    try:
        return _constant(spec, "payload")
    except BenchError:
        if ":" not in spec or spec.lstrip()[:1] in '{["0123456789-':
            raise
    factory = _resolve(spec, "payload")
    if not callable(factory):
        raise BenchError(f"payload {spec!r} is {type(factory).__name__}, not a function")
    function: Payload = factory
    return function


def _constant(text: str, what: str) -> Payload:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{what} is not valid JSON: {exc}") from None
    return lambda: data
