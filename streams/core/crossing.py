"""Work that crosses partitions: where a key lives, forwards, held records. Pure.

A commit changes the keys of one partition only (on Redis Cluster a script
touches one slot, and a partition's keys share one). A login whose guest lives
on another partition, a guest event whose alias leads there, and an undone
merge's give-back are therefore handed to that partition's worker as forwards
(``schemas/forward.py``). While a customer's session waits for the guest side
to answer its login, the customer's further records are held, in order, and
folded right after the merge lands, so the session reads as if the login had
been applied where it stands in the customer's stream
(``docs/merge-across-partitions.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.forward import Forward, Origin
from streams.core.placement import partition_of


@dataclass(frozen=True)
class Placement:
    """The partition a plan commits, among ``partitions``: the keys it may change."""

    partition: int
    partitions: int

    def here(self, key: str) -> bool:
        """Whether ``key``'s state lives on this partition."""
        return partition_of(key, self.partitions) == self.partition

    def of(self, key: str) -> int:
        """The partition ``key``'s state lives on."""
        return partition_of(key, self.partitions)


@dataclass(frozen=True)
class Held:
    """A record a customer's session holds until the merge it waits for lands.

    ``origin`` is where the event came in (its erasure is judged on it); ``key``
    the session a forward addressed it to (a guest event whose alias led here),
    or None for the customer's own record, routed as it comes."""

    origin: Origin
    value: bytes
    replayed_from: str | None = None
    key: str | None = None
    seen: bool = False
    via: str = "routed"

    def to_json(self) -> dict[str, object]:
        return {
            "t": self.origin.topic,
            "p": self.origin.partition,
            "o": self.origin.offset,
            "m": self.origin.timestamp_ms,
            "v": self.value.decode(),
            "r": self.replayed_from,
            "k": self.key,
            "s": self.seen,
            "w": self.via,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Held:
        stamp = raw.get("m")
        origin = Origin(
            topic=str(raw["t"]),
            partition=int(str(raw["p"])),
            offset=int(str(raw["o"])),
            timestamp_ms=None if stamp is None else int(str(stamp)),
        )
        replayed, key = raw.get("r"), raw.get("k")
        return cls(
            origin,
            str(raw["v"]).encode(),
            None if replayed is None else str(replayed),
            None if key is None else str(key),
            bool(raw.get("s", False)),
            str(raw.get("w", "routed")),
        )


@dataclass(frozen=True)
class Pending:
    """A customer's session waiting for the merge of the login ``awaiting`` (its
    origin id), and the records it holds meanwhile, in arrival order."""

    awaiting: str
    held: tuple[Held, ...] = ()

    def holding(self, record: Held) -> Pending:
        return Pending(self.awaiting, (*self.held, record))

    def dumps(self) -> bytes:
        """The stored form (``cont:{pN}:w:<key>``)."""
        return orjson.dumps({"a": self.awaiting, "h": [h.to_json() for h in self.held]})

    @classmethod
    def loads(cls, raw: bytes | str) -> Pending:
        body = orjson.loads(raw)
        return cls(str(body["a"]), tuple(Held.from_json(h) for h in body["h"]))


@dataclass(frozen=True)
class Outgoing:
    """A forward a commit writes to its partition's outbox: for ``partition``, keyed by
    the forward's key."""

    partition: int
    forward: Forward

    @property
    def key(self) -> bytes:
        return self.forward.key.encode()

    @property
    def value(self) -> bytes:
        return self.forward.model_dump_json(exclude_defaults=True).encode()


def read_forward(value: bytes | None) -> Forward | None:
    """A ``session-forwards`` record's value, or None if it is not one (never written so)."""
    if value is None:
        return None
    try:
        return Forward.model_validate_json(value)
    except ValueError:
        return None


def seq_after(seq: str, mark: str | None) -> bool:
    """Whether the outbox entry id ``seq`` comes after ``mark`` (stream ids ``ms-n``)."""
    if mark is None:
        return True
    return _parts(seq) > _parts(mark)


def _parts(seq: str) -> tuple[int, int]:
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)
