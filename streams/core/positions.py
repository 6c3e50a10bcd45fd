"""Which partitions Redis has rolled back on: the state's position against what is known. Pure.

The applied offsets stored with the states in Redis are the truth of what is
folded; Kafka's committed offsets are only a hint. A Redis that comes back
older than it was (a lagging replica promoted, an AOF ``everysec`` primary
that crashed within its last second, a restore from a snapshot) keeps
folding from Kafka's position unless someone notices, and the records in
between are never folded again. This module notices.

A worker knows a *floor* for each partition it owns: an offset it can prove
was applied. At assignment that is Kafka's committed offset minus one (a
record is acknowledged to Kafka only after Redis holds it); after each of its
own commits it is the batch's last offset. Redis reporting an applied offset
below the floor (or none at all) has lost writes: the partition must be
folded again from Redis's own position (``Rewind.seek_to``).

Offsets only rise otherwise, so no false alarm is possible on a healthy Redis,
provided the floor is read before the applied offsets it is compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Rewind:
    """A partition whose applied offset in Redis is behind what was known applied."""

    tp: str  # "topic:partition"
    applied: int | None  # Redis's applied offset now (None: Redis holds none)
    floor: int  # the offset known to have been applied

    @property
    def seek_to(self) -> int:
        """Where folding must start again: after Redis's position, or the log's start."""
        return 0 if self.applied is None else self.applied + 1

    @property
    def lost(self) -> int:
        """How many offsets are folded again (an upper bound: gaps in the log count)."""
        return self.floor - (self.applied if self.applied is not None else -1)


def rollbacks(floors: Mapping[str, int], applied: Mapping[str, int]) -> list[Rewind]:
    """The partitions of ``floors`` whose ``applied`` offset (absent: none) is below the floor."""
    out = []
    for tp, floor in sorted(floors.items()):
        now = applied.get(tp)
        if (now if now is not None else -1) < floor:
            out.append(Rewind(tp, now, floor))
    return out


class Floors:
    """The floor of each partition this worker owns. Plain state, no I/O.

    ``None`` committed offsets (a new consumer group) set no floor: nothing is
    known applied, so nothing can be found lost.
    """

    def __init__(self) -> None:
        self._floors: dict[str, int] = {}

    def assigned(self, committed: Mapping[str, int | None]) -> None:
        """Kafka's committed offsets (next offset to read) of newly positioned partitions."""
        for tp, offset in committed.items():
            if offset is not None and offset > 0:
                self.raise_to(tp, offset - 1)

    def revoked(self, tps: Iterable[str]) -> None:
        """Partitions leaving this worker: their owner knows better from now on."""
        for tp in tps:
            self._floors.pop(tp, None)

    def raise_to(self, tp: str, offset: int) -> None:
        """``offset`` of ``tp`` is now known applied (a commit returned)."""
        if offset > self._floors.get(tp, -1):
            self._floors[tp] = offset

    def rewound(self, rewind: Rewind) -> None:
        """Redis's position is the truth again after a rewind: the floor drops to it."""
        if rewind.applied is None:
            self._floors.pop(rewind.tp, None)
        else:
            self._floors[rewind.tp] = rewind.applied

    def forget(self, tp: str) -> None:
        """A reset log starts a new epoch: its old offsets say nothing any more."""
        self._floors.pop(tp, None)

    def of(self, tps: Iterable[str]) -> dict[str, int]:
        """A copy of the floors of ``tps`` that have one (read it *before* Redis)."""
        floors = self._floors
        return {tp: floors[tp] for tp in tps if tp in floors}

    def all(self) -> dict[str, int]:
        """A copy of every floor."""
        return dict(self._floors)
