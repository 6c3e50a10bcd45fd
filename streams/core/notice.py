"""The commit notice: what a commit announces about each key it wrote. Pure.

The commit script publishes it on the sharded channel of the key's partition
(``keys.updates``); gateways wake the key's followers with it
(``streams/gateway/fanout.py``). A notice carries no state, only:

* ``key`` and ``version``: a committed version of the key's session;
* ``merged_into``: the guest key was merged into that customer (no version);
* ``t``: the Kafka timestamp (ms) of the oldest source record the commit
  applied to that key. The gateway measures freshness from it, the way
  Kafka's KIP-613 defines end-to-end latency: the record's timestamp to the
  moment its effect is written to a subscriber
  (``continuity_freshness_seconds``). Absent where no applied record of the
  key has a timestamp (a merge's guest side, a re-fold without timestamps).
"""

from __future__ import annotations

from collections.abc import Iterable

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
