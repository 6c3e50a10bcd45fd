"""Right to erasure: what an erasure covers, decided without I/O. Pure.

Erasing a customer deletes their session, their merged guests' aliases and
their handoff codes from Redis, and records an ``Erasure``: the ids it
covers and, for every partition of the event topics, the log end at the
moment of the erasure (``upto``). A record of one of those ids below that
end was published before the erasure, so the planner skips it (outcome
``erased``) in the live fold, in a replay and in a rebuild; a record at or
after the end is new activity and is folded into a fresh session.

The erasure is kept twice: in Redis next to the state (one key per id, read
with each batch) and on the compacted ``session-erasures`` topic, from which
``continuity rebuild`` restores it before folding anything, so even a
rebuild after the loss of Redis cannot bring an erased session back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import Id

_ID = TypeAdapter(Id)


@dataclass(frozen=True)
class Erasure:
    """One erasure: whose records, and up to where in each partition."""

    customer_id: str
    ids: tuple[str, ...]
    erased_at_ms: int
    upto: Mapping[str, int] = field(default_factory=dict)  # "topic:partition" -> log end
    # id -> version its session had when erased: a session started after the
    # erasure continues from there, so versions of a key never go backwards.
    floors: Mapping[str, int] = field(default_factory=dict)

    def covers(self, tp: str, offset: int) -> bool:
        """True if the record at ``offset`` of ``tp`` predates this erasure.

        A partition the erasure does not name did not exist then: all of it is newer.
        """
        return offset < self.upto.get(tp, 0)

    def dumps(self) -> bytes:
        """The stored form (Redis value and Kafka record value)."""
        return orjson.dumps(
            {
                "customer_id": self.customer_id,
                "ids": list(self.ids),
                "erased_at_ms": self.erased_at_ms,
                "upto": dict(sorted(self.upto.items())),
                "floors": dict(sorted(self.floors.items())),
            }
        )


class BadErasure(ValueError):
    """A stored erasure that cannot be read back."""


def loads(raw: bytes | str) -> Erasure:
    """Parse a stored erasure; raises ``BadErasure`` on anything malformed."""
    try:
        body: Any = orjson.loads(raw)
        ids = tuple(_ID.validate_python(i) for i in body["ids"])
        # Redis' Lua cjson may write an empty table as [] rather than {}.
        upto = {str(tp): int(end) for tp, end in (body["upto"] or {}).items()}
        floors = {str(k): int(v) for k, v in (body.get("floors") or {}).items()}
        return Erasure(
            customer_id=_ID.validate_python(body["customer_id"]),
            ids=ids,
            erased_at_ms=int(body["erased_at_ms"]),
            upto=upto,
            floors=floors,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise BadErasure(f"bad id in erasure: {exc.errors()[0]['msg']}") from None
        raise BadErasure(f"unreadable erasure: {exc}") from None


def erasure_ids(customer_id: str, linked: Iterable[str]) -> tuple[str, ...]:
    """The customer first, then every linked guest id once, in a stable order."""
    rest = sorted({i for i in linked if i != customer_id})
    return (customer_id, *rest)


def covering(
    erasures: Mapping[str, Erasure], ids: Iterable[str | None], tp: str, offset: int
) -> Erasure | None:
    """The erasure that covers a record carrying ``ids`` at ``offset`` of ``tp``, if any."""
    for some_id in ids:
        if some_id is None:
            continue
        erasure = erasures.get(some_id)
        if erasure is not None and erasure.covers(tp, offset):
            return erasure
    return None


def latest(erasures: Iterable[Erasure]) -> dict[str, Erasure]:
    """id -> the most recent erasure naming it (a customer erased twice keeps the later)."""
    by_id: dict[str, Erasure] = {}
    for erasure in sorted(erasures, key=lambda e: e.erased_at_ms):
        for some_id in erasure.ids:
            by_id[some_id] = erasure
    return by_id
