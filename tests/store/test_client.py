"""Redis URLs (Sentinel's included) and the errors worth a retry. Pure: no server."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    DataError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)

from streams.settings import Settings
from streams.store.client import is_sentinel_url, parse_sentinel_url, refusal, transient


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
    ],
)
def test_bugs_and_bad_requests_are_not_retried(exc: Exception) -> None:
    assert not transient(exc)
