"""Log output of the worker: plain text (default) or JSON lines, and the fields records carry.

``CONTINUITY_LOG_FORMAT=json`` turns every log record (Faust's and ours) into
one JSON object per line with ``time``, ``level``, ``logger`` and ``message``
plus the record's extra fields. Every record about a dead letter or a failed
batch carries ``topic``, ``partition``, ``offset`` and, when the value could
be decoded, ``event_id``, so a log search finds the record in Kafka.
"""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Sequence
from typing import Any

from streams.core.decode import decode
from streams.core.facts import record_labels
from streams.core.plan import Record

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = "{levelname}{name}{message}"
_RENAME = {"levelname": "level", "name": "logger"}


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict writing ``fmt`` (``text`` or ``json``) to stdout."""
    formatter: dict[str, Any] = {"format": TEXT_FORMAT}
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": _JSON_FIELDS,
            "style": "{",
            "rename_fields": _RENAME,
            # ISO 8601 in UTC, from the record's own creation time.
            "timestamp": "time",
        }
    return {
        "version": 1,
        # Faust, aiokafka and mode create their loggers at import: keep them.
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def configure(level: str, fmt: str) -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(level, fmt))
    # Python warnings otherwise go to stderr as free text, breaking JSON lines.
    logging.captureWarnings(True)


def record_fields(record: Record, event_id: str | None, **more: object) -> dict[str, object]:
    """The ``extra`` fields that locate one Kafka record in a log line."""
    return {
        "event_id": event_id,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        **more,
    }


def batch_fields(records: Sequence[Record]) -> dict[str, object]:
    """The ``extra`` fields of a batch-level log line: the batch's first record, and its size.

    A batch mixes partitions, so no single record is "the" culprit; the first one
    locates the batch in Kafka, and ``batch_size`` says how far it reaches.
    """
    if not records:
        return {"batch_size": 0}
    first = records[0]
    event_id = record_labels(first.value, decode(first.value)).event_id
    return record_fields(first, event_id, batch_size=len(records))
