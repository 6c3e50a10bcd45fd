"""Create the event topics with one partition count, or refuse a layout that breaks it.

Production creates its topics with ``deploy/topics.sh`` (replication, in-sync
replicas, the same retention and compaction settings as here); this is what the
worker, the gateway and the tools create when a topic is missing, on the
embedded broker in development and tests. An existing topic keeps its settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import (
    DEAD_LETTERS,
    DLQ_REPAIRS,
    ERASURES,
    NOTIFICATIONS,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
    SOURCE_TOPICS,
)
from streams.core.expiry import DAY, DEFAULT_SESSION_TTL
from streams.kafka import clients

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36

# Source topics: a week, Kafka's own default. History is no longer needed to
# rebuild Redis (``continuity rebuild`` restores the session changelog, then
# folds only the tail the changelog does not hold yet), and every record of an
# erased customer leaves the source topics within about eight days (see below).
SOURCE_RETENTION_MS = 7 * DAY * 1000
# A segment is deleted once its newest record is past retention: rolled daily,
# a record is gone at most about a day after its retention (Kafka rolls weekly).
SOURCE_SEGMENT_MS = DAY * 1000
# The session changelog's tombstones stay this long after compaction reaches
# them. A session's version floor outlives the session by one session TTL
# (``cont:vf``, streams/core/expiry.py), and a rebuild from the changelog can
# only restore it while the tombstone is there; a consumer reading the
# changelog from the start must also reach a tombstone before it goes, or it
# never learns the session ended. So: at least the session TTL.
CHANGELOG_DELETE_RETENTION_MS = DEFAULT_SESSION_TTL * 1000
# The newest hour of the changelog is never compacted: a consumer close behind
# (a downstream system, a rebuild folding the tail) sees every version, not
# just each session's latest, and a busy session's versions are not rewritten
# by the cleaner every few minutes.
CHANGELOG_MIN_COMPACTION_LAG_MS = 3600 * 1000
# ... and every record is compacted within a week: an erased or ended
# session's earlier versions (personal data) leave the changelog within the
# same bound as the source topics' records, once its tombstone is written.
CHANGELOG_MAX_COMPACTION_LAG_MS = 7 * DAY * 1000
# Forward records are work in flight between two partitions, folded within
# moments of their commit; a week covers any outage the source topics' own
# retention would survive. Not the source topics' setting: keeping sources
# forever (-1) for replays is no reason to keep these.
FORWARDS_RETENTION_MS = 7 * DAY * 1000


class TopicLayoutError(RuntimeError):
    """The event topics exist with partition counts that do not match."""


def partition_mismatch(found: int | None, configured: int) -> str:
    """Why a process refuses topics whose partition count is not the configured one."""
    return (
        f"the source topics have {found} partitions but CONTINUITY_TOPIC_PARTITIONS is "
        f"{configured}. The Redis layout places every key by its Kafka partition "
        "(cont:{p<partition>}:...), computed with CONTINUITY_TOPIC_PARTITIONS: folding "
        "topics of another count would put state where no reader looks. Set "
        f"CONTINUITY_TOPIC_PARTITIONS={found} on every process sharing this Redis, or, to "
        "change the count, recreate the topics with the new count and run `continuity "
        "rebuild` (Operations: Redis layout)"
    )


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    replication: int = 1,
    *,
    kafka: Mapping[str, Any] | None = None,
    retention_ms: int = SOURCE_RETENTION_MS,
) -> dict[str, int]:
    """Create missing topics; return ``topic -> partitions``.

    Events of one customer are keyed by customer and must land on the same
    partition number of every topic, so the source topics, the session
    changelog (keyed by session key) and the forwards between partitions
    (addressed to a partition of the same layout) must agree on their
    partition count; this raises ``TopicLayoutError`` when they do not. A
    missing changelog or forwards topic is created with the source topics'
    count, whatever ``partitions`` says.
    ``kafka``: the security arguments (``streams.kafka_security.kafka_client_kwargs``).
    ``retention_ms``: of the source topics and the dead letters (``-1``: forever).
    """
    admin = clients.admin(bootstrap, "topics", kafka=kafka)
    await admin.start()
    try:
        first = [*SOURCE_TOPICS, DEAD_LETTERS, ERASURES, NOTIFICATIONS, DLQ_REPAIRS]
        # Created after the sources, with their real count.
        following = [SESSION_CHANGELOG, SESSION_FORWARDS]
        wanted = [*first, *following]
        existing = set(await admin.list_topics())
        await _create(
            admin, [t for t in first if t not in existing], partitions, replication, retention_ms
        )
        layout = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(first)}
        missing = [t for t in following if t not in existing]
        count = layout.get(SOURCE_TOPICS[0]) or partitions
        await _create(admin, missing, count, replication, retention_ms)
        layout |= {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(following)}
    finally:
        await admin.close()
    co_partitioned = (*SOURCE_TOPICS, *following)
    counts = {layout.get(t, 0) for t in co_partitioned}
    if len(counts) != 1:
        raise TopicLayoutError(
            "event topics, the session changelog and the session forwards must share one "
            "partition count, found " + ", ".join(f"{t}={layout.get(t)}" for t in co_partitioned)
        )
    return {t: layout[t] for t in wanted if t in layout}


async def _create(
    admin: AIOKafkaAdminClient,
    topics: list[str],
    partitions: int,
    replication: int,
    retention_ms: int,
) -> None:
    if not topics:
        return
    response = await admin.create_topics(
        [_new_topic(t, partitions, replication, retention_ms) for t in topics]
    )
    for topic, code, message in _errors(response):
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise TopicLayoutError(f"cannot create {topic}: {message} (code {code})")
    log.info("created topics %s with %d partitions", ", ".join(topics), partitions)


def topic_configs(topic: str, retention_ms: int = SOURCE_RETENTION_MS) -> dict[str, str]:
    """The configs a missing ``topic`` is created with (``deploy/topics.sh`` explains them)."""
    if topic in (ERASURES, DLQ_REPAIRS):
        # Keyed by customer (by dead letter), latest wins, kept for good.
        return {"cleanup.policy": "compact"}
    if topic == SESSION_CHANGELOG:
        return {
            "cleanup.policy": "compact",
            "delete.retention.ms": str(CHANGELOG_DELETE_RETENTION_MS),
            "min.compaction.lag.ms": str(CHANGELOG_MIN_COMPACTION_LAG_MS),
            "max.compaction.lag.ms": str(CHANGELOG_MAX_COMPACTION_LAG_MS),
        }
    if topic == SESSION_FORWARDS:
        # Never compacted: every forward record counts, not each key's latest.
        return {"cleanup.policy": "delete", "retention.ms": str(FORWARDS_RETENTION_MS)}
    if topic in (*SOURCE_TOPICS, DEAD_LETTERS):
        # Never compacted: the key is the customer, and compaction would keep only
        # each customer's last event. Dead letters carry the same personal data, and
        # a repaired one is sure to fold as its event would have only within the expiry grace
        # (7 days) of that event: they keep the same week.
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "segment.ms": str(SOURCE_SEGMENT_MS),
        }
    return {}


def _new_topic(topic: str, partitions: int, replication: int, retention_ms: int) -> NewTopic:
    count = 1 if topic in (ERASURES, DLQ_REPAIRS) else partitions
    return NewTopic(topic, count, replication, topic_configs=topic_configs(topic, retention_ms))


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in errors]
