"""A real Redis Cluster on loopback: N primaries, optionally one replica each.

Every node is a ``redis-server`` in cluster mode (AOF, its own data dir,
``nodes.conf`` and log), with its client and bus ports from below the
ephemeral range; ``redis-cli --cluster create`` joins them. The fault helpers
(:meth:`LocalCluster.failover`, :meth:`LocalCluster.reshard`) return only once
every node agrees on the new layout and says ``cluster_state:ok``, so a test
that follows sees one cluster, not nodes still gossiping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot

from streams.dev import loopback

SLOTS = 16384
# Seconds before a silent node counts as failing; short, so a lost primary is
# noticed within a test, long enough for a busy 2-core machine's gossip.
NODE_TIMEOUT_MS = 2000
_START_ATTEMPTS = 5


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (its ``{tag}`` only, when it has one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


@dataclass
class Node:
    """One cluster node: its process, ports and a plain (not cluster-aware) client."""

    name: str
    child: loopback.Child
    bus_port: int
    client: Redis
    id: str = ""
    data: Path = Path()  # its data dir (AOF, nodes.conf)

    @property
    def port(self) -> int:
        assert self.child.port is not None
        return self.child.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict."""
        text = await _command(self.client, "CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in _text(text).splitlines() if ":" in line)

    async def view(self) -> dict[str, NodeView]:
        """This node's ``CLUSTER NODES``: node id -> what it says of that node."""
        text = _text(await _command(self.client, "CLUSTER", "NODES"))
        return {v.id: v for v in map(NodeView.parse, text.splitlines()) if v is not None}


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``."""

    id: str
    port: int
    primary: bool
    primary_id: str  # "-" for a primary
    failing: bool
    slots: frozenset[int]

    @staticmethod
    def parse(line: str) -> NodeView | None:
        fields = line.split()
        if len(fields) < 8:
            return None
        flags = set(fields[2].split(","))
        slots: set[int] = set()
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being migrated or imported
                continue
            low, _, high = spec.partition("-")
            slots.update(range(int(low), int(high or low) + 1))
        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
        return NodeView(
            fields[0],
            port,
            "master" in flags,
            fields[3],
            bool(flags & {"fail", "fail?"}),
            frozenset(slots),
        )


@dataclass
class LocalCluster:
    """A running cluster: its nodes and the operations fault tests need."""

    root: Path
    nodes: list[Node]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    async def primaries(self) -> list[Node]:
        """The nodes that are primaries now (as the first node sees it)."""
        view = await self.nodes[0].view()
        return [n for n in self.nodes if view[n.id].primary]

    async def replicas_of(self, primary: Node) -> list[Node]:
        """The replicas of ``primary`` now."""
        view = await self.nodes[0].view()
        return [n for n in self.nodes if view[n.id].primary_id == primary.id]

    async def owner(self, slot: int) -> Node:
        """The primary serving ``slot`` now."""
        view = await self.nodes[0].view()
        return next(n for n in self.nodes if view[n.id].primary and slot in view[n.id].slots)

    async def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok``."""
        await _until(lambda: self._all_ok(), timeout, "cluster_state:ok on every node")

    async def failover(self, replica: Node, timeout: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica``; returns once every node sees it as a primary
        (its old primary as its replica) and the cluster is ok."""
        view = await replica.view()
        old = view[replica.id].primary_id
        if view[replica.id].primary:
            raise ValueError(f"{replica.name} is a primary already")
        await _command(replica.client, "CLUSTER", "FAILOVER")

        async def promoted() -> bool:
            for node in self.nodes:
                seen = await node.view()
                if not seen[replica.id].primary or seen[old].primary_id != replica.id:
                    return False
            return await self._all_ok()

        await _until(promoted, timeout, f"{replica.name} promoted on every node")

    async def reshard(self, slots: int | Iterable[int], to: Node, timeout: float = 30.0) -> None:
        """Move ``slots`` (and their keys) to the primary ``to``: ``SETSLOT IMPORTING`` /
        ``MIGRATING``, ``MIGRATE`` in batches, ``SETSLOT NODE`` everywhere; returns once
        every node names ``to`` as their owner and the cluster is ok."""
        wanted = [slots] if isinstance(slots, int) else sorted(set(slots))
        primaries = await self.primaries()
        if to not in primaries:
            raise ValueError(f"{to.name} is not a primary")
        for slot in wanted:
            source = await self.owner(slot)
            if source is to:
                continue
            await _command(to.client, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
            await _command(source.client, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.id)
            while keys := await _command(source.client, "CLUSTER", "GETKEYSINSLOT", slot, 100):
                await _command(
                    source.client, "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys
                )
            # The destination first, then the source, then the rest (the order
            # Redis's own resharding uses): no node sends a client to a node
            # that does not know it owns the slot yet.
            others = [p for p in primaries if p is not to and p is not source]
            for node in (to, source, *others):
                await _command(node.client, "CLUSTER", "SETSLOT", slot, "NODE", to.id)

        async def moved() -> bool:
            for node in self.nodes:
                seen = (await node.view())[to.id].slots
                if not seen.issuperset(wanted):
                    return False
            return await self._all_ok()

        await _until(moved, timeout, f"slots {wanted[:4]}... owned by {to.name} on every node")

    async def stop(self) -> None:
        """Close the nodes' clients and stop every node (by its PID)."""
        for node in self.nodes:
            await node.client.aclose()
        self.stop_processes()

    def restart_processes(self, kill: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``kill``) every node, then start each again:
        the cluster forms again as it was (wait with :meth:`wait_ok`)."""
        self.stop_processes(kill)
        self.start_processes()

    def stop_processes(self, kill: bool = False) -> None:
        """Stop every node (by its PID; SIGKILL with ``kill``); the clients are the
        caller's to close."""
        for node in self.nodes:
            if kill:
                node.child.kill()
            else:
                node.child.stop()

    def start_processes(self) -> None:
        """Start every stopped node again on its ports, data dir and ``nodes.conf``."""
        for node in self.nodes:
            if not node.child.alive():
                node.child = node.child.restart()
        for node in self.nodes:
            loopback.wait_port(node.port, proc=node.child.proc)

    async def _all_ok(self) -> bool:
        for node in self.nodes:
            if (await node.cluster_info()).get("cluster_state") != "ok":
                return False
        return True


@asynccontextmanager
async def redis_cluster(
    root: Path, primaries: int = 3, replicas: int = 0, timeout: float = 60.0
) -> AsyncIterator[LocalCluster]:
    """Start ``primaries`` primaries with ``replicas`` replicas each, joined and ok;
    stop every node (by its PID) afterwards."""
    cluster = await start_cluster(root, primaries, replicas, timeout)
    try:
        yield cluster
    finally:
        await cluster.stop()


async def start_cluster(
    root: Path,
    primaries: int = 3,
    replicas: int = 0,
    timeout: float = 60.0,
    appendfsync: str = "everysec",
) -> LocalCluster:
    """Start a cluster as :func:`redis_cluster` does (every node's AOF with
    ``appendfsync``); the caller stops it (``stop``)."""
    if primaries < 3:
        raise ValueError("redis-cli --cluster create needs at least 3 primaries")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli not found on PATH (Debian: apt-get install redis-tools)")
    cluster = LocalCluster(root, [])
    try:
        for i in range(primaries * (1 + replicas)):
            cluster.nodes.append(_start_node(root / f"node-{i}", f"node-{i}", appendfsync))
        await _create(cli, cluster.nodes, replicas, timeout)
        for node in cluster.nodes:
            node.id = _text(await _command(node.client, "CLUSTER", "MYID"))
        await _until(
            lambda: _formed(cluster, primaries, replicas), timeout, "every node seeing the cluster"
        )
    except BaseException:
        await cluster.stop()
        raise
    return cluster


def start_cluster_sync(root: Path, primaries: int = 3) -> LocalCluster:
    """A cluster started outside any event loop (a session fixture's), for its URL and
    processes: the nodes' own clients are closed before the loop that made them ends."""

    async def start() -> LocalCluster:
        cluster = await start_cluster(root, primaries)
        for node in cluster.nodes:
            await node.client.aclose()
        return cluster

    return asyncio.run(start())


def _start_node(home: Path, name: str, appendfsync: str = "everysec") -> Node:
    """One cluster-mode ``redis-server``; started again on fresh ports when it loses one."""
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = loopback.free_port()
        bus = loopback.free_port()
        if bus == port:
            continue
        extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str((data / "nodes.conf").resolve()),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # The bus port chosen like the client port: the default (port + 10000)
            # could land in the ephemeral range, where a client socket may hold it.
            "--cluster-port",
            str(bus),
        ]
        argv = loopback.redis_server_argv(port, data, appendfsync, extra)
        child = loopback.spawn(name, argv, home / "redis.log", env=loopback.REDIS_ENV, port=port)
        try:
            loopback.wait_port(port, proc=child.proc)
            _wait_bus(child, bus)
        except loopback.PortLost:
            child.kill()
            if attempt == _START_ATTEMPTS:
                raise
            continue
        except BaseException:
            child.kill()
            raise
        client = Redis(
            host="127.0.0.1",
            port=port,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        return Node(name, child, bus, client, data=data)
    raise loopback.PortLost(f"{name}: no free port pair in {_START_ATTEMPTS} attempts")


def _wait_bus(child: loopback.Child, bus: int, timeout: float = 20.0) -> None:
    """Until ``child`` listens on its bus port too (it binds that after the client port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise loopback.PortLost(f"{child.name} exited before its bus port {bus} opened")
        if loopback.listens(child.pid, bus):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{child.name}: bus port {bus} not listening after {timeout}s")


async def _create(cli: str, nodes: list[Node], replicas: int, timeout: float) -> None:
    argv = [cli, "--cluster", "create", *(n.address for n in nodes)]
    argv += ["--cluster-replicas", str(replicas), "--cluster-yes"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **loopback.REDIS_ENV},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{out.decode(errors='replace')}")


async def _formed(cluster: LocalCluster, primaries: int, replicas: int) -> bool:
    """Every node sees every node, ``primaries`` primaries covering all slots and
    ``replicas`` replicas of each, says ``cluster_state:ok``; every replica is in sync."""
    for node in cluster.nodes:
        view = await node.view()
        owners = [v for v in view.values() if v.primary and v.slots]
        followers = [v for v in view.values() if not v.primary and v.primary_id != "-"]
        covered = set().union(*(v.slots for v in owners))
        if len(view) != len(cluster.nodes) or len(owners) != primaries:
            return False
        if len(followers) != primaries * replicas or len(covered) != SLOTS:
            return False
        if any(v.failing for v in view.values()):
            return False
        info = await node.client.info("replication")
        if info.get("role") == "slave" and info.get("master_link_status") != "up":
            return False
    return await cluster._all_ok()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no {what} after {timeout}s")


async def _command(client: Redis, *args: Any) -> Any:
    """One command by name (redis-py types ``execute_command`` loosely)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)
