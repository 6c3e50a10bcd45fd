"""How every process reaches Redis (plain, TLS, Sentinel or Cluster), and which errors pass.

``REDIS_URL`` takes the forms redis-py's ``from_url`` takes (``redis://``,
``rediss://``, ``unix://``) plus Sentinel's:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>][?query]
    rediss+sentinel://...   (TLS to the sentinels and to the primary)

The sentinels are asked for the current primary of ``<service>`` on every new
connection, so after a failover the next connection (a retry, a reconnect)
goes to the promoted replica. The password in the URL is the data nodes';
``sentinel_password`` (and ``sentinel_username``) in the query authenticate to
the sentinels themselves. Other query arguments are redis-py's
(``socket_timeout``, ``ssl_ca_certs``, ...), applied to the data connections.

And Redis Cluster's:

    redis+cluster://[[user]:password@]host:port[,host:port...][/0][?query]
    rediss+cluster://...    (TLS to every node)

The hosts are startup nodes: redis-py's ``RedisCluster`` asks them for the
slot map, follows ``MOVED``/``ASK`` redirections and refreshes the map after a
failover or a reshard by itself. A cluster has database 0 only; the query
arguments are ``RedisCluster``'s (a name it does not take is refused). Only
:func:`connect` returns such a client; the worker and the gateway connect with
it (every command of theirs names one slot, and a worker on a cluster runs in
``CONTINUITY_CROSS_PARTITION=forward`` mode: ``docs/merge-across-partitions.md``).
:func:`connect_primary` is for what still needs one primary, and refuses a
cluster URL.

``transient`` is the one list of errors worth waiting out: lost connections
and every reply a failover or a full primary gives while it lasts.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from streams.store import packing

# Every client of this process packs commands straight with hiredis (streams/store/packing.py).
packing.install()

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_REDIS_PORT = 6379

# What :func:`connect` returns: one primary's client, or a whole cluster's.
Client: TypeAlias = Redis | RedisCluster

# Replies that say "not now" rather than "never": a demoted primary (READONLY),
# a replica loading its data set (LOADING), a full primary with noeviction (OOM),
# a replica cut off from its primary (MASTERDOWN), not enough replicas (NOREPLICAS),
# a key of a slot being migrated (TRYAGAIN), a cluster with a slot uncovered while
# a failover runs (CLUSTERDOWN).
_TRANSIENT_CODES = (
    "READONLY",
    "LOADING",
    "OOM",
    "MASTERDOWN",
    "NOREPLICAS",
    "TRYAGAIN",
    "CLUSTERDOWN",
)
# redis-py parses some codes into classes and strips the code from the message
# (TRYAGAIN, CLUSTERDOWN and MASTERDOWN among them), so the classes are listed too.
# Then the cluster client's own: a redirection storm that outlasted its attempts
# (ClusterError "TTL exhausted"), a slot its map has no node for yet, no startup
# node answering. MOVED and ASK are absent on purpose: the cluster client follows
# them itself, and one reaching a single-node client means REDIS_URL names a
# cluster node with redis://, which no retry outlives.
_TRANSIENT_TYPES = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OutOfMemoryError,
    OSError,
    TryAgainError,
    ClusterDownError,
    ClusterError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)


# Everything a command may raise when Redis does not answer it: redis-py's own errors,
# the socket's, and the cluster client's that are no ``RedisError`` (no node reachable,
# a slot no node serves). A reader that answers "unavailable" catches these.
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, RedisClusterException)


def transient(exc: BaseException) -> bool:
    """True for errors that a retry after a pause can outlive (outages, failovers, OOM)."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, ResponseError):
        # redis-py maps some codes to classes and leaves the rest in the message;
        # inside a script the code may follow the script's own prefix.
        text = str(exc)
        return any(text.startswith(code) or f" {code} " in text for code in _TRANSIENT_CODES)
    return False


