"""Who subscribes which sharded pub/sub channel: one primary, or each slot's owner. Thin I/O.

``SSUBSCRIBE`` must reach the primary that owns the channel's slot (a cluster
node answers ``MOVED`` for another's), and one command names one slot. On one
primary, every channel is subscribed on one connection of the caller's own
client. On a cluster, each primary owning some of the channels gets a plain
single-node client of its own (built from the cluster client's connection
settings: TLS, credentials, timeouts), so a subscriber reads each node's
``smessage`` replies on one connection and knows when that connection fails.

redis-py's ``RedisCluster.pubsub()`` is not used: it reconnects a failed
node inside the library, so notices lost meanwhile would reach no one and the
subscriber would not know to re-read. Here a lost connection surfaces, and
the caller resolves the owners again (a fresh slot map) before it reconnects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.store.client import Client


@dataclass(frozen=True)
class Shard:
    """One connection's share of the channels: its client, and whether the caller owns it
    (a node client made here, closed with :func:`close`) or lent it."""

    client: Redis
    channels: tuple[str, ...]
    owned: bool


async def shards(client: Client, channels: Sequence[str]) -> list[Shard]:
    """The clients to ``SSUBSCRIBE`` ``channels`` on, each with its channels.

    For one primary, ``client`` itself (which must not retry on its own, or a
    silent reconnect would lose notices). For a cluster, the slot map is read
    afresh (the owners may have changed since the last connection failed) and
    every primary owning some of ``channels`` gets a new client that does not
    retry. Raises the cluster client's errors when no node answers.
    """
    if not isinstance(client, RedisCluster):
        return [Shard(client, tuple(channels), owned=False)]
    await client.initialize()
    await client.nodes_manager.initialize()
    by_node: dict[str, list[str]] = {}
    nodes = {}
    for channel in channels:
        node = client.get_node_from_key(channel)
        if node is None:  # pragma: no cover - get_node_from_key raises for an uncovered slot
            raise LookupError(f"no primary owns the slot of {channel}")
        nodes[node.name] = node
        by_node.setdefault(node.name, []).append(channel)
    out: list[Shard] = []
    for name, names in by_node.items():
        node = nodes[name]
        kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        pool = ConnectionPool(connection_class=node.connection_class, **kwargs)
        out.append(Shard(Redis.from_pool(pool), tuple(names), owned=True))
    return out


async def close(made: Sequence[Shard]) -> None:
    """Close the node clients :func:`shards` made (never a lent one)."""
    for shard in made:
        if shard.owned:
            await shard.client.aclose()
