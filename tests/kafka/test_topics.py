"""The topics a process creates when they are missing (``streams/kafka/topics.py``).

Against the embedded broker, which stores a topic's configs and reports them
(``DescribeConfigs``) though it enforces neither retention nor compaction: the
source topics and dead letters keep a week (or what the setting says), the
session changelog is compacted, co-partitioned with the sources whatever
partition count the caller asks for, and refused when it is not; the session
forwards keep a week whatever the sources' setting, co-partitioned and refused
alike; erasures stay compacted and unbounded. Each test gets its own broker, since topic names are
fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.topics import (
    DEAD_LETTERS,
    DLQ_REPAIRS,
    ERASURES,
    NOTIFICATIONS,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
    SOURCE_TOPICS,
)
from streams.dev import loopback
from streams.kafka import clients
from streams.kafka.topics import TopicLayoutError, ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.e2e

WEEK_MS = 7 * 86400 * 1000


@dataclass
class Broker:
    bootstrap: str
    admin: AIOKafkaAdminClient


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    child = loopback.start_broker(tmp_path)
    address = f"127.0.0.1:{child.port}"
    admin = clients.admin(address, "topics-test")
    await admin.start()
    try:
        yield Broker(address, admin)
    finally:
        await admin.close()
        child.stop()


async def configs(admin: AIOKafkaAdminClient, *topics: str) -> dict[str, dict[str, str]]:
    """Each topic's configs as the broker reports them."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for _code, _message, _type, name, entries in response.resources:
            out[name] = {entry[0]: entry[1] for entry in entries}
    return out


async def test_missing_topics_get_a_weeks_retention_and_a_compacted_changelog(
    broker: Broker,
) -> None:
    layout = await ensure_topics(broker.bootstrap, 4)

    assert {layout[t] for t in (*SOURCE_TOPICS, SESSION_CHANGELOG, DEAD_LETTERS)} == {4}
    assert layout[SESSION_FORWARDS] == 4
    assert layout[ERASURES] == layout[DLQ_REPAIRS] == 1
    found = await configs(
        broker.admin, *SOURCE_TOPICS, DEAD_LETTERS, SESSION_CHANGELOG, SESSION_FORWARDS, ERASURES
    )
    for topic in (*SOURCE_TOPICS, DEAD_LETTERS, SESSION_FORWARDS):
        assert found[topic]["cleanup.policy"] == "delete", topic
        assert int(found[topic]["retention.ms"]) == WEEK_MS, topic
    changelog = found[SESSION_CHANGELOG]
    assert changelog["cleanup.policy"] == "compact"
    # Tombstones outlive the version floors: at least the session TTL.
    assert int(changelog["delete.retention.ms"]) >= Settings().session_ttl * 1000
    assert 0 < int(changelog["min.compaction.lag.ms"]) <= 3600 * 1000
    assert int(changelog["max.compaction.lag.ms"]) <= WEEK_MS
    # Erasures are never deleted by age.
    assert found[ERASURES]["cleanup.policy"] == "compact"
    assert "retention.ms" not in found[ERASURES]


async def test_the_setting_decides_the_sources_retention(broker: Broker) -> None:
    assert Settings().topic_retention_ms == WEEK_MS
    await ensure_topics(broker.bootstrap, 2, retention_ms=-1)

    found = await configs(
        broker.admin, *SOURCE_TOPICS, DEAD_LETTERS, NOTIFICATIONS, SESSION_FORWARDS
    )
    assert {found[t]["retention.ms"] for t in (*SOURCE_TOPICS, DEAD_LETTERS)} == {"-1"}
    # Forwards are work in flight, not history to replay: a week all the same.
    assert int(found[SESSION_FORWARDS]["retention.ms"]) == WEEK_MS


async def test_a_missing_changelog_and_forwards_take_the_sources_partition_count(
    broker: Broker,
) -> None:
    await broker.admin.create_topics([NewTopic(t, 3, 1) for t in SOURCE_TOPICS])

    layout = await ensure_topics(broker.bootstrap, 5)

    assert layout[SESSION_CHANGELOG] == layout[SESSION_FORWARDS] == 3
    assert layout[DEAD_LETTERS] == 5  # not co-partitioned: the caller's count


async def test_a_changelog_with_another_partition_count_is_refused(broker: Broker) -> None:
    await broker.admin.create_topics(
        [NewTopic(t, 3, 1) for t in SOURCE_TOPICS] + [NewTopic(SESSION_CHANGELOG, 2, 1)]
    )

    with pytest.raises(TopicLayoutError, match="session-changelog=2"):
        await ensure_topics(broker.bootstrap, 3)


async def test_forwards_with_another_partition_count_are_refused(broker: Broker) -> None:
    await broker.admin.create_topics(
        [NewTopic(t, 3, 1) for t in SOURCE_TOPICS] + [NewTopic(SESSION_FORWARDS, 4, 1)]
    )

    with pytest.raises(TopicLayoutError, match="session-forwards=4"):
        await ensure_topics(broker.bootstrap, 3)
