"""Redis URLs (Sentinel's and Cluster's included) and the errors worth a retry. Pure: no server."""

from __future__ import annotations

import pytest
from redis._parsers import BaseParser
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    DataError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from streams.settings import Settings
from streams.store.client import (
    ClusterUnsupported,
    connect_primary,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
    refusal,
    transient,
)


def test_a_sentinel_url_names_sentinels_service_db_and_credentials() -> None:
    t = parse_sentinel_url(
        "redis+sentinel://:s3cret@10.0.0.1:26379,sentinel-b:26380,sentinel-c/cart/3"
        "?sentinel_password=watch&socket_timeout=2.5"
    )
    assert t.sentinels == [("10.0.0.1", 26379), ("sentinel-b", 26380), ("sentinel-c", 26379)]
    assert t.service == "cart"
    assert t.connection_kwargs["db"] == 3
    assert t.connection_kwargs["password"] == "s3cret"
    assert t.connection_kwargs["socket_timeout"] == 2.5
    assert t.sentinel_kwargs == {"password": "watch"}
    assert "host" not in t.connection_kwargs


def test_tls_through_sentinel_applies_to_both_hops() -> None:
    t = parse_sentinel_url("rediss+sentinel://h:1/m?ssl_ca_certs=/etc/ca.pem")
    assert t.connection_kwargs["ssl"] is True
    assert t.sentinel_kwargs == {"ssl": True, "ssl_ca_certs": "/etc/ca.pem"}
    assert t.connection_kwargs["db"] == 0


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel:///mymaster", "at least one sentinel"),
        ("redis+sentinel://h:1", "/<service>"),
        ("redis+sentinel://h:1/a/b/c", "/<service>"),
        ("redis+sentinel://h:1/m/x", "not a number"),
        ("redis+sentinel://h:port/m", "not a number"),
        ("redis://h:1/0", "not a Sentinel URL"),
    ],
)
def test_bad_sentinel_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_sentinel_url(url)


def test_settings_refuse_a_bad_sentinel_url_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="service") as info:
        Settings(REDIS_URL="redis+sentinel://:hunter2@h:1")
    assert "hunter2" not in str(info.value)
    assert is_sentinel_url(Settings(REDIS_URL="redis+sentinel://h:1/m").redis_dsn())


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionError("gone"), "unreachable"),
        (OSError("reset"), "unreachable"),
        (ReadOnlyError("You can't write against a read only replica."), "READONLY"),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "OOM"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (ResponseError("MASTERDOWN Link with MASTER is down"), "MASTERDOWN"),
        (ResponseError("NOREPLICAS Not enough good replicas to write."), "NOREPLICAS"),
    ],
)
def test_failover_replies_are_transient(exc: Exception, reason: str) -> None:
    assert transient(exc)
    assert reason in refusal(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ResponseError("ERR wrong number of arguments"),
        NoScriptError("No matching script"),
        DataError("bad value"),
        ValueError("a bug"),
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ClusterCrossSlotError("Keys in request don't hash to the same slot"),
        RedisClusterException("EVAL - all keys must map to the same key slot"),
        ResponseError("Script attempted to access a non local key in a cluster node script"),
        # Followed by the cluster client itself; reaching us, a misconfigured URL.
        MovedError("3999 127.0.0.1:6381"),
        AskError("3999 127.0.0.1:6381"),
    ],
)
def test_bugs_and_bad_requests_are_not_retried(exc: Exception) -> None:
    assert not transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        ResponseError("CLUSTERDOWN Hash slot not served"),
        TryAgainError("Multiple keys request during rehashing of slot"),
        ClusterError("TTL exhausted."),
        SlotNotCoveredError("Slot 12 is not covered by the cluster."),
        RedisClusterUnreachableError("no startup node answered"),
    ],
)
def test_cluster_outages_and_slot_moves_are_transient(exc: Exception) -> None:
    assert transient(exc)


@pytest.mark.parametrize("code", ["TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN"])
def test_codes_redis_py_parses_into_classes_stay_transient(code: str) -> None:
    # As a connection parses the reply: the code becomes the class, off the message.
    exc = BaseParser.parse_error(f"{code} not now")
    assert code not in str(exc)
    assert transient(exc)
    assert refusal(exc) == f"refusing writes ({code})"


def test_a_cluster_url_names_startup_nodes_credentials_and_arguments() -> None:
    t = parse_cluster_url(
        "rediss+cluster://app:s%40cret@10.0.0.1:7000,node-b,[::1]:7002/0"
        "?socket_timeout=2.5&ssl_ca_certs=/etc/ca.pem"
    )
    assert t.nodes == [("10.0.0.1", 7000), ("node-b", 6379), ("::1", 7002)]
    assert t.connection_kwargs == {
        "username": "app",
        "password": "s@cret",
        "socket_timeout": 2.5,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl": True,
    }
    assert is_cluster_url("redis+cluster://h:1")
    assert not is_cluster_url("redis://h:1/0")
    assert parse_cluster_url("redis+cluster://h:1").connection_kwargs == {}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+cluster://", "at least one node"),
        ("redis+cluster://h:1/3", "database 0 only"),
        ("redis+cluster://h:port", "not a number"),
        ("redis+cluster://h:1?sentinel_password=x", "does not take sentinel_password"),
        ("redis+sentinel://h:1/m", "not a cluster URL"),
    ],
)
def test_bad_cluster_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_cluster_url(url)


def test_settings_refuse_a_bad_cluster_url_without_echoing_the_password() -> None:
    with pytest.raises(ValueError, match="database 0") as info:
        Settings(REDIS_URL="redis+cluster://:hunter2@h:1/5")
    assert "hunter2" not in str(info.value)


def test_processes_needing_one_primary_refuse_a_cluster_url() -> None:
    with pytest.raises(ClusterUnsupported, match="one primary") as info:
        connect_primary("redis+cluster://:hunter2@h:1,h:2")
    assert "hunter2" not in str(info.value)
