"""Dead-letter repair and replay end to end: a broker, Redis and worker of the test's own.

Proves, with ``continuity dlq`` run as operators run it: bad events a worker
dead-lettered are listed once each (a repeated DLQ copy folded in) with reason,
source and event id; ``show`` prints headers and a safe value; an exported
file with one invalid line is refused whole and publishes nothing; the fixed
file replays each repaired event to its contract topic with the
``continuity.replayed-from`` header and the worker applies it once (session,
journey); a dropped one is recorded; a second replay is skipped by the
ledger, and a forced one is a duplicate for the fold: nothing changes. Bad
arguments and an unreachable broker end with documented exit codes.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import BROWSE_EVENTS, CART_EVENTS, DEAD_LETTERS
from streams.core.dead_letter import describe
from streams.core.dlq_repair import REPLAYED_FROM
from streams.kafka.publish import Publisher
from streams.store import keys
from tests.support.cli import run_cli
from tests.support.events import added, event
from tests.support.private_stack import PrivateStack, private_stack
from tests.support.stack import applied_through, publish, read_topic, space, wait_until

# clock: event times meet the worker's clock (journey pruning, abandonment timers).
pytestmark = [pytest.mark.e2e, pytest.mark.clock]


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[PrivateStack]:
    """A broker of the test's own: its events-dlq holds only this test's dead letters."""
    async with private_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
async def publisher(st: PrivateStack) -> AsyncIterator[Publisher]:
    async with Publisher(st.bootstrap, linger_ms=1) as pub:
        yield pub


async def dlq_cli(
    st: PrivateStack, *args: str, bootstrap: str | None = None
) -> tuple[int, str, str]:
    """``continuity dlq ARGS`` as a process: (exit status, stdout, stderr)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": bootstrap or st.bootstrap,
        "REDIS_URL": st.redis_url,
        "CONTINUITY_STATE_DIR": "/nonexistent",
    }
    return await run_cli("dlq", *args, env=env)


async def topic_records(st: PrivateStack, topic: str, key: bytes) -> list[Any]:
    return [r for r in await read_topic(st.bootstrap, topic) if r.key == key]


