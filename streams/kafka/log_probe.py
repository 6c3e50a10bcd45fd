"""Read the record at a partition's applied offset, for ``streams/core/log_reset.py``. Thin edge.

The bounded reader (``streams/kafka/reader.py``: manual assignment, no group)
starts each partition at its applied offset and reads until ``probe_complete``
or the partition's end. The high watermark is the fetch answer's (the embedded
broker's ListOffsets is not to be trusted). A partition whose start falls
outside the log (past its end after a reset) is moved to the log's start,
which shows up as records below the applied offset and a high watermark at or
below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.core.log_reset import Applied, Probe, fingerprint, probe_complete
from streams.kafka.reader import TopicReader


async def probe_logs(
    bootstrap: str,
    applied: Mapping[tuple[str, int], Applied],
    timeout: float = 10.0,
    *,
    kafka: Mapping[str, Any] | None = None,
) -> dict[tuple[str, int], Probe]:
    """What each partition's log holds at its applied offset.

    ``timeout``: the reader's stall timeout. Raises ``LogUnreadable`` (a
    ``KafkaError``) when the broker stops answering; a partition that does not
    exist is probed as nothing seen. ``kafka``: the security arguments
    (``streams.kafka.security.kafka_client_kwargs``).
    """
    if not applied:
        return {}
    seen: dict[tuple[str, int], Probe] = {k: Probe(None, None, None) for k in applied}
    reader = TopicReader(
        bootstrap,
        sorted({topic for topic, _ in applied}),
        partitions=applied.keys(),
        start={k: a.offset for k, a in applied.items()},
        missing_ok=True,
        stall_timeout=timeout,
        batch_max=50,
        job="log-probe",
        kafka=kafka,
        # The record at the applied offset is all a probe wants; the embedded broker
        # ignores the per-partition limit and honours the request's.
        max_partition_fetch_bytes=256 * 1024,
        fetch_max_bytes=256 * 1024,
    )

    async with reader:
        async for batch in reader:
            for msg in batch:
                key = (msg.topic, msg.partition)
                found, first = seen[key].found, seen[key].first_offset
                first = msg.offset if first is None else min(first, msg.offset)
                if msg.offset == applied[key].offset:
                    found = fingerprint(msg.key, msg.value)
                seen[key] = Probe(found, first, reader.ends.get(f"{msg.topic}:{msg.partition}"))
                if probe_complete(applied[key], seen[key]):
                    reader.finish(key)  # seen enough: no more fetches for it
    # Every end learnt, also of partitions whose read ended without a record.
    return {
        (t, p): Probe(probe.found, probe.first_offset, reader.ends.get(f"{t}:{p}"))
        for (t, p), probe in seen.items()
    }
