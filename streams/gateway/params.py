"""Path and query values of the read routes, checked before anything touches Redis. Pure.

* ``{id}``: the wire contract's id pattern (``schemas.events.Id``); anything
  else (an encoded slash, ``..``, a brace, a space) is a 400, never a key.
* ``min_version=N``: wait until the session's version is at least N.
* ``after=P[,P...]``: wait until the worker applied every position ``P``
  (``topic:partition:offset``, as ``POST /v1/events`` returns them).
* ``wait=S`` (seconds, ``5``, ``2.5`` or ``5s``): how long to wait; capped by
  ``CONTINUITY_GATEWAY_MAX_WAIT``, which is also the default when a
  condition is given.
* ``limit=N`` (the journey): how many entries, 1 to ``CONTINUITY_JOURNEY_MAX_ENTRIES``.
* ``as_of=T`` (a session): refold it as it was at ``T``, an ISO 8601 time (UTC
  without an offset) or Unix ms (``streams/core/time_travel.py``); not in the future,
  not with a wait.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import MultiMapping
from pydantic import TypeAdapter, ValidationError

from schemas.events import Id
from schemas.topics import SOURCE_TOPICS
from streams.core.time_travel import BadMoment, FutureMoment, iso_ms, past_moment
from streams.gateway.errors import INVALID_ID, INVALID_PARAMETER, ApiError

MAX_POSITIONS = 64
DEFAULT_JOURNEY_LIMIT = 50
_ID = TypeAdapter(Id)
_INT = re.compile(r"^[0-9]{1,19}$")
_SECONDS = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?s?$")


@dataclass(frozen=True, order=True)
class Position:
    """Where one accepted event is in Kafka."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> str:
        """The field naming the partition in the applied-offsets hash."""
        return f"{self.topic}:{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class ReadWait:
    """What a read waits for, and for how long at most (seconds)."""

    min_version: int | None = None
    after: tuple[Position, ...] = ()
    timeout: float = 0.0

    @property
    def wanted(self) -> bool:
        """True if the read asked to wait for anything."""
        return self.min_version is not None or bool(self.after)


def session_id(raw: str) -> str:
    """The session id of the path, or a 400 ``invalid_id``."""
    try:
        return _ID.validate_python(raw)
    except ValidationError:
        raise ApiError(
            400, INVALID_ID, "the id must match [A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}"
        ) from None


def read_wait(query: Mapping[str, str], max_wait: float) -> ReadWait:
    """The wait a read asks for (``min_version``, ``after``, ``wait``), or a 400."""
    min_version = _optional_int(query.get("min_version"), "min_version")
    after = positions(query["after"]) if "after" in query else ()
    wanted = min_version is not None or bool(after)
    timeout = wait_seconds(query.get("wait"), max_wait) if wanted else 0.0
    return ReadWait(min_version, after, timeout)


def journey_limit(query: MultiMapping[str], max_entries: int) -> int:
    """``limit``: how many journey entries to return (default 50), or a 400.

    Given twice it is a 400 too: a proxy in front may have read the other one.
    """
    values = query.getall("limit", [])
    if not values:
        return min(DEFAULT_JOURNEY_LIMIT, max_entries)
    raw = values[0]
    if len(values) > 1 or not _INT.match(raw) or not 1 <= int(raw) <= max_entries:
        raise _bad("limit", f"one integer from 1 to {max_entries}")
    return int(raw)


def read_as_of(query: MultiMapping[str], now_ms: int) -> int | None:
    """``as_of``: the moment (Unix ms) to refold a session at, or None; a 400 when it is
    malformed, given twice, later than ``now_ms`` (nothing is known of it yet) or
    combined with a read-your-writes wait (a past state has nothing to wait for)."""
    values = query.getall("as_of", [])
    if not values:
        return None
    if len(values) > 1:
        raise _bad("as_of", "given once")
    try:
        moment = past_moment(values[0], now_ms)
    except FutureMoment:
        raise ApiError(
            400,
            INVALID_PARAMETER,
            f"as_of must not be in the future (now is {iso_ms(now_ms)})",
            extra={"parameter": "as_of"},
        ) from None
    except BadMoment as exc:
        raise _bad("as_of", str(exc)) from None
    if any(name in query for name in ("min_version", "after", "wait")):
        raise ApiError(
            400,
            INVALID_PARAMETER,
            "as_of cannot be combined with min_version, after or wait",
            extra={"parameter": "as_of"},
        )
    return moment


def wait_seconds(raw: str | None, max_wait: float) -> float:
    """``wait`` in seconds, capped by ``max_wait`` (the default when absent)."""
    if raw is None:
        return max_wait
    if not _SECONDS.match(raw):
        raise _bad("wait", "seconds, e.g. 5, 2.5 or 5s")
    return min(float(raw.removesuffix("s")), max_wait)


def positions(raw: str) -> tuple[Position, ...]:
    """Comma-separated ``topic:partition:offset`` positions, or a 400."""
    parts = [p for p in raw.split(",") if p]
    if not parts or len(parts) > MAX_POSITIONS:
        raise _bad("after", f"1 to {MAX_POSITIONS} positions topic:partition:offset")
    found = []
    for part in parts:
        topic, _, rest = part.partition(":")
        partition, _, offset = rest.partition(":")
        if topic not in SOURCE_TOPICS or not _INT.match(partition) or not _INT.match(offset):
            raise _bad("after", "positions as returned by POST /v1/events (topic:partition:offset)")
        found.append(Position(topic, int(partition), int(offset)))
    return tuple(found)


def newest_per_partition(found: list[Position]) -> tuple[Position, ...]:
    """One position per partition, the highest: what ``after`` needs to cover them all."""
    best: dict[str, Position] = {}
    for p in found:
        if p.tp not in best or p.offset > best[p.tp].offset:
            best[p.tp] = p
    return tuple(sorted(best.values()))


def _optional_int(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not _INT.match(raw):
        raise _bad(name, "a non-negative integer")
    return int(raw)


def _bad(name: str, expected: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, f"{name} must be {expected}", extra={"parameter": name})
