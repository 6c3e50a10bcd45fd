"""Kafka records as the planner takes them (``streams.core.plan.Record``), from either
client that fetches them: aiokafka's (the tools' reader) or Faust's (the worker)."""

from __future__ import annotations

from typing import Any

from schemas.topics import SESSION_FORWARDS
from streams.core.dead_letter import replayed_from
from streams.core.forward_marks import forwarded, sender
from streams.core.plan import Record
from streams.kafka.reader import Message


def from_kafka(msg: Message) -> Record:
    """A record read by aiokafka: its timestamp in ms, -1 meaning none."""
    ts = int(msg.timestamp) if msg.timestamp is not None and msg.timestamp >= 0 else None
    return _record(msg, ts)


def from_faust(message: Any) -> Record:
    """A record delivered by Faust, whose timestamp is in seconds (0 or None: none)."""
    # Faust divides aiokafka's milliseconds by 1000.0: rounding gets them back exactly
    # (truncating can lose one, and the planner bounds event time by this stamp).
    return _record(message, round(message.timestamp * 1000) if message.timestamp else None)


def _record(msg: Any, timestamp_ms: int | None) -> Record:
    headers = getattr(msg, "headers", None)
    return Record(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        timestamp_ms=timestamp_ms,
        replayed_from=replayed_from(headers),
        forwarded=forwarded(headers) if msg.topic == SESSION_FORWARDS else None,
        sender=sender(headers) if msg.topic == SESSION_FORWARDS else None,
    )
