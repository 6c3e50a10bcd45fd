"""Rewind a worker group's Kafka offsets, or prove it empty. Workers must be stopped.

Brokers accept offset commits from group members only (the embedded one even
for an empty group), and a group remembers the assignment protocol its
members speak. So the tool joins the stopped group as its only member under
Faust's protocol name, takes every partition and commits the new offsets.
Skipping is still decided by the applied offsets stored in Redis, so a rewind
is always safe: it can only make the workers re-read, never re-apply.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import InconsistentGroupProtocolError
from aiokafka.structs import OffsetAndMetadata

from streams.kafka import clients


class _AsFaust(RoundRobinPartitionAssignor):  # type: ignore[misc]  # aiokafka is untyped
    """Round robin under the protocol name Faust workers register with the group."""

    name = "faust"


async def rewind_group(
    bootstrap: str,
    group_id: str,
    topics: tuple[str, ...],
    partitions: int,
    timeout: float = 60.0,
    session_timeout_ms: int = 10_000,
    *,
    kafka: Mapping[str, Any] | None = None,
) -> int:
    """Commit offset 0 for every partition of ``topics`` in ``group_id``; return the count.

    Waits (up to ``timeout`` s) for departed members' sessions to expire.
    ``kafka``: the security arguments (``streams.kafka_security.kafka_client_kwargs``).
    """
    return await _take_over(
        bootstrap, group_id, topics, partitions, timeout, session_timeout_ms, True, kafka
    )


async def ensure_group_empty(
    bootstrap: str,
    group_id: str,
    topics: tuple[str, ...],
    partitions: int,
    timeout: float = 60.0,
    session_timeout_ms: int = 10_000,
    *,
    kafka: Mapping[str, Any] | None = None,
) -> None:
    """Return once this tool alone holds every partition of ``group_id`` (no worker runs).

    Raises ``TimeoutError`` if a member keeps a partition for ``timeout`` s.
    Commits nothing: the group's offsets are left as they are.
    """
    await _take_over(
        bootstrap, group_id, topics, partitions, timeout, session_timeout_ms, False, kafka
    )


async def _take_over(
    bootstrap: str,
    group_id: str,
    topics: tuple[str, ...],
    partitions: int,
    timeout: float,
    session_timeout_ms: int,
    commit: bool,
    kafka: Mapping[str, Any] | None,
) -> int:
    """Join ``group_id`` until it assigns us every partition; then optionally rewind it."""
    want = {TopicPartition(t, p) for t in topics for p in range(partitions)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A member of the workers' group, unlike every other tool's consumer.
        consumer = clients.consumer(
            bootstrap,
            "groups",
            kafka=kafka,
            group_id=group_id,
            partition_assignment_strategy=(_AsFaust,),
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=1000,
        )
        consumer.subscribe(list(topics))
        try:
            await consumer.start()
            while time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200, max_records=1)
                if consumer.assignment() == want:
                    if not commit:
                        return 0
                    offsets: dict[Any, OffsetAndMetadata] = {
                        tp: OffsetAndMetadata(0, "") for tp in want
                    }
                    await consumer.commit(offsets)
                    return len(offsets)
        except InconsistentGroupProtocolError:
            pass
        finally:
            await consumer.stop()
    raise TimeoutError(f"could not take over group {group_id!r} within {timeout}s")
