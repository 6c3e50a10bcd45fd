"""What the commands share: settings (with a running ``continuity dev`` filling gaps)
and a Redis client that is always closed."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from streams.dev.files import DEFAULT_STATE_DIR, DEV_FILE, DEV_SECRET_FILE

if TYPE_CHECKING:
    from streams.settings import Settings
    from streams.store.client import Client

# What ``argparse``'s ``add_subparsers`` returns; each command module adds its parser to it.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def load_settings() -> Settings:
    """Settings from the environment; addresses of a running ``continuity dev`` fill gaps."""
    from streams.settings import Settings

    dev_file = Path(os.environ.get("CONTINUITY_STATE_DIR", DEFAULT_STATE_DIR)) / DEV_FILE
    overrides: dict[str, Any] = {}
    if dev_file.exists():
        info = json.loads(dev_file.read_text())
        if "KAFKA_BOOTSTRAP" not in os.environ:
            overrides["KAFKA_BOOTSTRAP"] = info["kafka_bootstrap"]
        if "REDIS_URL" not in os.environ:
            overrides["REDIS_URL"] = info["redis_url"]
        secret = dev_file.parent / DEV_SECRET_FILE
        if "CONTINUITY_AUTH_SECRET" not in os.environ and secret.exists():
            overrides["auth_secret"] = secret.read_text().strip()
    return Settings(**overrides)


@asynccontextmanager
async def redis_client(settings: Settings, socket_timeout: float = 30) -> AsyncIterator[Client]:
    """A Redis client for one command (plain, TLS, through Sentinel, or a whole Redis
    Cluster), closed after it.

    Every command's Redis work names one partition's slot per call (erasures and
    log resets run a step per partition: ``streams/store/partitioned.py``), so
    each runs on a cluster as on one primary.
    """
    from streams.store.client import connect

    redis = connect(settings.redis_dsn(), socket_timeout=socket_timeout)
    try:
        yield redis
    finally:
        await redis.aclose()
