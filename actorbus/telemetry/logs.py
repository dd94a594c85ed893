"""Logs as JSON lines, with the fields the runtime attaches to its log records.

The runtime's log lines carry, where it has them, ``actor``, ``message_id`` and
``message_type`` as record attributes (``extra=``; see
:func:`actorbus.messages.log_fields`); never a payload, never a password (a
broker URL is logged with its password hidden). :class:`JsonFormatter` writes
each record as one JSON object with those fields, for log shippers (Loki,
Elasticsearch, CloudWatch) to index. Standard library only::

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("actorbus").addHandler(handler)
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["FIELDS", "JsonFormatter"]

FIELDS = ("actor", "message_id", "message_type")
"""Record attributes the runtime sets with ``extra=`` and the formatter writes out."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, runtime fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
