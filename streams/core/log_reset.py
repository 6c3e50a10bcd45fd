"""Is a partition's log still the one Redis applied? Pure decision, no I/O.

Redis remembers, per ``topic:partition``, the offset of the last applied
record and a short fingerprint of that record (its key and value). A broker
that lost its data (the embedded one keeps nothing across a restart) or a
topic deleted and recreated starts the log again at offset 0, and without
this check a worker would skip its first records as "already applied".

On assignment the worker reads the record at the applied offset (fetch and
seek, not ListOffsets) and the fetch high watermark, and ``judge`` decides:

* the record is there and its fingerprint matches: the log is intact;
* the record is there and differs, or the log ends at or before the applied
  offset: the log was reset, the partition starts a new epoch;
* otherwise (the record was deleted by retention, or Redis holds no
  fingerprint yet) nothing can be proven, and the applied offset is trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


def fingerprint(key: bytes | None, value: bytes | None) -> str:
    """16 hex digits identifying a record's key and value (length-prefixed, so unambiguous)."""
    h = hashlib.blake2b(digest_size=8)
    for part in (key, value):
        if part is None:
            h.update(b"\xff")
        else:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Applied:
    """What Redis says was applied last on one partition."""

    offset: int
    fingerprint: str | None


@dataclass(frozen=True)
class Probe:
    """What the broker showed at and around the applied offset.

    ``found`` is the fingerprint of the record at exactly the applied offset,
    if one was fetched; ``first_offset`` the lowest offset fetched from the seek
    position (None if nothing); ``high_watermark`` the next offset the log will
    write (None if no fetch answered).
    """

    found: str | None
    first_offset: int | None
    high_watermark: int | None


class Verdict(StrEnum):
    INTACT = "intact"
    RESET = "reset"
    UNKNOWN = "unknown"


def judge(applied: Applied, probe: Probe) -> Verdict:
    """Decide whether the log behind ``applied`` was reset (see the module docstring)."""
    if probe.found is not None:
        if applied.fingerprint is None:
            return Verdict.UNKNOWN
        return Verdict.INTACT if probe.found == applied.fingerprint else Verdict.RESET
    if probe.high_watermark is not None and probe.high_watermark <= applied.offset:
        return Verdict.RESET
    return Verdict.UNKNOWN


def probe_complete(applied: Applied, probe: Probe) -> bool:
    """Whether a probe saw enough to stop fetching: the record, something past it, or the end."""
    if probe.found is not None:
        return True
    if probe.first_offset is not None and probe.first_offset > applied.offset:
        return True
    return probe.high_watermark is not None and probe.high_watermark <= applied.offset