async def test_dead_letters_are_repaired_and_replayed_exactly_once(
    st: PrivateStack, publisher: Publisher, ids: Callable[[str], str], tmp_path: Path
) -> None:
    c = ids("dl")
    key = c.encode()
    st.start_worker("a")
    await st.ready(publisher)
    await publish(
        publisher, [event("cart.item_added", added("A-1"), customer=c, event_id=f"{c}-a")]
    )
    bad_qty = event("cart.item_added", added("B-2", -3), customer=c, event_id=f"{c}-qty")
    usd = event("cart.item_added", added("C-3", 1, "5.00", "USD"), customer=c, event_id=f"{c}-usd")
    teleport = event("cart.teleported", {}, customer=c, event_id=f"{c}-tp")
    broken = b'{"event_id": "' + key + b'-q", "type": "browse.search", "payload": {"query": "sh'
    await publisher.send_raw(CART_EVENTS, key, orjson.dumps(bad_qty))
    await publisher.send_raw(BROWSE_EVENTS, key, broken)
    await publisher.send_raw(CART_EVENTS, key, orjson.dumps(teleport))
    written = await publish(publisher, [usd])
    await applied_through(st.state, written)

    async def dead_letters() -> list[Any]:
        found = await topic_records(st, DEAD_LETTERS, key)
        return found if len(found) >= 4 else []

    letters = await wait_until(dead_letters, timeout=60)
    # Delivery to the DLQ is at least once: a second copy of one dead letter.
    copy = next(
        r for r in letters if describe(list(r.headers))["continuity.dlq.reason"] == "invalid_event"
    )
    producer = AIOKafkaProducer(bootstrap_servers=st.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            DEAD_LETTERS, copy.value, key=copy.key, headers=list(copy.headers)
        )
    finally:
        await producer.stop()
    before = await st.state.get(c)
    assert before is not None
    assert before.version == 1

    code, out, err = await dlq_cli(st, "list")
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 4, out
    assert any("invalid_event" in r and f"{c}-qty" in r and "(2 copies)" in r for r in rows)
    assert any("malformed_json" in r and "browse-events:" in r for r in rows)
    assert any("currency_mismatch" in r and f"{c}-usd" in r for r in rows)
    assert any("unknown_type" in r and "cart.teleported" in r for r in rows)
    assert "4 dead letters; 1 repeated copies folded in" in out
    code, out_json, _ = await dlq_cli(st, "list", "--reason", "malformed_json", "--json")
    assert code == 0
    [malformed] = [orjson.loads(line) for line in out_json.splitlines()]
    assert (malformed["state"], malformed["event_id"]) == ("pending", None)

    code, shown, _ = await dlq_cli(st, "show", malformed["dlq"])
    assert code == 0
    assert "continuity.dlq.reason: malformed_json" in shown
    assert "not JSON" in shown
    assert "state: pending" in shown

    # Export, then an edit that breaks the contract: the whole file is refused.
    path = tmp_path / "dl.jsonl"
    code, _, err = await dlq_cli(st, "export", "--out", str(path))
    assert code == 0, err
    assert "exported 4 dead letters" in err
    lines = [orjson.loads(x) for x in path.read_text().splitlines()]
    by_reason = {x["reason"]: x for x in lines}
    by_reason["invalid_event"]["event"]["payload"]["quantity"] = 3
    by_reason["malformed_json"]["event"] = event(
        "browse.search", {"query": "shoes"}, customer=c, event_id=f"{c}-q"
    )
    by_reason["unknown_type"]["action"] = "drop"
    by_reason["unknown_type"]["note"] = "test traffic"
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    refused = [*lines, {"dlq": by_reason["currency_mismatch"]["dlq"], "event": {"type": "x"}}]
    bad_path = tmp_path / "bad.jsonl"
    bad_path.write_bytes(b"\n".join(orjson.dumps(x) for x in refused) + b"\n")
    code, _, err = await dlq_cli(st, "replay", str(bad_path))
    assert code == 2
    assert "line 5:" in err
    assert "nothing was published" in err
    # The currency is still wrong, and that is the fold's call, not the contract's.
    code, out, err = await dlq_cli(st, "replay", str(path), "--dry-run")
    assert code == 0, err
    assert "dry run: 4 repairs would be made" in err
    assert len(await topic_records(st, CART_EVENTS, key)) == 4, "nothing published so far"

    code, out, err = await dlq_cli(st, "replay", str(path))
    assert code == 0, err
    assert "replayed 3 events" in out
    assert "dropped 1" in out
    written = _written(out)
    await applied_through(st.state, written)
    after = await st.state.get(c)
    assert after is not None
    assert after.version == 3, "the quantity and the search applied; the USD line rejected again"
    assert {ln.sku: ln.quantity for ln in after.cart} == {"A-1": 1, "B-2": 3}
    assert after.recent_searches[0] == "shoes"
    journey_key = keys.journey(space(st.prefix), c)
    journey = await st.redis.zcard(journey_key)
    entries = [orjson.loads(m) for m in await st.redis.zrange(journey_key, 0, -1)]
    late = {e["type"]: e["replayed_from"] for e in entries if e.get("applied_late")}
    assert late == {
        "cart.item_added": f"events-dlq:{by_reason['invalid_event']['dlq']}",
        "browse.search": f"events-dlq:{by_reason['malformed_json']['dlq']}",
    }, "the journey marks the repaired events as applied late"
    replayed = [r for r in await topic_records(st, CART_EVENTS, key) if r.headers]
    assert len(replayed) == 2, "the quantity and the USD line; the search went to browse-events"
    assert {dict(r.headers)[REPLAYED_FROM].decode() for r in replayed} == {
        f"events-dlq:{by_reason[r]['dlq']}" for r in ("invalid_event", "currency_mismatch")
    }

    # The USD line is dead-lettered again, and says which dead letter it repaired.
    async def rejected_again() -> str:
        code, out, _ = await dlq_cli(st, "list", "--state", "pending")
        return out if code == 0 and "(replay of events-dlq" in out else ""

    listing = await wait_until(rejected_again, timeout=60, interval=1)
    assert "currency_mismatch" in listing
    code, out, _ = await dlq_cli(st, "list", "--state", "all")
    totals = [ln for ln in out.splitlines() if ln.startswith("  ") and ln not in _rows(out)]
    counts = {ln.split()[0]: ln.split(None, 2)[2] for ln in totals}
    assert counts == {
        "currency_mismatch": "(1 pending, 1 replayed)",
        "invalid_event": "(1 replayed)",
        "malformed_json": "(1 replayed)",
        "unknown_type": "(1 dropped)",
    }
    code, out, _ = await dlq_cli(st, "list", "--state", "dropped")
    assert [r.split()[1:3] for r in _rows(out)] == [["dropped", "unknown_type"]]

    # The USD line cannot be applied: its new dead letter is dropped by position;
    # a replayed one cannot be.
    usd_again = next(r for r in _rows(listing) if "(replay of events-dlq" in r).split()[0]
    code, out, err = await dlq_cli(st, "drop", usd_again, "--note", "wrong currency")
    assert code == 0, err
    code, _, err = await dlq_cli(st, "drop", by_reason["invalid_event"]["dlq"])
    assert code == 2
    assert "already replayed" in err
    code, out, _ = await dlq_cli(st, "list", "--state", "pending")
    assert _rows(out) == []

    # Again: the ledger skips every line; forced, the fold skips every event.
    code, out, err = await dlq_cli(st, "replay", str(path))
    assert code == 0, err
    assert err.count("was already replayed") == 3
    assert err.count("was already dropped") == 1
    assert "nothing to do" in err
    code, out, err = await dlq_cli(st, "replay", str(path), "--force")
    assert code == 0, err
    await applied_through(st.state, _written(out))
    again = await st.state.get(c)
    assert again is not None
    assert again.model_dump() == after.model_dump(), "a repeated replay changes nothing"
    assert await st.redis.zcard(journey_key) == journey


