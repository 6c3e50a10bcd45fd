"""A broker, a Redis and workers of one test's own, for faults the shared stack must not see.

Restarting the embedded broker forgets every topic (it keeps nothing on
disk), and stopping Redis would stall every other test: such tests build a
``PrivateStack``. Ports stay fixed across restarts, so workers reconnect.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from schemas.session import Session
from streams.dev import loopback
from streams.dev.cluster import LocalCluster, start_cluster
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.store.client import Client
from streams.store.state import RedisState
from tests.support.cli import run_cli
from tests.support.events import event
from tests.support.gateway import GATEWAY_SECRET, Gateway
from tests.support.stack import (
    PARTITIONS,
    client,
    committed_offsets,
    on_cluster,
    publish,
    redis_env,
    space,
    wait_until,
    wait_version,
)


@dataclass
class PrivateStack:
    """One test's broker and Redis: one redis-server, or (``TEST_REDIS=cluster``) a
    three-primary cluster of its own (``cluster``), its workers in forward mode."""

    root: Path
    broker: loopback.Child
    single: loopback.Child | None
    redis: Client
    state: RedisState
    cluster: LocalCluster | None = None
    workers: list[loopback.Child] = field(default_factory=list)
    group: str = "faults"
    prefix: str = "cont"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_child(self) -> loopback.Child:
        """The one redis-server (a test handling it directly needs one primary)."""
        if self.single is None:
            raise RuntimeError("no single redis-server on a cluster: mark the test single_primary")
        return self.single

    @redis_child.setter
    def redis_child(self, child: loopback.Child) -> None:
        self.single = child

    @property
    def redis_pids(self) -> list[int]:
        """The process id of every redis-server holding the data (one, or each node)."""
        if self.cluster is not None:
            return [node.child.proc.pid for node in self.cluster.nodes]
        return [self.redis_child.proc.pid]

    @property
    def redis_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        return f"redis://127.0.0.1:{self.redis_child.port}/0"

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {
            **redis_env(self.redis_url),
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "CONTINUITY_APP_ID": self.group,
            "CONTINUITY_REDIS_PREFIX": self.prefix,
            "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
            "CONTINUITY_METRICS_HOST": "127.0.0.1",
            "CONTINUITY_SESSION_TIMEOUT": "6",
            "CONTINUITY_RETRY_MAX_DELAY": "0.5",
            "CONTINUITY_STATE_DIR": "/nonexistent",
            **extra,
        }

    def start_worker(self, name: str, **extra: str) -> loopback.Child:
        port = loopback.free_port()
        env = self.worker_env(CONTINUITY_METRICS_PORT=str(port), **extra)
        child = loopback.start_worker(name, env, self.root / "logs")
        child.port = port
        self.workers.append(child)
        return child

    def start_gateway(self, name: str, **extra: str) -> Gateway:
        """A gateway over this stack's broker and Redis, stopped with the stack."""
        env = {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "REDIS_URL": self.redis_url,
            "CONTINUITY_REDIS_PREFIX": self.prefix,
            "CONTINUITY_TOPIC_PARTITIONS": str(PARTITIONS),
            "CONTINUITY_AUTH_SECRET": GATEWAY_SECRET,
            "CONTINUITY_STATE_DIR": "/nonexistent",
            **extra,
        }
        child = loopback.start_gateway(name, env, self.root / "logs")
        self.workers.append(child)
        return Gateway(child)

    async def cli(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """``continuity ARGS`` against this stack, as a process: (status, stdout, stderr)."""
        environment = {**os.environ, **self.worker_env(), **(env or {})}
        return await run_cli(*args, env=environment, timeout=timeout)

    def restart(self, child: loopback.Child) -> loopback.Child:
        new = child.restart()
        self.workers.append(new)
        return new

    async def restart_broker(self) -> None:
        """Stop the broker and start a fresh one on the same port: every topic is gone."""
        self.broker.stop()
        self.broker = self.broker.restart()
        loopback.wait_port(self.broker.port or 0, proc=self.broker.proc)
        await ensure_topics(self.bootstrap, PARTITIONS)

    def aof_dirs(self) -> list[Path]:
        """Where Redis keeps its append-only files: the one server's, or each node's."""
        if self.cluster is not None:
            return [node.data / "appendonlydir" for node in self.cluster.nodes]
        return [self.root / "redis" / "appendonlydir"]

    def stop_redis(self, kill: bool = False) -> None:
        """Stop Redis (SIGTERM, or SIGKILL with ``kill``; every node of a cluster)."""
        if self.cluster is not None:
            self.cluster.stop_processes(kill)
        elif kill:
            self.redis_child.kill()
        else:
            self.redis_child.stop()

    def start_redis(self) -> None:
        """Start a stopped Redis again on its data dir (every node of a cluster)."""
        if self.cluster is not None:
            self.cluster.start_processes()
            return
        self.redis_child = self.redis_child.restart()
        loopback.wait_port(self.redis_child.port or 0, proc=self.redis_child.proc)

    def restart_redis(self, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start Redis on its data dir
        (every node of a cluster, each on its own)."""
        self.stop_redis(kill)
        self.start_redis()

    async def committed(self) -> dict[str, int]:
        """``topic:partition`` -> the group's committed offset (the next record to read)."""
        return await committed_offsets(self.bootstrap, self.group)

    async def ready(self, pub: Publisher, timeout: float = 90) -> None:
        """Wait until the workers fold a fresh probe event (assignment + Redis)."""
        probe = f"probe-{uuid.uuid4().hex[:10]}"
        await publish(pub, [event("browse.search", {"query": "probe"}, customer=probe)])
        await wait_version(self.state, probe, 1, timeout)

    async def sessions(self, keys: list[str]) -> dict[str, Session | None]:
        """The stored session of every key (None where missing), read while Redis is up."""

        async def read() -> dict[str, Session | None]:
            return {k: await self.state.get(k) for k in keys}

        return await asyncio.wait_for(read(), 60)


@asynccontextmanager
async def private_stack(
    root: Path, appendfsync: str = "always", cluster_replicas: int | None = None
) -> AsyncIterator[PrivateStack]:
    """Start a broker and a Redis (AOF with ``appendfsync``; a cluster on a cluster run,
    or, given ``cluster_replicas``, a three-primary cluster with that many replicas per
    primary whatever the run); stop everything afterwards."""
    logs = root / "logs"
    broker = loopback.start_broker(logs)
    nodes: LocalCluster | None = None
    redis_child: loopback.Child | None = None
    try:
        if on_cluster() or cluster_replicas is not None:
            nodes = await start_cluster(
                root / "cluster", replicas=cluster_replicas or 0, appendfsync=appendfsync
            )
            url = nodes.url
        else:
            redis_child = loopback.start_redis(root / "redis", logs, appendfsync=appendfsync)
            url = f"redis://127.0.0.1:{redis_child.port}/0"
    except BaseException:
        broker.stop()
        raise
    made = client(url, socket_timeout=5, socket_connect_timeout=5)
    st = PrivateStack(root, broker, redis_child, made, RedisState(made, space("cont")), nodes)
    try:
        await ensure_topics(st.bootstrap, PARTITIONS)
        yield st
    finally:
        for w in st.workers:
            w.stop()
        await made.aclose()
        if st.cluster is not None:
            await st.cluster.stop()
        else:
            st.redis_child.stop()
        st.broker.stop()


async def wait_redis(st: PrivateStack, timeout: float = 30) -> None:
    """Wait until the test's Redis client gets an answer again (on a cluster: every node,
    and the cluster formed again)."""

    async def up() -> bool:
        try:
            if st.cluster is not None:
                await st.cluster.wait_ok(timeout=0.5)
            return bool(await st.redis.ping())
        except Exception:
            return False

    await wait_until(up, timeout, interval=0.2)


async def http_get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET ``path`` on 127.0.0.1:``port``; (0, error) if nothing answers."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return 0, repr(exc)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()
