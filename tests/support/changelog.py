"""Reading ``session-changelog`` as a downstream system would, for the changelog tests."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
from redis.asyncio import Redis

from schemas.changelog import CONTROL_HEADER, SEQ_HEADER, SESSION_STATE_ADAPTER
from schemas.topics import SESSION_CHANGELOG
from streams.core import session_codec
from streams.core.changelog import seq_order
from streams.ops.schema_export import SCHEMA_DIR
from tests.support.stack import read_topic, wait_until

# The families a restore writes, compared value for value (sets and sorted sets as such).
RESTORED = (b"s:", b"a:", b"l:", b"dv:", b"vf:")


async def restored_families(redis: Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of ``prefix`` a restore writes, with its value, the prefix cut off."""
    cut = len(prefix) + 1
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        name = key[cut:]
        if not name.startswith(RESTORED):
            continue
        kind = await redis.type(key)
        if kind == b"hash":
            out[name] = await redis.hgetall(key)
        elif kind == b"string":
            out[name] = await redis.get(key)
        elif kind == b"set":
            out[name] = await redis.smembers(key)
        else:
            out[name] = await redis.zrange(key, 0, -1, withscores=True)
    return out


async def drained(redis: Redis, bootstrap: str, prefix: str = "cont") -> None:
    """Wait until the relay published every entry and the watermark that says so."""

    async def done() -> bool:
        if await redis.xlen(f"{prefix}:cl"):
            return False
        cursor = orjson.loads(await redis.get(f"{prefix}:clc") or b'{"seq": ""}')
        marks = [
            orjson.loads(m.value)["seq"]
            for m in await read_topic(bootstrap, SESSION_CHANGELOG)
            if dict(m.headers or ()).get(CONTROL_HEADER) == b"watermark"
        ]
        return cursor["seq"] in marks

    await wait_until(done, 90, interval=0.5)


async def downstream_view(bootstrap: str) -> tuple[dict[str, bytes | None], int]:
    """Each key's newest value (by seq) as a consumer keeps it, and how many records
    repeated a ``(key, seq)`` already seen. Every value is checked against the schema."""
    schema = json.loads((SCHEMA_DIR / "session-changelog.schema.json").read_text())
    newest: dict[str, tuple[tuple[int, int], bytes | None]] = {}
    seen: set[tuple[str, str]] = set()
    repeats = 0
    for m in await read_topic(bootstrap, SESSION_CHANGELOG):
        headers = dict(m.headers or ())
        if CONTROL_HEADER in headers:
            continue
        if m.value is not None:
            jsonschema.validate(json.loads(m.value), schema)
        key, seq = m.key.decode(), headers[SEQ_HEADER].decode()
        if (key, seq) in seen:
            repeats += 1
        seen.add((key, seq))
        if key not in newest or seq_order(seq) > newest[key][0]:
            newest[key] = (seq_order(seq), m.value)
    return {k: v for k, (_, v) in newest.items()}, repeats


def mismatches(view: dict[str, bytes | None], live: dict[bytes, Any]) -> list[str]:
    """Keys whose newest changelog state is not what Redis holds (``live``:
    ``restored_families``), and stored sessions or aliases the changelog lacks."""
    sessions = {k[3:-1].decode(): v for k, v in live.items() if k.startswith(b"s:")}
    aliases = {k[3:-1].decode(): v.decode() for k, v in live.items() if k.startswith(b"a:")}
    wrong = sorted((set(sessions) | set(aliases)) - {k for k, v in view.items() if v})
    for key, value in view.items():
        if value is None:
            if key in sessions or key in aliases:
                wrong.append(f"{key}: tombstone, yet stored")
            continue
        state = SESSION_STATE_ADAPTER.validate_json(value)
        stored = sessions.get(key)
        if stored is None:
            if state.session is not None:
                wrong.append(f"{key}: a session in the changelog, none stored")
        elif state.session != session_codec.decode(stored[b"d"]) or state.version != int(
            stored[b"v"]
        ):
            wrong.append(f"{key}: session differs")
        if state.merged_into != aliases.get(key):
            wrong.append(f"{key}: alias {state.merged_into!r} != {aliases.get(key)!r}")
    return wrong
