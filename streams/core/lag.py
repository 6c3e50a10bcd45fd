"""Consumer lag per partition from the fetch high watermark and the applied offsets. Pure.

The applied offset is the one stored with the state in Redis (``P:{pN}:o``), not a
consumer group's committed offset: it is what the state really holds, whoever
folded it. The high watermark is the next offset the broker will write, as
the consumer's last fetch reported it (the only end offset the embedded
broker answers correctly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Partition = tuple[str, int]


def consumer_lag(
    highwaters: Mapping[Partition, int | None], applied: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Records each partition holds beyond its last applied offset.

    A partition whose high watermark is not known yet (no fetch since it was
    assigned) is left out rather than reported as 0 or as a guess.
    """
    return {
        tp: max(0, hw - applied.get(tp, -1) - 1) for tp, hw in highwaters.items() if hw is not None
    }


def offsets_field(tp: Partition) -> str:
    """The field of a partition in the applied-offsets hash (``topic:partition``)."""
    return f"{tp[0]}:{tp[1]}"


def owned(assigned: Iterable[Partition], topics: Iterable[str]) -> list[Partition]:
    """The assigned partitions of ``topics``, sorted: the series this worker may report."""
    wanted = set(topics)
    return sorted(tp for tp in assigned if tp[0] in wanted)
