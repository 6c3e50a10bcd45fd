"""Mark every ``session-forwards`` record on the topic as applied in a fresh prefix. Thin edge.

A rebuild from history folds the source topics with one planner over every key
(``direct``) or delivers its own forwards in-process (``forward``,
``streams/ops/inline_forwards.py``): the work each forward on the topic carried
(a login's merge, a guest's event following its alias) is in its fold already.
So the rebuilt prefix takes the topic's positions as they end when its fold is
done, with the last forward applied per origin partition (the relays' re-sends
of those are skipped), and workers pointed at it go on after them, as they go
on after the source records it folded (``docs/merge-across-partitions.md``:
Rebuild).
"""

from __future__ import annotations

from typing import Any

from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import seq_after
from streams.core.forward_marks import forwarded
from streams.core.log_reset import fingerprint
from streams.kafka.reader import TopicReader
from streams.store import keys
from streams.store.forwards import mark_applied
from streams.store.state import RedisState


async def skip_forwards(
    bootstrap: str, state: RedisState, kafka: dict[str, Any] | None = None
) -> int:
    """Read ``session-forwards`` to its end and mark it applied in ``state``'s prefix, per
    partition; return how many records it holds."""
    last: dict[int, tuple[int, str]] = {}
    marks: dict[int, dict[int, str]] = {}
    reader = TopicReader(bootstrap, [SESSION_FORWARDS], missing_ok=True, job="rebuild", kafka=kafka)
    async with reader:
        async for batch in reader:
            for m in batch:
                if m.offset > last.get(m.partition, (-1, ""))[0]:
                    last[m.partition] = (m.offset, fingerprint(m.key, m.value))
                mark = forwarded(m.headers)
                if mark is not None:
                    seen = marks.setdefault(m.partition, {})
                    if seq_after(mark[1], seen.get(mark[0])):
                        seen[mark[0]] = mark[1]
    for partition, (offset, print_) in last.items():
        seen = marks.get(partition, {})
        # A fold that delivered its own forwards (``streams/ops/inline_forwards.py``)
        # applied later ids of this prefix's outboxes: a mark never goes back.
        held: Any = await state.redis.hgetall(keys.forwards_seen(state.space, partition))
        for origin, seq in held.items():
            o, s = int(origin), seq.decode() if isinstance(seq, bytes) else seq
            if seq_after(s, seen.get(o)):
                seen[o] = s
        await mark_applied(state.redis, state.space, partition, offset, print_, seen)
    return reader.progress.records
