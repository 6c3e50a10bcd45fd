"""Log lines of the worker (``streams/logs.py``). Pure: formatters are built, not installed.

Proves: the JSON format writes one object per record with time, level, logger
and message plus the fields that locate a record in Kafka; batch-level lines
name the batch's first record and its size; text stays the default shape.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from streams.core.plan import Record
from streams.logs import TEXT_FORMAT, batch_fields, logging_config, record_fields
from tests.support.pure import ev


def _formatter(fmt: str) -> logging.Formatter:
    spec: dict[str, Any] = dict(logging_config("info", fmt)["formatters"]["default"])
    factory = spec.pop("()", None)
    if factory is None:
        return logging.Formatter(spec["format"])
    assert factory == "pythonjsonlogger.orjson.OrjsonFormatter"
    return OrjsonFormatter(**spec)


def _line(formatter: logging.Formatter, message: str, extra: dict[str, object]) -> str:
    record = logging.makeLogRecord(
        {"name": "streams.worker.processor", "levelno": 30, "levelname": "WARNING", "msg": message}
    )
    record.__dict__.update(extra)
    return formatter.format(record)


def test_json_lines_carry_the_record_fields() -> None:
    rec = Record("cart-events", 3, 41, b"c", b"{}")
    line = _line(_formatter("json"), "dead-lettered", record_fields(rec, "e-1", reason="x"))
    body = orjson.loads(line)
    assert body["level"] == "WARNING"
    assert body["logger"] == "streams.worker.processor"
    assert body["message"] == "dead-lettered"
    assert body["time"].endswith("+00:00")
    assert {k: body[k] for k in ("event_id", "topic", "partition", "offset", "reason")} == {
        "event_id": "e-1",
        "topic": "cart-events",
        "partition": 3,
        "offset": 41,
        "reason": "x",
    }


def test_batch_lines_name_the_first_record_and_the_size() -> None:
    good = orjson.dumps(ev("browse.search", {"query": "q"}, customer="c", event_id="e-7"))
    batch = [Record("browse-events", 1, 9, b"c", good), Record("cart-events", 0, 2, None, b"{")]
    assert batch_fields(batch) == {
        "event_id": "e-7",
        "topic": "browse-events",
        "partition": 1,
        "offset": 9,
        "batch_size": 2,
    }
    assert batch_fields(batch[1:])["event_id"] is None
    assert batch_fields([]) == {"batch_size": 0}


def test_text_is_the_plain_default_format() -> None:
    formatter = _formatter("text")
    assert formatter._fmt == TEXT_FORMAT
    assert "WARNING streams.worker.processor: hello" in _line(formatter, "hello", {})
