"""Workers and gateways refuse topics whose partition count is not ``CONTINUITY_TOPIC_PARTITIONS``.

The Redis layout places every key by its Kafka partition computed with the
configured count (``cont:{p<partition>}:...``): a worker folding topics of
another count would write state where the gateway and the other processes do
not look. Against the embedded broker: topics created with 4 partitions, then
a worker configured for 8 (refused, in-process and as ``continuity worker``
with its exit status), and one configured for 4 (ready). And a worker given a
Redis Cluster URL in ``direct`` mode is refused at start, naming the setting.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.topics import SOURCE_TOPICS
from streams.dev import loopback
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.worker.startup import CONFIGURATION, Ready, Refused, check_kafka, check_redis
from tests.support.gateway import GATEWAY_SECRET

pytestmark = pytest.mark.e2e


@pytest.fixture
def bootstrap(tmp_path: Path) -> Iterator[str]:
    child = loopback.start_broker(tmp_path)
    try:
        yield f"127.0.0.1:{child.port}"
    finally:
        child.stop()


def _settings(bootstrap: str, partitions: int) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, topic_partitions=partitions)


async def test_topics_of_another_partition_count_are_refused_with_why_and_what_to_do(
    bootstrap: str,
) -> None:
    layout = await ensure_topics(bootstrap, 4)
    assert layout[SOURCE_TOPICS[0]] == 4
    with pytest.raises(Refused) as refused:
        await check_kafka(_settings(bootstrap, 8))
    assert refused.value.code == CONFIGURATION
    message = refused.value.message
    assert "have 4 partitions" in message
    assert "CONTINUITY_TOPIC_PARTITIONS is 8" in message
    # Why: keys are placed by partition. What to do: agree on the count, or rebuild.
    assert "places every key by its Kafka partition" in message
    assert "CONTINUITY_TOPIC_PARTITIONS=4" in message
    assert "continuity rebuild" in message


async def test_topics_of_the_configured_count_are_accepted(bootstrap: str) -> None:
    await ensure_topics(bootstrap, 4)
    ready = await check_kafka(_settings(bootstrap, 4))
    assert isinstance(ready, Ready)
    assert [level for level, _ in ready.notes] == [20]  # the INFO line only, no warning


async def test_missing_topics_are_created_with_the_configured_count(bootstrap: str) -> None:
    ready = await check_kafka(_settings(bootstrap, 3))
    assert isinstance(ready, Ready)
    assert (await ensure_topics(bootstrap, 3))[SOURCE_TOPICS[0]] == 3


def test_the_worker_command_exits_with_the_refusal_before_folding(bootstrap: str) -> None:
    asyncio.run(ensure_topics(bootstrap, 4))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "CONTINUITY_TOPIC_PARTITIONS": "8",
        "CONTINUITY_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == CONFIGURATION, done.stderr
    assert "continuity worker: the source topics have 4 partitions" in done.stderr
    assert "CONTINUITY_TOPIC_PARTITIONS=4" in done.stderr


def test_the_gateway_command_refuses_topics_of_another_count_too(bootstrap: str) -> None:
    """A gateway computing partitions with another count would read sessions, and draw
    handoff codes, where no worker writes: it refuses to start the same way."""
    asyncio.run(ensure_topics(bootstrap, 4))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap,
        "CONTINUITY_TOPIC_PARTITIONS": "8",
        "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
        "CONTINUITY_GATEWAY_PORT": "0",
        "CONTINUITY_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "continuity gateway: the source topics have 4 partitions" in done.stderr
    assert "CONTINUITY_TOPIC_PARTITIONS=4" in done.stderr


def test_a_cluster_url_in_direct_mode_is_refused_with_what_to_set() -> None:
    """A direct commit changes two partitions' keys, which a cluster refuses: the worker
    says so at start, and starts in forward mode (or on one primary)."""
    cluster = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    with pytest.raises(Refused) as refused:
        check_redis(Settings(REDIS_URL=cluster, cross_partition="direct"))
    assert refused.value.code == CONFIGURATION
    assert "CONTINUITY_CROSS_PARTITION=forward" in refused.value.message
    check_redis(Settings(REDIS_URL=cluster, cross_partition="forward"))
    check_redis(Settings(REDIS_URL="redis://127.0.0.1:1/0", cross_partition="direct"))


def test_the_worker_command_refuses_a_cluster_in_direct_mode_before_kafka() -> None:
    env = {
        **os.environ,
        # No broker and no cluster listen here: the refusal comes first.
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{loopback.free_port()}",
        "REDIS_URL": f"redis+cluster://127.0.0.1:{loopback.free_port()}",
        "CONTINUITY_CROSS_PARTITION": "direct",
        "CONTINUITY_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == CONFIGURATION, done.stderr
    assert "REDIS_URL names a Redis Cluster" in done.stderr
    assert "CONTINUITY_CROSS_PARTITION=forward" in done.stderr
