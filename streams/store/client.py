"""How every process reaches Redis (plain, TLS or through Sentinel), and which errors pass.

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

``transient`` is the one list of errors worth waiting out: lost connections
and every reply a failover or a full primary gives while it lasts.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TimeoutError,
)

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379

# Replies that say "not now" rather than "never": a demoted primary (READONLY),
# a replica loading its data set (LOADING), a full primary with noeviction (OOM),
# a replica cut off from its primary (MASTERDOWN), not enough replicas (NOREPLICAS).
_TRANSIENT_CODES = ("READONLY", "LOADING", "OOM", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN")
_TRANSIENT_TYPES = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OutOfMemoryError,
    OSError,
)


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
        return f"refusing writes ({str(exc).split(' ', 1)[0]})"
    return "unreachable"


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel-managed primary."""
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def connect(url: str, *, blocking_pool: int | None = None, **kwargs: Any) -> Redis:
    """A client for ``url``; ``kwargs`` are redis-py connection arguments.

    ``blocking_pool`` sizes a pool whose callers wait for a free connection
    (the gateway's); with Sentinel the pool is redis-py's Sentinel pool of that
    size, which fails fast instead of waiting when it is exhausted.
    """
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


async def follow_primary(client: Redis, interval: float = 1.0) -> None:
    """Ask the sentinels for the primary every ``interval`` s, until cancelled.

    redis-py asks only when it opens a connection, and a pooled connection to a
    demoted primary goes on serving reads (stale ones: it is a replica now)
    until a write fails on it. A changed answer makes the pool drop its idle
    connections and refuse the busy ones back, so reads follow a failover
    within ``interval``. Returns at once for a client not behind Sentinel.
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


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), DEFAULT_SENTINEL_PORT
    if not port.isdigit():
        raise ValueError(f"sentinel port {port!r} is not a number")
    return host.strip("[]"), int(port)


def _socket_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kwargs}