def _rows(out: str) -> list[str]:
    """The dead-letter lines of a ``dlq list`` output (they start with partition:offset)."""
    return [ln for ln in out.splitlines() if re.match(r"^\s*\d+:\d+\s", ln)]


def _written(out: str) -> dict[str, int]:
    """``topic:partition`` -> highest offset, from the replay's ``-> topic:p@o`` lines."""
    written: dict[str, int] = {}
    for tp, offset in re.findall(r"-> ([a-z-]+:\d+)@(\d+)", out):
        written[tp] = max(written.get(tp, -1), int(offset))
    assert written, out
    return written


async def test_bad_arguments_and_no_broker_have_documented_exit_codes(
    st: PrivateStack, tmp_path: Path
) -> None:
    assert (await dlq_cli(st, "show", "zero"))[0] == 2
    code, _, err = await dlq_cli(st, "show", "0:999999")
    assert code == 1
    assert "no dead letter at events-dlq 0:999999" in err
    assert (await dlq_cli(st, "list", "--reason", "bogus"))[0] == 2
    assert (await dlq_cli(st, "list", "--since", "yesterday"))[0] == 2
    assert (await dlq_cli(st, "replay", str(tmp_path / "missing.jsonl")))[0] == 2
    nowhere = tmp_path / "nowhere.jsonl"
    nowhere.write_text('{"dlq": "0:999999", "action": "drop"}\n')
    code, _, err = await dlq_cli(st, "replay", str(nowhere))
    assert code == 2
    assert "line 1: no dead letter" in err
    code, _, err = await dlq_cli(st, "list", bootstrap="127.0.0.1:1")
    assert code == 1
    assert "Traceback" not in err
    assert "cannot complete on 127.0.0.1:1" in err
