"""The merge across partitions, in memory: partitions planned apart, forwards queued.

``Partitions`` holds one ``MemoryState`` (what all of Redis holds) and plans each
batch as the worker of one partition does: against a snapshot of that
partition's keys only (``MemoryState.snapshot(place)``), committing only them
(``MemoryState.apply`` refuses a plan that expects another partition's key).
A plan's forwards go to its partition's outbox; a relay publishes an outbox's
entries, in order, to the destination partition of ``session-forwards`` with
their origin and entry id, as ``streams/worker/forward_relay.py`` does (also
again, as after a relay crash); the destination takes them in batches with its
source records, as the worker does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import Outgoing, Placement
from streams.core.decode import decode
from streams.core.fold import DEFAULT_LIMITS, Limits
from streams.core.plan import Plan, Record, plan_batch
from tests.support.pure import MemoryState


@dataclass
class Partitions:
    """Every partition's worker, outbox and relay over one store."""

    partitions: int
    limits: Limits = DEFAULT_LIMITS
    store: MemoryState = field(default_factory=MemoryState)
    # origin partition -> its outbox: (entry id, forward), oldest first
    outboxes: dict[int, list[tuple[str, Outgoing]]] = field(default_factory=dict)
    # origin partition -> how many of its outbox's entries were ever written
    written: Counter[int] = field(default_factory=Counter)
    # destination partition -> session-forwards records, in offset order
    topic: dict[int, list[Record]] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)

    def place(self, partition: int) -> Placement:
        return Placement(partition, self.partitions)

    def process(self, partition: int, batch: Sequence[Record]) -> Plan:
        """One batch of partition ``partition``'s records, planned and committed there."""
        assert all(r.partition == partition for r in batch), "a batch of one partition"
        place = self.place(partition)
        decoded = [decode(r.value) for r in batch]
        plan = plan_batch(batch, decoded, self.store.snapshot(place), self.limits, place)
        self.store.apply(plan, place)
        for out in plan.forwards:
            self.written[partition] += 1
            self.outboxes.setdefault(partition, []).append((f"{self.written[partition]}-0", out))
        self.plans.append(plan)
        return plan

    def relay(self, origin: int, count: int | None = None, again: int = 0) -> int:
        """Publish up to ``count`` of ``origin``'s outbox entries, after sending the last
        ``again`` already-sent ones once more (a relay that crashed before its cursor
        moved); the sent ones leave the outbox. Returns how many were sent."""
        box = self.outboxes.get(origin, [])
        take = box[: len(box) if count is None else count]
        for seq, out in take:
            self._publish(origin, seq, out)
        del box[: len(take)]
        if again and take:
            for seq, out in take[-again:]:
                self._publish(origin, seq, out)
        return len(take)

    def _publish(self, origin: int, seq: str, out: Outgoing) -> None:
        log = self.topic.setdefault(out.partition, [])
        log.append(
            Record(
                SESSION_FORWARDS, out.partition, len(log), out.key, out.value,
                forwarded=(origin, seq),
            )
        )  # fmt: skip

    def waiting(self) -> int:
        """Forwards written and not yet published."""
        return sum(len(box) for box in self.outboxes.values())

    def drain(self, consumed: dict[int, int]) -> None:
        """Relay and apply forwards, one record per batch, until none is left;
        ``consumed``: destination -> how many of its forwards records were taken."""
        while True:
            for origin in sorted(self.outboxes):
                self.relay(origin)
            progressed = False
            for dest in sorted(self.topic):
                log = self.topic[dest]
                while consumed.get(dest, 0) < len(log):
                    record = log[consumed.get(dest, 0)]
                    consumed[dest] = consumed.get(dest, 0) + 1
                    self.process(dest, [record])
                    progressed = True
            if not progressed and not self.waiting():
                return
