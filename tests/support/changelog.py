"""Reading ``session-changelog`` as a downstream system would, for the changelog tests."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
from redis.asyncio import Redis

from schemas.changelog import CONTROL_HEADER, SEQ_HEADER, SESSION_STATE_ADAPTER
from schemas.topics import SESSION_CHANGELOG, SESSION_FORWARDS
from streams.core import session_codec
from streams.core.changelog import seq_order
from streams.kafka.reader import TopicReader
from streams.ops.schema_export import SCHEMA_DIR
from streams.store import keys
from streams.store.keys import Space
from streams.store.state import RedisState
from tests.support.stack import read_topic, space, wait_until

# The families a restore writes, compared value for value (sets and sorted sets as such);
# ``w:`` is each partition's hash of sessions waiting for a merge across partitions.
RESTORED = (b"s:", b"a:", b"l:", b"dv:", b"vf:", b"w:")


def _family_and_id(name: bytes) -> tuple[bytes, str]:
    """``{p3}:s:c-1`` (a name with its prefix cut off) as ``(b"s:", "c-1")``."""
    _, _, rest = name.partition(b":")
    family, _, some_id = rest.partition(b":")
    return family + b":", some_id.decode()


def by_family(live: dict[bytes, Any], family: bytes) -> dict[str, Any]:
    """The keys of one family (``b"s:"``) of :func:`restored_families`, by id."""
    named = ((*_family_and_id(k), v) for k, v in live.items())
    return {some_id: v for kind, some_id, v in named if kind == family}


async def restored_families(redis: Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of ``prefix`` a restore writes, with its value, the prefix cut off (the
    partition tag kept: ``{p3}:s:c-1``; a key restored into another partition differs)."""
    cut = len(prefix) + 1
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{prefix}:{{p*}}:*", count=1000):
        name = key[cut:]
        if _family_and_id(name)[0] not in RESTORED:
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


async def forwards_settled(redis: Redis, bootstrap: str, where: Space) -> bool:
    """Whether no work is in flight between partitions (forward mode): no session waits
    for a merge, every forward is published, and every one published is applied."""
    for n in where.all_partitions():
        if await redis.xlen(keys.forwards(where, n)) or await redis.hlen(keys.waiting(where, n)):
            return False
    async with TopicReader(bootstrap, [SESSION_FORWARDS], missing_ok=True, job="tests") as r:
        ends = await r.read_ends()
    applied = await RedisState(redis, where).applied_offsets()
    return all(applied.get(tp, -1) >= end - 1 for tp, end in ends.items())


async def drained(redis: Redis, bootstrap: str, where: Space | None = None) -> None:
    """Wait until no work is in flight between partitions (:func:`forwards_settled`),
    the relays published every partition's entries, and each partition's watermark
    that says so is on that partition of the topic."""
    where = where or space("cont")

    async def done() -> bool:
        if not await forwards_settled(redis, bootstrap, where):
            return False
        cursors: dict[int, str] = {}
        for n in where.all_partitions():
            if await redis.xlen(keys.changelog(where, n)):
                return False
            raw = await redis.get(keys.changelog_cursor(where, n))
            if raw is not None:
                cursors[n] = orjson.loads(raw)["seq"]
        marks: dict[int, set[str]] = {}
        for m in await read_topic(bootstrap, SESSION_CHANGELOG):
            if dict(m.headers or ()).get(CONTROL_HEADER) == b"watermark":
                marks.setdefault(m.partition, set()).add(orjson.loads(m.value)["seq"])
        # Nothing published yet is not drained; a partition with no traffic has no cursor.
        return bool(cursors) and all(seq in marks.get(n, ()) for n, seq in cursors.items())

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
    sessions = by_family(live, b"s:")
    aliases = {k: v.decode() for k, v in by_family(live, b"a:").items()}
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