def refusal(exc: BaseException) -> str:
    """How ``/readyz`` names a transient error: "unreachable" or "refusing writes (CODE)"."""
    if isinstance(exc, ReadOnlyError):
        return "refusing writes (READONLY)"
    if isinstance(exc, OutOfMemoryError):
        return "refusing writes (OOM)"
    if isinstance(exc, BusyLoadingError):
        return "loading its data set"
    if isinstance(exc, ResponseError):
        # The code redis-py parsed off the message, else the message's first word.
        code = exc.status_code or str(exc).split(" ", 1)[0]
        return f"refusing writes ({code})"
    return "unreachable"


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel-managed primary."""
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


class ClusterUnsupported(ValueError):
    """A cluster URL given where one primary is needed."""


def connect(url: str, *, blocking_pool: int | None = None, **kwargs: Any) -> Client:
    """A client for ``url``; ``kwargs`` are redis-py connection arguments.

    ``blocking_pool`` sizes a pool whose callers wait for a free connection
    (the gateway's); with Sentinel the pool is redis-py's Sentinel pool of that
    size, which fails fast instead of waiting when it is exhausted, and with a
    cluster it is every node's pool size (redis-py's, failing fast too).
    """
    if is_cluster_url(url):
        kwargs.pop("pool_timeout", None)
        target = parse_cluster_url(url)
        if blocking_pool is not None:
            kwargs["max_connections"] = blocking_pool
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            **{**target.connection_kwargs, **kwargs},
        )
    return connect_primary(url, blocking_pool=blocking_pool, **kwargs)


def connect_primary(url: str, *, blocking_pool: int | None = None, **kwargs: Any) -> Redis:
    """A client of the one primary ``url`` names (plain, TLS or through Sentinel).

    Raises :class:`ClusterUnsupported` for a cluster URL: the caller's commands
    meet keys of several slots. Arguments as :func:`connect`'s.
    """
    if is_cluster_url(url):
        raise ClusterUnsupported(
            "REDIS_URL names a Redis Cluster; this command needs one primary "
            "(redis://, rediss:// or redis+sentinel://)"
        )
    if not is_sentinel_url(url):
        if blocking_pool is None:
            return Redis.from_url(url, **kwargs)
        timeout = kwargs.pop("pool_timeout", 5)
        pool = BlockingConnectionPool.from_url(
            url, max_connections=blocking_pool, timeout=timeout, **kwargs
        )
        return Redis(connection_pool=pool)
    kwargs.pop("pool_timeout", None)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={**target.sentinel_kwargs, **_socket_args(kwargs)},
        **{**target.connection_kwargs, **kwargs},
    )
    if blocking_pool is None:
        client: SentinelRedis = sentinel.master_for(target.service, redis_class=SentinelRedis)
    else:
        client = sentinel.master_for(
            target.service, redis_class=SentinelRedis, max_connections=blocking_pool
        )
    client.sentinel_manager = sentinel
    return client


async def follow_primary(client: Client, interval: float = 1.0) -> None:
    """Ask the sentinels for the primary every ``interval`` s, until cancelled.

    redis-py asks only when it opens a connection, and a pooled connection to a
    demoted primary goes on serving reads (stale ones: it is a replica now)
    until a write fails on it. A changed answer makes the pool drop its idle
    connections and refuse the busy ones back, so reads follow a failover
    within ``interval``. Returns at once for a client not behind Sentinel (a
    cluster client follows a failover by itself: ``MOVED`` and a refreshed
    slot map).
    """
    if not isinstance(client, SentinelRedis):
        return
    pool: Any = client.connection_pool
    while True:
        try:
            await pool.get_master_address()
        except Exception as exc:
            if not transient(exc) and not isinstance(exc, MasterNotFoundError):
                raise
        await asyncio.sleep(interval)


class SentinelRedis(Redis):
    """A client of the primary Sentinel names; closing it closes the sentinel connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for watcher in self.sentinel_manager.sentinels:
                await watcher.aclose()


