"""Fixtures: a Kafka-protocol broker, redis-server, workers and gateways on loopback.

Helpers live in ``tests/support/``; this file holds fixtures and the rules by
folder: every test under ``tests/system/`` and ``tests/faults/`` crosses process
boundaries (marker ``e2e``; ``faults`` too for the latter), and nothing under
``tests/core/`` may (the pure core is tested without any process).

One broker and one Redis serve the whole session (isolation comes from unique
customer ids per test). Tests that need their own workers also get their own
consumer group and Redis key prefix, so their state never meets another's.

``TEST_BACKEND=containers`` swaps the embedded broker and redis-server for
testcontainers' Kafka and Redis where a Docker engine exists.
``TEST_REDIS=cluster`` puts the session's Redis (and every private stack's) on a
three-primary Redis Cluster, with workers in forward mode (``make test-cluster``);
the ``redis`` fixture is then a cluster client, and tests that need one primary
skip (``tests.support.stack.single_primary``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import settings as hypothesis_settings
from redis.asyncio.cluster import RedisCluster

from streams.dev import loopback
from streams.dev.cluster import LocalCluster, redis_cluster, start_cluster_sync
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.store.client import Client, connect
from streams.store.state import RedisState
from tests.support.fault_report import (  # noqa: F401  (the fault table's hooks)
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)
from tests.support.gateway import Gateway, start_gateway
from tests.support.stack import (
    PARTITIONS,
    Stack,
    WorkerGroup,
    client,
    on_cluster,
    skip_history,
    space,
)

# A failed test shows the tails of the process logs written while it ran.
pytest_plugins = ["tests.support.child_logs"]

# Property tests: ``make test`` draws the same examples on every machine and run
# (derandomized, so a red run is reproducible and a green one is not luck of the
# draw) with no deadline (a loaded 2-core machine is slow, not wrong);
# ``make test-faults`` searches at random (HYPOTHESIS_PROFILE=search) and keeps
# what it finds in .hypothesis/.
hypothesis_settings.register_profile("repeatable", derandomize=True, deadline=None)
hypothesis_settings.register_profile("search", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def _docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    """A real three-primary Redis Cluster on loopback, one per test module that asks."""
    async with redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def cluster_client(cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    """A cluster client (``redis+cluster://``) of :func:`cluster`."""
    made = connect(cluster.url, socket_timeout=5, socket_connect_timeout=5)
    assert isinstance(made, RedisCluster)
    yield made
    await made.aclose()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The broker and Redis every test shares, started once per session."""
    log_dir = tmp_path_factory.mktemp("logs")
    if os.environ.get("TEST_BACKEND") == "containers":
        if not _docker_engine_available():
            pytest.skip("TEST_BACKEND=containers needs a Docker engine; none is reachable here")
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer() as kafka, RedisContainer() as redis:
            host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
            st = Stack(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", log_dir)
            asyncio.run(ensure_topics(st.bootstrap, PARTITIONS))
            yield st
            for w in st.workers:
                w.stop()
        return
    broker = loopback.start_broker(log_dir)
    if on_cluster():
        # TEST_REDIS=cluster: three primaries; workers run in forward mode (stack.py).
        nodes = start_cluster_sync(tmp_path_factory.mktemp("cluster"))
        st = Stack(f"127.0.0.1:{broker.port}", nodes.url, log_dir)
        stop_redis: Callable[[], None] = nodes.stop_processes
    else:
        redis = loopback.start_redis(tmp_path_factory.mktemp("redis"), log_dir)
        st = Stack(f"127.0.0.1:{broker.port}", f"redis://127.0.0.1:{redis.port}/0", log_dir, redis)
        stop_redis = redis.stop
    asyncio.run(ensure_topics(st.bootstrap, PARTITIONS))
    try:
        yield st
    finally:
        for w in st.workers:
            w.stop()
        stop_redis()
        broker.stop()


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Client]:
    """A client of the session's Redis: a cluster client (``connect``) on a cluster run."""
    made = client(stack.redis_url)
    yield made
    await made.aclose()


@pytest.fixture(scope="session")
async def publisher(stack: Stack) -> AsyncIterator[Publisher]:
    async with Publisher(stack.bootstrap, linger_ms=1) as pub:
        yield pub


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Unique ids per test, so tests can share the broker and Redis."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"t{run}-{name}"


@pytest.fixture
async def group(stack: Stack, redis: Client) -> AsyncIterator[WorkerGroup]:
    """A fresh consumer group + Redis prefix starting at the log end; its workers are
    stopped afterwards."""
    name = f"g{uuid.uuid4().hex[:8]}"
    wg = WorkerGroup(stack, name, name, RedisState(redis, space(name)))
    # Isolation: the group starts where the shared topics end (earlier tests' events
    # are neither folded again nor dead-lettered again).
    await skip_history(stack.bootstrap, wg.state, name)
    started = len(stack.workers)
    yield wg
    for w in stack.workers[started:]:
        w.stop()


@pytest.fixture(scope="session")
async def shared_worker(stack: Stack, publisher: Publisher) -> AsyncIterator[RedisState]:
    """One worker (group ``continuity-tests``, prefix ``cont``) shared by read-only e2e tests."""
    made = client(stack.redis_url)
    wg = WorkerGroup(stack, "continuity-tests", "cont", RedisState(made, space("cont")))
    await skip_history(stack.bootstrap, wg.state, wg.group)
    wg.start("shared")
    await wg.ready(publisher)
    yield wg.state
    await made.aclose()


# --- The gateway -----------------------------------------------------------------


@pytest.fixture(scope="session")
def gateways(stack: Stack, shared_worker: RedisState) -> list[Gateway]:
    """Two gateways over the shared worker's state (prefix ``cont``), for the whole session."""
    # A short heartbeat so the streams' keep-alive comments show up in tests.
    # A long wait cap, so a read-your-writes wait never times out on a slow machine.
    return [
        start_gateway(
            stack, f"gateway-{n}", CONTINUITY_SSE_HEARTBEAT="0.5", CONTINUITY_GATEWAY_MAX_WAIT="60"
        )
        for n in ("a", "b")
    ]


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP client for the session (no connection reuse, so a killed server never
    leaves a stale pooled connection behind)."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    ) as session:
        yield session


# Markers every test in a folder carries: the folder says what a test needs.
FOLDER_MARKERS = {"system": ("e2e",), "faults": ("e2e", "faults")}
# Folders whose tests must run with nothing started (``make unit``).
PURE_FOLDERS = ("core",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder, and refuse an e2e test in a pure folder."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        folder = item.path.resolve().relative_to(tests_dir).parts[0]
        for name in FOLDER_MARKERS.get(folder, ()):
            item.add_marker(getattr(pytest.mark, name))
        if folder in PURE_FOLDERS and item.get_closest_marker("e2e") is not None:
            raise pytest.UsageError(
                f"{item.nodeid}: tests/{folder}/ is pure; e2e tests go elsewhere"
            )
