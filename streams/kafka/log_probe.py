"""Read the record at a partition's applied offset, for ``streams/core/log_reset.py``. Thin edge.

A plain consumer with manual assignment and no group: it seeks each
partition to its applied offset and fetches until ``probe_complete``. The
fetch high watermark comes with every fetch answer (the embedded broker's
ListOffsets is not to be trusted). A partition whose seek falls outside the
log (past its end after a reset) is moved to the log's start, which shows up
as records below the applied offset and a high watermark at or below it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.core.log_reset import Applied, Probe, fingerprint, probe_complete


async def probe_logs(
    bootstrap: str,
    applied: Mapping[tuple[str, int], Applied],
    timeout: float = 10.0,
    *,
    kafka: Mapping[str, Any] | None = None,
) -> dict[tuple[str, int], Probe]:
    """What each partition's log holds at its applied offset. Raises on a broker error.

    ``kafka``: the security arguments (``streams.kafka_security.kafka_client_kwargs``).
    """
    if not applied:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=256 * 1024,
        **(kafka or {}),
    )
    await consumer.start()
    try:
        tps = {TopicPartition(t, p): (t, p) for (t, p) in applied}
        consumer.assign(list(tps))
        for tp, key in tps.items():
            consumer.seek(tp, applied[key].offset)
        seen: dict[tuple[str, int], Probe] = {k: Probe(None, None, None) for k in applied}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=50)
            for tp, key in tps.items():
                found, first = seen[key].found, seen[key].first_offset
                for msg in batch.get(tp, ()):
                    first = msg.offset if first is None else min(first, msg.offset)
                    if msg.offset == applied[key].offset:
                        found = fingerprint(msg.key, msg.value)
                mark = consumer.highwater(tp)
                seen[key] = Probe(found, first, None if mark is None else int(mark))
            pending = [k for k in applied if not probe_complete(applied[k], seen[k])]
            if not pending:
                break
            # Done partitions need no more fetches; keep the rest.
            consumer.pause(*[tp for tp, k in tps.items() if k not in pending])
        return seen
    finally:
        await consumer.stop()
