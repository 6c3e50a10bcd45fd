"""Schedules for the merge across partitions: who takes a batch, and when a relay publishes.

``tests/support/saga.py``'s ``Partitions`` plans and commits each partition apart;
a ``Run`` drives it as the workers and relays of a deployment would, in any order.
A schedule is a list of steps: a partition takes a batch (for each pick, the next
record of one of its topic-partitions: a source topic or its ``session-forwards``),
or an origin's relay publishes some of its outbox. ``draw_schedule`` draws one as it
runs it (a step is only drawn when it can happen), so the same steps can be run
again with noise (``Noise``: a relay sending its last entries again, as after a
crash, and consumer positions set back, as after a rebalance) or with each batch
cut differently.

A pick means the next record of its topic-partition the partition has not had
yet: records it gets again (after a rewind) and forwards sent again (after a relay
crash) come along in the batch, in log order, before it. So the noisy run takes
the same records for the first time in the same batches as the clean one, plus
what a real consumer would get again on the way. ``finish`` then relays and
takes everything left, in a fixed order, until nothing moves.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from schemas.topics import SESSION_FORWARDS
from streams.core.fold import Limits
from streams.core.plan import Record, RecordOutcome
from tests.support.saga import Partitions


@dataclass(frozen=True)
class Take:
    """``partition`` takes one batch: for each pick (a topic-partition of its own), the
    next record of it it has not had yet."""

    partition: int
    picks: tuple[str, ...]


@dataclass(frozen=True)
class Relay:
    """``origin``'s relay publishes up to ``count`` entries of its outbox."""

    origin: int
    count: int


Step = Take | Relay


@dataclass(frozen=True)
class Noise:
    """What a run adds to a schedule's steps: ``again``: step index of a ``Relay`` -> how
    many of the entries it sent it sends once more; ``rewinds``: step index -> (tp,
    records back) set back before that step (an index past the last: before ``finish``)."""

    again: Mapping[int, int] = field(default_factory=dict)
    rewinds: Mapping[int, tuple[tuple[str, int], ...]] = field(default_factory=dict)


def forwards_tp(partition: int) -> str:
    return f"{SESSION_FORWARDS}:{partition}"


class Run:
    """The partitions of ``log`` (a routed history) run step by step.

    ``position``: tp -> records delivered (a rewind sets it back); ``had``: tp -> how
    many of its records were delivered for the first time (re-sends not counted)."""

    def __init__(self, log: Sequence[Record], partitions: int, limits: Limits) -> None:
        self.world = Partitions(partitions, limits)
        self.sources: dict[str, list[Record]] = {}
        for record in log:
            self.sources.setdefault(record.tp, []).append(record)
        self.position: Counter[str] = Counter()
        self.had: Counter[str] = Counter()
        self.outcomes: list[RecordOutcome] = []
        self.batches: list[list[Record]] = []

    @property
    def partitions(self) -> int:
        return self.world.partitions

    def log(self, tp: str) -> list[Record]:
        """The records of ``tp`` so far, in offset order."""
        topic, _, partition = tp.rpartition(":")
        if topic == SESSION_FORWARDS:
            return self.world.topic.get(int(partition), [])
        return self.sources.get(tp, [])

    def firsts(self, tp: str) -> list[int]:
        """The offsets of ``tp``'s records that are not a forward sent again."""
        marks: set[tuple[int, str] | None] = set()
        out = []
        for i, record in enumerate(self.log(tp)):
            if record.forwarded is None or record.forwarded not in marks:
                out.append(i)
            marks.add(record.forwarded)
        return out

    def tps(self, partition: int) -> list[str]:
        """``partition``'s topic-partitions: its source topics', then its forwards'."""
        mine = sorted(tp for tp, rs in self.sources.items() if rs[0].partition == partition)
        return [*mine, forwards_tp(partition)]

    def available(self, tp: str) -> int:
        """Records of ``tp`` not had yet (re-sends not counted)."""
        return len(self.firsts(tp)) - self.had[tp]

    def deliver(self, tp: str) -> list[Record]:
        """The next record of ``tp`` not had yet, after what comes again before it."""
        target = self.firsts(tp)[self.had[tp]]
        got = self.log(tp)[self.position[tp] : target + 1]
        assert got, f"{tp}: position past a record never had"
        self.position[tp] = target + 1
        self.had[tp] += 1
        return got

    def process(self, partition: int, batch: list[Record], cuts: Sequence[int] = ()) -> None:
        """Plan and commit ``batch``, cut before each index of ``cuts``."""
        edges = [0, *sorted(c for c in set(cuts) if 0 < c < len(batch)), len(batch)]
        for lo, hi in itertools.pairwise(edges):
            self.commit(partition, batch[lo:hi])

    def commit(self, partition: int, batch: list[Record]) -> None:
        """Plan and commit one batch."""
        self.batches.append(batch)
        self.outcomes.extend(self.world.process(partition, batch).outcomes)

    def take(self, step: Take, cuts: Sequence[int] = ()) -> None:
        batch = [r for tp in step.picks for r in self.deliver(tp)]
        self.process(step.partition, batch, cuts)

    def relay(self, step: Relay, again: int = 0) -> None:
        sent = self.world.relay(step.origin, step.count, again)
        assert sent > 0, "a relay step of a schedule publishes something"

    def rewind(self, tp: str, back: int) -> None:
        self.position[tp] = max(0, self.position[tp] - back)

    def replay(
        self,
        steps: Sequence[Step],
        noise: Noise = Noise(),
        cuts: Mapping[int, Sequence[int]] | None = None,
    ) -> Run:
        """Run ``steps`` with ``noise``, each ``Take`` cut per ``cuts`` (step index ->
        cut positions), then ``finish``."""
        for i, step in enumerate(steps):
            for tp, back in noise.rewinds.get(i, ()):
                self.rewind(tp, back)
            if isinstance(step, Take):
                self.take(step, (cuts or {}).get(i, ()))
            else:
                self.relay(step, noise.again.get(i, 0))
        for tp, back in noise.rewinds.get(len(steps), ()):
            self.rewind(tp, back)
        self.finish()
        return self

    def finish(self) -> None:
        """Relay everything and take every record left, one per batch, partition by
        partition, until nothing is left to relay or take; then what comes again after
        the last new record of each topic-partition, as one batch."""
        while True:
            for origin in sorted(self.world.outboxes):
                if self.world.outboxes[origin]:
                    self.world.relay(origin)
            progressed = False
            for partition in range(self.partitions):
                for tp in self.tps(partition):
                    while self.available(tp):
                        self.take(Take(partition, (tp,)))
                        progressed = True
            if not progressed and not self.world.waiting():
                break
        for partition in range(self.partitions):
            for tp in self.tps(partition):
                rest = self.log(tp)[self.position[tp] :]
                if rest:
                    self.position[tp] += len(rest)
                    self.process(partition, rest)


