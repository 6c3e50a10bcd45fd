"""The session changelog's records, and the restore's choice among them. Pure.

The commit script of partition N appends one entry per commit to that
partition's Redis stream ``cont:{pN}:cl``: the batch's applied offsets and,
for every key the commit touched, the state it left (``commit.lua``'s
changelog section). The changelog relay (``streams/worker/changelog_relay.py``)
reads each partition's stream in order, one relay per partition at a time,
and turns each entry into records of ``session-changelog``
(``schemas/changelog.py``) with :func:`records`, each on its key's partition.
It keeps the partition's applied offsets as of the entry (:class:`Cursor`),
so each record says which source positions it reflects, and after each round
publishes the partition's watermark on partition N: everything of the
partition before it is on the topic.

In forward mode (``docs/merge-across-partitions.md``) an entry also says what
is in flight between partitions (:func:`sent`): the last forward applied per
origin partition, which the cursor and the watermark keep like offsets, and
the last forward the commit wrote, which holds the entry back until the
forward relay published it (:func:`publishable`); a key's record carries its
session's wait for a merge. So a restore never holds a state whose forwards
were lost with Redis, nor loses a wait.

A restore (:class:`Restore`) keeps each key's record of the highest ``seq``
and each partition's highest watermark. Every source record up to the
watermarks is reflected in the restored states; a record after them is
reflected in a key whose restored state's positions cover it (the round that
was being published when Redis was lost), which :meth:`Restore.reflected`
tells the planner so it folds the tail exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from schemas.changelog import (
    CONTROL_HEADER,
    POSITIONS_HEADER,
    REASON_HEADER,
    SEQ_HEADER,
    SESSION_STATE_ADAPTER,
    VERSION_HEADER,
    WATERMARK_ADAPTER,
    WATERMARK_KEY,
    Positions,
    SessionState,
    Watermark,
)
from streams.core import session_codec
from streams.core.placement import partition_of

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Out:
    """One record for ``session-changelog`` on ``partition``: ``value`` None is a tombstone.

    A key's record goes to the key's own partition (Kafka's default partitioner's,
    so compaction sees all of a key's records together); a watermark to the
    partition it speaks for, so a restore finds each partition's newest there.
    """

    key: str
    value: bytes | None
    headers: Headers
    partition: int


def seq_order(seq: str) -> tuple[int, int]:
    """A Redis stream id (``<ms>-<n>``) as a sortable pair."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def compact(offsets: Mapping[str, int]) -> Positions:
    """``topic:partition -> offset`` as :data:`Positions` (an offset per partition)."""
    out: dict[str, list[int]] = {}
    for tp, offset in offsets.items():
        topic, _, part = tp.rpartition(":")
        row = out.setdefault(topic, [])
        p = int(part)
        row.extend([-1] * (p + 1 - len(row)))
        row[p] = offset
    return {topic: out[topic] for topic in sorted(out)}


def flat(positions: Positions) -> dict[str, int]:
    """:data:`Positions` as ``topic:partition -> offset`` (applied ones only)."""
    return {
        f"{topic}:{p}": offset
        for topic, row in positions.items()
        for p, offset in enumerate(row)
        if offset >= 0
    }


@dataclass
class Cursor:
    """The relay's progress: the last entry published, and the applied offsets then (with
    their fingerprints, and the last forward applied per origin partition)."""

    seq: str = "0-0"
    offsets: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    forwarded: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> bytes:
        """The cursor as stored (``cont:{pN}:clc``)."""
        return orjson.dumps(
            {
                "seq": self.seq,
                "offsets": self.offsets,
                "fingerprints": self.fingerprints,
                "forwarded": self.forwarded,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | None) -> Cursor:
        """The stored cursor, or the start."""
        if not raw:
            return cls()
        data = orjson.loads(raw)
        return cls(
            data["seq"],
            dict(data["offsets"]),
            dict(data["fingerprints"]),
            dict(data.get("forwarded", {})),
        )

    def watermark(self, partition: int) -> Out:
        """The watermark record of ``partition`` (the cursor's): every record of the
        partition's stream before it reflects these offsets."""
        mark = Watermark(
            seq=self.seq,
            positions=compact(self.offsets),
            fingerprints=dict(self.fingerprints),
            forwarded=dict(self.forwarded),
        )
        headers = [(CONTROL_HEADER, b"watermark")]
        return Out(WATERMARK_KEY, mark.model_dump_json().encode(), headers, partition)


@dataclass(frozen=True)
class KeyState:
    """One touched key of a stream entry, as ``commit.lua`` wrote it."""

    key: str
    version: int | None
    stored: bytes  # the stored session, b"" if none
    merged_into: str | None
    devices: dict[str, int]
    floor: int | None
    expires_at_ms: tuple[int, int, int]
    reason: str = "ended"
    links: tuple[str, ...] = ()
    # The key's wait for a merge across partitions as stored (``Pending``), b"" if none.
    waiting: bytes = b""


@dataclass(frozen=True)
class Sent:
    """What one entry says of the forwards between partitions: the last forward applied
    per origin partition by its commit, and the id of the last forward it wrote."""

    forwarded: dict[str, str] = field(default_factory=dict)
    last_written: str | None = None


def sent(fields: Mapping[bytes, bytes]) -> Sent:
    """The forwards fields of one entry (none in a direct-mode commit's)."""
    marks, last = fields.get(b"m"), fields.get(b"f")
    try:
        forwarded = {str(k): str(v) for k, v in orjson.loads(marks).items()} if marks else {}
    except (ValueError, AttributeError):
        forwarded = {}  # never written so; the entry's own parse reports it
    return Sent(forwarded, last.decode() if last else None)


def publishable(lasts: Sequence[str | None], published: str | None) -> int:
    """How many of a round's entries (the last forward id each commit wrote, in order)
    may go out while the forward relay has published up to ``published``: those before
    the first whose forwards are not all on ``session-forwards`` yet."""
    for n, last in enumerate(lasts):
        if last is not None and (published is None or seq_order(last) > seq_order(published)):
            return n
    return len(lasts)


def parse_entry(fields: Mapping[bytes, bytes]) -> tuple[dict[str, tuple[int, str]], list[KeyState]]:
    """(the batch's applied offsets with fingerprints, the touched keys) of one entry.

    A reset marker (field ``r``, a partition whose log restarted) comes back as
    that partition with offset -1. Raises ``ValueError`` for an entry of no
    known form.
    """
    if b"r" in fields:
        return {fields[b"r"].decode(): (-1, "")}, []
    if b"o" not in fields:
        raise ValueError(f"changelog entry with fields {sorted(fields)!r}")
    batch = {tp: (int(v[0]), str(v[1])) for tp, v in orjson.loads(fields[b"o"]).items()}
    states = []
    i = 1
    while f"k{i}".encode() in fields:

        def get(name: str, i: int = i) -> bytes:
            return fields.get(f"{name}{i}".encode(), b"")

        pairs = orjson.loads(get("dv") or b"[]")
        xs, xa, xd = (int(x) for x in get("x").decode().split(","))
        states.append(
            KeyState(
                key=get("k").decode(),
                version=int(get("v")) if get("v") else None,
                stored=get("d"),
                merged_into=get("a").decode() or None,
                devices={str(pairs[j]): int(float(pairs[j + 1])) for j in range(0, len(pairs), 2)},
                floor=int(get("f")) if get("f") else None,
                expires_at_ms=(xs, xa, xd),
                reason=get("why").decode() or "ended",
                links=tuple(sorted(str(g) for g in orjson.loads(get("l") or b"[]"))),
                waiting=bytes(get("w")),
            )
        )
        i += 1
    return batch, states


def advance(
    cursor: Cursor,
    seq: str,
    batch: Mapping[str, tuple[int, str]],
    forwarded: Mapping[str, str] | None = None,
) -> None:
    """Move the cursor over one entry: its batch's offsets (and ``forwarded``, the last
    forward applied per origin) are now applied."""
    cursor.seq = seq
    cursor.forwarded.update(forwarded or {})
    for tp, (offset, fp) in batch.items():
        if offset < 0:
            # A new log epoch: offsets of the old one mean nothing in it.
            cursor.offsets.pop(tp, None)
            cursor.fingerprints.pop(tp, None)
        else:
            cursor.offsets[tp] = offset
            cursor.fingerprints[tp] = fp


def records(
    seq: str, states: Iterable[KeyState], positions: Positions, partitions: int
) -> list[Out]:
    """The changelog records of one entry's touched keys, each on its key's partition
    of a topic of ``partitions``."""
    out = []
    for st in states:
        where = partition_of(st.key, partitions)
        if (
            not st.stored
            and st.merged_into is None
            and not st.devices
            and not st.links
            and not st.waiting
        ):
            version = st.floor if st.floor is not None else (st.version or 0)
            headers: Headers = [
                (REASON_HEADER, st.reason.encode()),
                (VERSION_HEADER, str(version).encode()),
                (POSITIONS_HEADER, orjson.dumps(positions)),
                (SEQ_HEADER, seq.encode()),
            ]
            out.append(Out(st.key, None, headers, where))
            continue
        version = st.version if st.version is not None else (st.floor or 0)
        value = state_json(seq, version, st, positions)
        out.append(Out(st.key, value, [(SEQ_HEADER, seq.encode())], where))
    return out


def state_json(seq: str, version: int, st: KeyState, positions: Positions) -> bytes:
    """A :class:`SessionState` record's JSON, with the stored session spliced in as it is.

    The stored session is ``Session.model_dump_json()`` already (decompressed when
    stored compressed): parsing and dumping it again per record would cost the
    worker a pydantic round trip for the same bytes. The fields around it are
    the model's, in its order.
    """
    head = orjson.dumps({"key": st.key, "seq": seq, "version": version})
    tail = orjson.dumps(
        {
            "merged_into": st.merged_into,
            "devices": st.devices,
            "links": list(st.links),
            "expires_at_ms": list(st.expires_at_ms),
            "positions": positions,
            "waiting": orjson.loads(st.waiting) if st.waiting else None,
        }
    )
    stored = session_codec.json_of(st.stored) if st.stored else b"null"
    session = stored.encode() if isinstance(stored, str) else stored
    return head[:-1] + b',"session":' + session + b"," + tail[1:]


@dataclass(frozen=True)
class Ended:
    """A tombstone as a restore reads it."""

    key: str
    seq: str
    version: int
    reason: str
    positions: Positions


def newest_watermark(values: Iterable[bytes]) -> Watermark | None:
    """The watermark of the highest ``seq`` among watermark records' values."""
    newest: Watermark | None = None
    for value in values:
        mark = WATERMARK_ADAPTER.validate_json(value)
        if newest is None or seq_order(mark.seq) > seq_order(newest.seq):
            newest = mark
    return newest


def is_control(headers: Mapping[str, bytes]) -> bool:
    """Whether a record is a control record (a watermark), not a key's state."""
    return CONTROL_HEADER in headers


@dataclass
class Restore:
    """What a restore keeps while it streams the changelog: each key's newest ``seq``,
    and the positions of the states that go past the watermarks (few: the rounds the
    relays were publishing). Memory grows with the keys, not with their states.

    ``watermarks`` holds each changelog partition's newest watermark, by partition.
    """

    watermarks: dict[int, Watermark] = field(default_factory=dict)
    seqs: dict[str, tuple[int, int]] = field(default_factory=dict)
    ahead: dict[str, dict[str, int]] = field(default_factory=dict)
    read: int = 0
    # The watermarks' positions, flattened once (not per record).
    _start: dict[str, int] | None = field(default=None, repr=False)

    def take(
        self, key: str, value: bytes | None, headers: Mapping[str, bytes]
    ) -> SessionState | Ended | None:
        """One record of the topic, in any order across partitions: the key's state if
        it is the newest seen so far (to write, replacing an older one), else None."""
        self.read += 1
        if is_control(headers):
            return None
        item: SessionState | Ended
        if value is None:
            item = Ended(
                key,
                headers[SEQ_HEADER].decode(),
                int(headers[VERSION_HEADER]),
                headers.get(REASON_HEADER, b"ended").decode(),
                orjson.loads(headers[POSITIONS_HEADER]),
            )
        else:
            item = SESSION_STATE_ADAPTER.validate_json(value)
        seq = seq_order(item.seq)
        if key in self.seqs and seq <= self.seqs[key]:
            return None
        self.seqs[key] = seq
        if self._start is None:
            self._start = self.start()
        start = self._start
        ahead = {tp: o for tp, o in flat(item.positions).items() if o > start.get(tp, -1)}
        if ahead:
            self.ahead[key] = ahead
        else:
            self.ahead.pop(key, None)
        return item

    def start(self) -> dict[str, int]:
        """``topic:partition`` -> the last source offset every restored state reflects."""
        return {tp: offset for tp, (offset, _) in self._marked().items()}

    def fingerprints(self) -> dict[str, str]:
        """``topic:partition`` -> the fingerprint of the record at :meth:`start`'s offset."""
        return {tp: fp for tp, (_, fp) in self._marked().items() if fp}

    def forwarded(self) -> dict[int, dict[str, str]]:
        """Partition -> origin partition -> the last forward from it applied there, as
        of the partition's watermark."""
        return {n: dict(mark.forwarded) for n, mark in self.watermarks.items() if mark.forwarded}

    def _marked(self) -> dict[str, tuple[int, str]]:
        """Each source partition's position and fingerprint, from the watermarks.

        A partition's watermark covers the source topics' same partition only, so
        the watermarks are disjoint; should two carry one (a changelog published
        before partitions had their own), the newest ``seq`` says it.
        """
        out: dict[str, tuple[int, str]] = {}
        for mark in sorted(self.watermarks.values(), key=lambda m: seq_order(m.seq)):
            for tp, offset in flat(mark.positions).items():
                out[tp] = (offset, mark.fingerprints.get(tp, ""))
        return out

    def reflected(self) -> dict[str, dict[str, int]]:
        """Key -> the source positions its restored state reflects, where they go past
        the watermarks (the planner skips records a key already holds)."""
        return dict(self.ahead)
