"""The commit notice: what a commit announces about each key it wrote. Pure.

The commit script publishes it on the sharded channel of the key's partition
(``keys.updates``); gateways wake the key's followers with it
(``streams/gateway/fanout.py``). On the wire a notice is a JSON header,
optionally followed by a line break and the key's stored session (``read``
splits them):

* ``key`` and ``version``: a committed version of the key's session;
* ``merged_into``: the guest key was merged into that customer (no version);
* ``t``: the Kafka timestamp (ms) of the oldest source record the commit
  applied to that key. The gateway measures freshness from it, the way
  Kafka's KIP-613 defines end-to-end latency: the record's timestamp to the
  moment its effect is written to a subscriber
  (``continuity_freshness_seconds``). Absent where no applied record of the
  key has a timestamp (a merge's guest side, a re-fold without timestamps).

The state after the header: the commit script appends the stored value it
wrote (``streams/core/session_codec.py``, ~1 KB compressed for a typical
session) to the notice of every session write, so a gateway serves that
version to the key's streams without reading it back from Redis. orjson
escapes every line break inside a JSON document, so the first ``\n`` ends
the header. A notice without one (a merge, an erasure, an older worker) is
news only: its followers read the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson

from streams.core.batch import Kind, RecordOutcome


def notice(
    key: str,
    version: int | None,
    merged_into: str | None = None,
    appended_ms: int | None = None,
) -> bytes:
    """The notice JSON for one key of a commit."""
    body: dict[str, object] = {"key": key, "version": version}
    if merged_into is not None:
        body["merged_into"] = merged_into
    if appended_ms is not None:
        body["t"] = appended_ms
    return orjson.dumps(body)


def oldest_appends(outcomes: Iterable[RecordOutcome]) -> dict[str, int]:
    """Session key -> the oldest Kafka timestamp (ms) of the records applied to it."""
    oldest: dict[str, int] = {}
    for o in outcomes:
        ts = o.record.timestamp_ms
        if o.kind is not Kind.APPLIED or o.session_key is None or ts is None:
            continue
        seen = oldest.get(o.session_key)
        if seen is None or ts < seen:
            oldest[o.session_key] = ts
    return oldest


class Heard(NamedTuple):
    """A notice as a gateway reads it; ``None`` where a field is absent or unreadable."""

    key: str | None
    version: int | None = None
    merged_into: str | None = None
    appended_ms: int | None = None
    state: bytes | None = None
    """The stored session of ``key`` at the announced version, if the notice carries it."""


def read(data: bytes | str) -> Heard:
    """A notice from the wire: its header's fields and the state after it, if any.

    Anything unreadable gives ``Heard(None)``: a notice about an unknown key.
    """
    raw = data.encode() if isinstance(data, str) else data
    header, newline, state = raw.partition(b"\n")
    try:
        body = orjson.loads(header)
    except orjson.JSONDecodeError:
        return Heard(None)
    if not isinstance(body, dict):
        return Heard(None)
    key, target = body.get("key"), body.get("merged_into")
    if not isinstance(key, str):
        return Heard(None)
    return Heard(
        key,
        _int(body.get("version")),
        target if isinstance(target, str) else None,
        _int(body.get("t")),
        state if newline and state else None,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
