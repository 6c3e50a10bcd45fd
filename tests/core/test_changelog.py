"""The changelog's records and the restore's choice among them (pure)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.changelog import (
    CONTROL_HEADER,
    POSITIONS_HEADER,
    SEQ_HEADER,
    SESSION_STATE_ADAPTER,
    VERSION_HEADER,
    SessionState,
)
from schemas.session import Session
from streams.core import session_codec
from streams.core.changelog import (
    Cursor,
    Ended,
    KeyState,
    Out,
    Restore,
    Sent,
    advance,
    compact,
    flat,
    newest_watermark,
    parse_entry,
    publishable,
    records,
    sent,
    seq_order,
    state_json,
)
from streams.core.placement import partition_of
from tests.core.test_fold_properties import histories
from tests.support.pure import MemoryState
from tests.support.pure import records as folded

PARTITIONS = 12

tps = st.dictionaries(
    st.tuples(st.sampled_from(["cart-events", "browse-events"]), st.integers(0, 11)).map(
        lambda t: f"{t[0]}:{t[1]}"
    ),
    st.integers(0, 10**9),
)


@given(tps)
def test_compact_positions_round_trip(offsets: dict[str, int]) -> None:
    assert flat(compact(offsets)) == offsets


def _state(key: str, version: int, stored: bytes = b"", alias: str | None = None) -> KeyState:
    return KeyState(key, version, stored, alias, {}, None, (-1, -1, -2))


def _take(found: Restore, outs: list[Out]) -> list[Any]:
    return [found.take(out.key, out.value, dict(out.headers)) for out in outs]


def test_the_newest_seq_wins_whatever_order_records_arrive_in() -> None:
    old = Session(key="c-1", version=3)
    new = Session(key="c-1", version=4)
    first = records("100-0", [_state("c-1", 3, session_codec.encode(old))], {"t": [5]}, PARTITIONS)
    second = records("100-1", [_state("c-1", 4, session_codec.encode(new))], {"t": [7]}, PARTITIONS)
    in_order = _take(Restore(), [*first, *second])
    assert [i.session for i in in_order] == [old, new]  # each newer: written in turn
    late = _take(Restore(), [*second, *first])
    assert late[0].session == new
    assert late[1] is None, "an older state after a newer one is not written"


def test_a_key_with_nothing_left_is_a_tombstone_with_its_floor_and_positions() -> None:
    gone = KeyState("g-1", None, b"", None, {}, 9, (-2, -2, -2), "expired")
    [out] = records("5-0", [gone], {"t": [1, 2]}, PARTITIONS)
    headers = dict(out.headers)
    assert out.value is None
    assert int(headers[VERSION_HEADER]) == 9
    assert orjson.loads(headers[POSITIONS_HEADER]) == {"t": [1, 2]}
    item = Restore().take(out.key, out.value, headers)
    assert isinstance(item, Ended)
    assert (item.reason, item.version) == ("expired", 9)
    # A merged guest keeps a record: its alias.
    [alias] = records("5-1", [_state("g-2", 0, alias="c-1")], {}, PARTITIONS)
    assert alias.value is not None
    assert SEQ_HEADER in dict(alias.headers)


def test_the_watermark_is_the_newest_and_keys_ahead_of_it_are_reflected() -> None:
    cursor = Cursor()
    advance(cursor, "10-0", {"t:0": (4, "aa"), "t:1": (2, "bb")})
    mark_old = cursor.watermark(0)
    advance(cursor, "11-0", {"t:0": (9, "cc")})
    mark_new = cursor.watermark(0)
    assert dict(mark_new.headers)[CONTROL_HEADER] == b"watermark"
    assert mark_new.partition == mark_old.partition == 0
    values = [m.value for m in (mark_new, mark_old) if m.value is not None]
    newest = newest_watermark(values)
    assert newest is not None
    found = Restore({0: newest})
    assert found.take(mark_new.key, mark_new.value, dict(mark_new.headers)) is None
    assert found.start() == {"t:0": 9, "t:1": 2}
    assert found.fingerprints() == {"t:0": "cc", "t:1": "bb"}
    ahead = records(
        "12-0",
        [_state("c-1", 1, session_codec.encode(Session(key="c-1")))],
        {"t": [12, 2]},
        PARTITIONS,
    )
    _take(found, ahead)
    assert found.reflected() == {"c-1": {"t:0": 12}}
    # A newer state of the key within the watermark is no longer ahead of it.
    again = session_codec.encode(Session(key="c-1", version=2))
    _take(found, records("12-1", [_state("c-1", 2, again)], {"t": [3, 1]}, PARTITIONS))
    assert found.reflected() == {}
    # A log reset marker forgets the partition's old offsets.
    advance(cursor, "13-0", {"t:1": (-1, "")})
    assert "t:1" not in cursor.offsets
    assert Cursor.loads(cursor.dumps()) == cursor


def test_records_go_to_their_keys_partition_and_watermarks_to_their_own() -> None:
    keys = [f"c-{n}" for n in range(40)]
    states = [_state(k, 1, session_codec.encode(Session(key=k))) for k in keys]
    outs = records("1-0", states, {"t": [1]}, PARTITIONS)
    assert [o.partition for o in outs] == [partition_of(k, PARTITIONS) for k in keys]
    assert len({o.partition for o in outs}) > 1, "the keys spread over partitions"
    # A watermark's key hashes anywhere: it goes to the partition it speaks for.
    assert {Cursor("1-0").watermark(n).partition for n in range(PARTITIONS)} == set(
        range(PARTITIONS)
    )


def test_a_restore_combines_each_partitions_watermark() -> None:
    three, five = Cursor(), Cursor()
    advance(three, "20-0", {"cart:3": (40, "c3"), "browse:3": (7, "b3")})
    advance(five, "18-4", {"cart:5": (11, "c5")})
    marks = {n: newest_watermark([c.watermark(n).value or b""]) for n, c in ((3, three), (5, five))}
    found = Restore({n: m for n, m in marks.items() if m is not None})
    assert found.start() == {"cart:3": 40, "browse:3": 7, "cart:5": 11}
    assert found.fingerprints() == {"cart:3": "c3", "browse:3": "b3", "cart:5": "c5"}
    # Each key is judged against its own partition's position only.
    mine = records(
        "21-0",
        [_state("k", 1, session_codec.encode(Session(key="k")))],
        {"cart": [-1, -1, -1, 41, -1, 11]},
        PARTITIONS,
    )
    _take(found, mine)
    assert found.reflected() == {"k": {"cart:3": 41}}
    # A partition's watermark of an older seq does not override a newer one's position
    # of the same source partition (a changelog published before the split).
    old = Cursor()
    advance(old, "2-0", {"cart:3": (5, "old"), "cart:0": (9, "z")})
    stale = newest_watermark([old.watermark(0).value or b""])
    assert stale is not None
    both = Restore({**found.watermarks, 0: stale})
    assert both.start() == {"cart:3": 40, "browse:3": 7, "cart:5": 11, "cart:0": 9}


def test_an_entry_as_the_commit_writes_it_parses() -> None:
    blob = session_codec.encode(Session(key="c-1", version=2))
    fields = {
        b"o": orjson.dumps({"t:0": [3, "ff"]}),
        b"k1": b"c-1",
        b"v1": b"2",
        b"d1": blob,
        b"a1": b"",
        b"dv1": b"{}",
        b"f1": b"2",
        b"x1": b"100,-2,-2",
        b"k2": b"g-1",
        b"v2": b"",
        b"d2": b"",
        b"a2": b"c-1",
        b"dv2": orjson.dumps(["c-1", "1700"]),
        b"f2": b"",
        b"x2": b"-2,100,200",
        b"w2": b'{"a":"t:0:3","h":[]}',
    }
    batch, states = parse_entry(fields)
    assert batch == {"t:0": (3, "ff")}
    assert [s.key for s in states] == ["c-1", "g-1"]
    assert states[1].merged_into == "c-1"
    assert states[1].devices == {"c-1": 1700}
    assert states[1].expires_at_ms == (-2, 100, 200)
    assert (states[0].waiting, states[1].waiting) == (b"", b'{"a":"t:0:3","h":[]}')
    assert parse_entry({b"r": b"t:0"}) == ({"t:0": (-1, "")}, [])
    assert seq_order("9-10") > seq_order("9-9") > seq_order("8-99")


@given(histories(max_size=25), st.booleans())
@settings(max_examples=60, deadline=None)
def test_a_state_spliced_from_the_stored_session_is_the_models_json(
    events: list[dict[str, Any]], compress: bool
) -> None:
    state = MemoryState()
    state.process(folded(events))
    assert state.sessions, "the history folded into sessions"
    for key, session in state.sessions.items():
        st_ = KeyState(
            key,
            session.version,
            session_codec.encode(session, compress),
            "c-9",
            {"c-1": 5},
            None,
            (1, -1, -2),
            links=("g-1",),
        )
        spliced = state_json("7-0", session.version, st_, {"t": [3]})
        model = SessionState(
            key=key,
            seq="7-0",
            version=session.version,
            session=session,
            merged_into="c-9",
            devices={"c-1": 5},
            links=["g-1"],
            expires_at_ms=[1, -1, -2],
            positions={"t": [3]},
        )
        assert orjson.loads(spliced) == orjson.loads(model.model_dump_json())
        assert SESSION_STATE_ADAPTER.validate_json(spliced) == model


def test_forwards_in_flight_travel_with_the_changelog() -> None:
    """An entry's forwards fields: the last forward applied per origin goes into the
    cursor and the watermark (a restore puts it back); the last forward written holds
    the entry until the forward relay published it; a key's wait for a merge is in its
    record, also when the key holds nothing else yet, and a cleared wait is gone."""
    fields = {b"o": orjson.dumps({"t:1": [4, "aa"]}), b"m": b'{"0":"9-1"}', b"f": b"12-0"}
    assert sent(fields) == Sent({"0": "9-1"}, "12-0")
    assert sent({b"o": b"{}"}) == Sent()
    assert sent({b"m": b"[1]"}) == Sent(), "never written so: no marks, no crash"
    cursor = Cursor()
    advance(cursor, "12-0", {"t:1": (4, "aa")}, {"0": "9-1"})
    advance(cursor, "13-0", {"t:1": (5, "bb")}, {"2": "7-0"})
    advance(cursor, "14-0", {}, {"0": "10-0"})
    assert cursor.forwarded == {"0": "10-0", "2": "7-0"}
    assert Cursor.loads(cursor.dumps()) == cursor
    mark = newest_watermark([cursor.watermark(1).value or b""])
    assert mark is not None
    assert Restore({1: mark}).forwarded() == {1: {"0": "10-0", "2": "7-0"}}
    # An entry goes out once the forwards its commit wrote are published, in order.
    assert publishable([None, "5-0", None, "9-0", None], None) == 1
    assert publishable([None, "5-0", None, "9-0", None], "5-0") == 3
    assert publishable([None, "5-0", None, "9-0", None], "9-0") == 5
    assert publishable([None, None], None) == 2
    assert publishable(["10-0"], "9-99") == 0
    waits = orjson.dumps({"a": "cart-events:1:4", "h": []})
    [out] = records(
        "14-0",
        [KeyState("c-1", None, b"", None, {}, None, (-2, -2, -2), waiting=waits)],
        {},
        PARTITIONS,
    )
    assert out.value is not None, "a key that only waits is no tombstone"
    item = Restore().take(out.key, out.value, dict(out.headers))
    assert isinstance(item, SessionState)
    assert item.waiting == {"a": "cart-events:1:4", "h": []}
    [done] = records(
        "15-0", [_state("c-1", 2, session_codec.encode(Session(key="c-1")))], {}, PARTITIONS
    )
    later = SESSION_STATE_ADAPTER.validate_json(done.value or b"")
    assert later.waiting is None
