"""The session changelog end to end: a downstream consumer, and ``continuity rebuild``
restoring Redis from it on a broker and a Redis of the test's own.

Proves: the topic holds, per key, exactly the state Redis holds (sessions byte
for byte once stored, merged guests' aliases, device sign-ins), every value
valid against the exported JSON Schema; a restore into an empty prefix after
the source topics were deleted and created again (their history gone) equals
the live state, reading no source record; and with only a tail not yet on the
changelog, a restore reads just that tail and still equals the live state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from redis.asyncio import Redis

from schemas.changelog import CONTROL_HEADER, SEQ_HEADER, SESSION_STATE_ADAPTER
from schemas.topics import SESSION_CHANGELOG, SOURCE_TOPICS
from streams.core import session_codec
from streams.core.changelog import seq_order
from streams.dev.simulate import workload
from streams.kafka import clients
from streams.kafka.publish import Publisher
from streams.kafka.topics import ensure_topics
from streams.ops.schema_export import SCHEMA_DIR
from tests.support.events import added, event
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import PARTITIONS, applied_through, publish, read_topic, wait_until

pytestmark = pytest.mark.e2e

# The families a restore writes, compared value for value (sets and sorted sets as such).
RESTORED = (b"s:", b"a:", b"l:", b"dv:", b"vf:")


async def _restored_families(redis: Redis, prefix: str) -> dict[bytes, Any]:
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


async def _drained(st: PrivateStack) -> None:
    """Wait until the relay published every entry and the watermark that says so."""

    async def done() -> bool:
        if await st.redis.xlen("cont:cl"):
            return False
        cursor = orjson.loads(await st.redis.get("cont:clc") or b'{"seq": ""}')
        marks = [
            orjson.loads(m.value)["seq"]
            for m in await read_topic(st.bootstrap, SESSION_CHANGELOG)
            if dict(m.headers or ()).get(CONTROL_HEADER) == b"watermark"
        ]
        return cursor["seq"] in marks

    await wait_until(done, 90, interval=0.5)


async def _recreate_sources(bootstrap: str) -> None:
    """Delete the source topics and create them again, empty: their history is gone."""
    admin = clients.admin(bootstrap, "test")
    await admin.start()
    try:
        await admin.delete_topics(list(SOURCE_TOPICS))
    finally:
        await admin.close()

    async def gone() -> bool:
        admin = clients.admin(bootstrap, "test")
        await admin.start()
        try:
            return not set(SOURCE_TOPICS) & set(await admin.list_topics())
        finally:
            await admin.close()

    await wait_until(gone, 30, interval=0.5)
    await ensure_topics(bootstrap, PARTITIONS)


async def test_downstream_reads_the_state_and_a_restore_needs_no_history(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            written = await publish(pub, workload(seed=81, customers=60, prefix="cl"))
            await applied_through(st.state, written, timeout=120)
        await _drained(st)
        worker.stop()
        live = await _restored_families(st.redis, "cont")
        assert any(k.startswith(b"a:") for k in live), "the workload merged guests"

        # A downstream consumer: the newest record per key, by seq; control records skipped.
        schema = json.loads((SCHEMA_DIR / "session-changelog.schema.json").read_text())
        newest: dict[str, tuple[tuple[int, int], bytes | None]] = {}
        for m in await read_topic(st.bootstrap, SESSION_CHANGELOG):
            headers = dict(m.headers or ())
            if CONTROL_HEADER in headers:
                continue
            if m.value is not None:
                jsonschema.validate(json.loads(m.value), schema)
            seq = seq_order(headers[SEQ_HEADER].decode())
            key = m.key.decode()
            if key not in newest or seq > newest[key][0]:
                newest[key] = (seq, m.value)
        sessions = {k[3:-1].decode(): v for k, v in live.items() if k.startswith(b"s:")}
        aliases = {k[3:-1].decode(): v for k, v in live.items() if k.startswith(b"a:")}
        assert sessions
        assert {k for k, (_, v) in newest.items() if v is not None} >= set(sessions)
        for key, (_, value) in newest.items():
            if value is None:
                assert key not in sessions, key
                assert key not in aliases, key
                continue
            state = SESSION_STATE_ADAPTER.validate_json(value)
            if key in sessions:
                assert state.session is not None
                stored = session_codec.decode(sessions[key][b"d"])
                assert state.session == stored, key
                assert state.version == int(sessions[key][b"v"]) == stored.version
            else:
                assert state.session is None, key
            assert state.merged_into == (aliases[key].decode() if key in aliases else None)

        # Redis lost (a fresh prefix) and the source history gone: the changelog suffices.
        await _recreate_sources(st.bootstrap)
        code, out, err = await st.cli("rebuild", "--prefix", "cont-restored", timeout=180)
        assert code == 0, out + err
        assert "then folded 0 source records" in out, out
        assert "logs reset, read from the start" in out, out
        assert await _restored_families(st.redis, "cont-restored") == live
        # The reset partitions start a new epoch: no applied offsets carried into it.
        assert await st.redis.hgetall("cont-restored:o") == {}


async def test_a_restore_folds_only_the_tail_the_changelog_lacks(tmp_path: Path) -> None:
    async with private_stack(tmp_path) as st:
        worker = st.start_worker("w")
        async with Publisher(st.bootstrap, linger_ms=1) as pub:
            await st.ready(pub)
            head_events = workload(seed=82, customers=40, prefix="hd")
            head = await publish(pub, head_events)
            await applied_through(st.state, head, timeout=120)
            await _drained(st)
            worker.stop()
            # The tail: folded live by a worker that keeps no changelog.
            st.start_worker("w2", CONTINUITY_CHANGELOG="false")
            # One topic, so the restore folds it in the order the live worker did.
            keys = sorted({e["customer_id"] for e in head_events if e.get("customer_id")})
            tail_events = [
                event("cart.item_added", added(f"T-{n % 7}"), customer=keys[n % len(keys)])
                for n in range(120)
            ]
            tail = await publish(pub, tail_events)
            await applied_through(st.state, tail, timeout=120)
        for w in st.workers:
            w.stop()
        live = await _restored_families(st.redis, "cont")
        code, out, err = await st.cli("rebuild", "--prefix", "cont-tail", timeout=180)
        assert code == 0, out + err
        assert f"then folded {len(tail_events)} source records" in out, out
        assert "logs reset" not in out
        assert await _restored_families(st.redis, "cont-tail") == live
        assert await st.redis.hgetall("cont-tail:o") == await st.redis.hgetall("cont:o")