def draw_schedule(draw: st.DrawFn, run: Run, max_steps: int = 40, max_batch: int = 6) -> list[Step]:
    """Draw steps as ``run`` goes (each one that can happen then: a partition with a
    record not had yet takes 1..``max_batch`` of them, any mix of its topic-partitions;
    an origin with entries waiting relays some), running each; returns them."""
    steps: list[Step] = []
    for _ in range(draw(st.integers(0, max_steps))):
        takers = [p for p in range(run.partitions) if any(run.available(tp) for tp in run.tps(p))]
        relays = sorted(o for o, box in run.world.outboxes.items() if box)
        options: list[Step] = [Take(p, ()) for p in takers]
        options += [Relay(o, len(run.world.outboxes[o])) for o in relays]
        if not options:
            break
        chosen = draw(st.sampled_from(options))
        if isinstance(chosen, Relay):
            step: Step = Relay(chosen.origin, draw(st.integers(1, chosen.count)))
            run.relay(step)
        else:
            picks: list[str] = []
            batch: list[Record] = []
            for _ in range(draw(st.integers(1, max_batch))):
                left = [tp for tp in run.tps(chosen.partition) if run.available(tp)]
                if not left:
                    break
                tp = draw(st.sampled_from(left))
                picks.append(tp)
                batch += run.deliver(tp)
            step = Take(chosen.partition, tuple(picks))
            run.process(chosen.partition, batch)
        steps.append(step)
    return steps


@st.composite
def noises(draw: st.DrawFn, steps: Sequence[Step], tps: Sequence[str], most: int = 5) -> Noise:
    """Re-sends after some relay steps, and up to ``most`` rewinds of any of ``tps``
    before any step (or before ``finish``)."""
    again = {
        i: draw(st.integers(1, 3))
        for i, step in enumerate(steps)
        if isinstance(step, Relay) and draw(st.integers(0, 2)) == 0
    }
    rewinds: dict[int, tuple[tuple[str, int], ...]] = {}
    for _ in range(draw(st.integers(0, most))):
        at = draw(st.integers(0, len(steps)))
        rewinds[at] = (*rewinds.get(at, ()), (draw(st.sampled_from(tps)), draw(st.integers(1, 6))))
    return Noise(again, rewinds)


@st.composite
def recuts(draw: st.DrawFn, steps: Sequence[Step]) -> dict[int, list[int]]:
    """For each ``Take`` of more than one pick, where its batch is cut (indices into its
    records, one per pick in a run without noise)."""
    return {
        i: draw(st.lists(st.integers(1, len(step.picks) - 1), max_size=3))
        for i, step in enumerate(steps)
        if isinstance(step, Take) and len(step.picks) > 1
    }
