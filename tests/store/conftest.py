"""The store tests' Redis: a private ``redis-server`` per test (never the machine's own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streams.dev import loopback


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Redis]:
    """A fresh ``redis-server`` on a free loopback port (AOF, fsync always), stopped after."""
    child = loopback.start_redis(tmp_path / "data", tmp_path, appendfsync="always")
    redis = Redis.from_url(
        f"redis://127.0.0.1:{child.port}/0", socket_timeout=5, socket_connect_timeout=5
    )
    yield redis
    await redis.aclose()
    child.stop()