class SentinelTarget:
    """A parsed Sentinel URL."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service: str,
        connection_kwargs: dict[str, Any],
        sentinel_kwargs: dict[str, Any],
    ) -> None:
        self.sentinels = sentinels
        self.service = service
        self.connection_kwargs = connection_kwargs
        self.sentinel_kwargs = sentinel_kwargs


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a ``redis+sentinel://`` URL into sentinels, service and connection arguments.

    Raises ``ValueError`` with the reason for a URL that names no sentinel or service.
    """
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL (scheme {parts.scheme!r})")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = [_host_port(h) for h in hosts.split(",") if h.strip()]
    if not sentinels:
        raise ValueError("a Sentinel URL names at least one sentinel host:port")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("a Sentinel URL's path is /<service>[/<db>]")
    service = unquote(path[0])
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    userinfo = parts.netloc.rpartition("@")[0]
    tls = parts.scheme == "rediss+sentinel"
    # redis-py's own parser reads the credentials and the query arguments (with
    # their types); the host it sees is a placeholder, the sentinels decide.
    plain = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}sentinel/{db}"
    kwargs = dict(parse_url(plain + (f"?{parts.query}" if parts.query else "")))
    for key in ("host", "port", "path"):
        kwargs.pop(key, None)
    kwargs.pop("connection_class", None)
    sentinel_kwargs: dict[str, Any] = {}
    for key in ("sentinel_password", "sentinel_username"):
        if key in kwargs:
            sentinel_kwargs[key.removeprefix("sentinel_")] = kwargs.pop(key)
    if tls:
        kwargs["ssl"] = True
        sentinel_kwargs["ssl"] = True
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            if key in kwargs:
                sentinel_kwargs[key] = kwargs[key]
    return SentinelTarget(sentinels, service, kwargs, sentinel_kwargs)


class ClusterTarget:
    """A parsed cluster URL: startup nodes and ``RedisCluster`` arguments."""

    def __init__(self, nodes: list[tuple[str, int]], connection_kwargs: dict[str, Any]) -> None:
        self.nodes = nodes
        self.connection_kwargs = connection_kwargs


# What RedisCluster takes besides its startup nodes; any other query argument is
# refused when the URL is read, not when the first process connects.
_CLUSTER_ARGS = frozenset(inspect.signature(RedisCluster.__init__).parameters) - {
    "self",
    "host",
    "port",
    "startup_nodes",
    "db",
    "path",
}


def parse_cluster_url(url: str) -> ClusterTarget:
    """Split a ``redis+cluster://`` URL into startup nodes and connection arguments.

    Raises ``ValueError`` with the reason for a URL that names no node, a
    database other than 0 or an argument ``RedisCluster`` does not take.
    """
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL (scheme {parts.scheme!r})")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = [_host_port(h, DEFAULT_REDIS_PORT, "node") for h in hosts.split(",") if h.strip()]
    if not nodes:
        raise ValueError("a cluster URL names at least one node host:port")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a cluster has database 0 only (path empty or /0)")
    tls = parts.scheme == "rediss+cluster"
    # As for Sentinel, redis-py's parser reads credentials and typed query
    # arguments from a stand-in URL; the nodes come from the host list.
    plain = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}cluster"
    kwargs = dict(parse_url(plain + (f"?{parts.query}" if parts.query else "")))
    for key in ("host", "port", "path", "db", "connection_class"):
        kwargs.pop(key, None)
    unknown = sorted(kwargs.keys() - _CLUSTER_ARGS)
    if unknown:
        raise ValueError(f"a cluster URL does not take {', '.join(unknown)}")
    if tls:
        kwargs["ssl"] = True
    return ClusterTarget(nodes, kwargs)


def _host_port(
    text: str, default: int = DEFAULT_SENTINEL_PORT, what: str = "sentinel"
) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), default
    if not port.isdigit():
        raise ValueError(f"{what} port {port!r} is not a number")
    return host.strip("[]"), int(port)


def _socket_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
