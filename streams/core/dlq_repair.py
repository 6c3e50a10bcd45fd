"""Dead-letter repair: how a dead letter is shown, exported, repaired and recorded. Pure.

The repair flow (``continuity dlq``, docs/operations.md, Dead-letter repair and
replay):

1. ``list`` and ``show`` read ``events-dlq`` and print each dead letter once:
   delivery to the DLQ is at least once, so copies of one source record
   (same topic, partition and offset) are folded into the first one.
2. ``export`` writes one JSON object per dead letter (``export_line``); the
   operator fixes the ``event`` of each line, marks a line ``"action":
   "drop"``, or deletes lines to leave them for later.
3. ``replay`` validates the whole file first (``parse_repairs``): one invalid
   line refuses the file and nothing is published. Each repaired event goes
   to its contract topic under its customer key, keeping its ``event_id``, so
   the fold treats a second copy as a duplicate; the record carries the
   header ``continuity.replayed-from: events-dlq:<partition>:<offset>``.
4. What became of each dead letter (replayed or dropped) is recorded in the
   compacted topic ``events-dlq-repairs``, keyed by the source record
   (``Repair``): the ledger lives next to the DLQ it describes, in no Redis
   prefix, so it survives a lost Redis and a blue/green rebuild. ``replay``
   skips what the ledger says is done, unless forced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.dead_letter import REFERENCE_ADAPTER, DeadLetterReference
from schemas.topics import DEAD_LETTERS, DLQ_REPAIRS, REPLAYED_FROM_HEADER
from streams.core import dead_letter as dlq
from streams.core.fold import Rejected
from streams.core.outgoing import Outgoing, prepare

# Compacted, one partition (one order for every repair), keyed by the source
# record of the dead letter; the latest record of a key is its state.
REPAIRS = DLQ_REPAIRS
# Set on every replayed record: which dead letter it repairs (the journey's
# "applied late" mark reads it).
REPLAYED_FROM = REPLAYED_FROM_HEADER

_MAX_FIELD = 80
_MAX_SHOWN_BYTES = 64 * 1024
_POSITION = re.compile(r"^([0-9]{1,6}):([0-9]{1,19})$")


class State(StrEnum):
    """What became of a dead letter. Part of the documented interface."""

    PENDING = "pending"
    REPLAYED = "replayed"
    DROPPED = "dropped"


class Action(StrEnum):
    """What a line of a repair file asks for."""

    REPLAY = "replay"
    DROP = "drop"


@dataclass(frozen=True, order=True)
class Position:
    """Where a dead letter is in ``events-dlq``: partition and offset."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_position(text: str) -> Position:
    """``"<partition>:<offset>"`` as a ``Position``; raises ``ValueError`` otherwise."""
    match = _POSITION.match(text.strip())
    if match is None:
        raise ValueError(f"not a dead-letter position (partition:offset): {safe(text)!r}")
    return Position(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class DeadLetter:
    """One record of ``events-dlq`` as the repair tools see it."""

    position: Position
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    # The value parsed as a JSON object, when it is one (whatever the contract says);
    # None for a reference, whose value describes the record rather than being it.
    event: dict[str, Any] | None
    # The source record's position, size and reason, when the dead letter is a
    # reference to it (a record too large to copy: ``schemas/dead_letter.py``).
    reference: DeadLetterReference | None = None

    @property
    def described(self) -> dict[str, str]:
        """The ``continuity.dlq.*`` headers as text."""
        return dlq.describe(self.headers)

    @property
    def reason(self) -> str:
        """The reason header, or ``unknown`` on a record the worker did not write."""
        return self.described.get(dlq.REASON, "unknown")

    @property
    def detail(self) -> str:
        """The detail header (may be empty)."""
        return self.described.get(dlq.DETAIL, "")

    @property
    def source_topic(self) -> str | None:
        """The topic the bad record was read from."""
        return self.described.get(dlq.TOPIC)

    @property
    def source(self) -> str | None:
        """``topic:partition@offset`` of the bad record, when the headers say."""
        h = self.described
        if dlq.TOPIC not in h or dlq.PARTITION not in h or dlq.OFFSET not in h:
            return None
        return f"{h[dlq.TOPIC]}:{h[dlq.PARTITION]}@{h[dlq.OFFSET]}"

    @property
    def identity(self) -> str:
        """What makes two dead letters the same: the source record, else the DLQ position."""
        return self.source or f"{DEAD_LETTERS}:{self.position}"

    @property
    def event_type(self) -> str | None:
        """The value's ``type`` when it is a string."""
        return _text_field(self.event, "type")

    @property
    def event_id(self) -> str | None:
        """The value's ``event_id`` when it is a string."""
        return _text_field(self.event, "event_id")


def dead_letter(
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
) -> DeadLetter:
    """A ``DeadLetter`` from a consumed record's fields; never raises on any bytes."""
    pairs = tuple((str(k), bytes(v or b"")) for k, v in headers or ())
    reference = _reference(value) if dlq.is_reference(pairs) else None
    return DeadLetter(
        Position(partition, offset),
        timestamp_ms,
        key,
        value,
        pairs,
        None if reference is not None else _json_object(value),
        reference,
    )


def _reference(value: bytes | None) -> DeadLetterReference | None:
    """A reference's value, or None if it is not one (a record the worker did not write)."""
    if value is None:
        return None
    try:
        return REFERENCE_ADAPTER.validate_json(value)
    except ValidationError:
        return None


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _text_field(event: Mapping[str, Any] | None, name: str) -> str | None:
    value = event.get(name) if event is not None else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Entry:
    """A dead letter once deduplicated: the first copy and where every copy is."""

    letter: DeadLetter
    copies: tuple[Position, ...]


def dedupe(letters: Iterable[DeadLetter]) -> list[Entry]:
    """One entry per source record, in DLQ position order; the first copy is kept."""
    groups: dict[str, list[DeadLetter]] = {}
    for letter in sorted(letters, key=lambda d: d.position):
        groups.setdefault(letter.identity, []).append(letter)
    entries = [Entry(g[0], tuple(d.position for d in g)) for g in groups.values()]
    return sorted(entries, key=lambda e: e.letter.position)


@dataclass(frozen=True)
class Repair:
    """A ledger record: what an operator did with one dead letter."""

    identity: str
    dlq: str
    state: State
    at_ms: int
    event_id: str | None = None
    # ``topic:partition@offset`` of the replayed record.
    published_to: str | None = None
    note: str = ""

    def dumps(self) -> bytes:
        """The ledger record's value."""
        return orjson.dumps(
            {
                "identity": self.identity,
                "dlq": self.dlq,
                "state": self.state.value,
                "at_ms": self.at_ms,
                "event_id": self.event_id,
                "published_to": self.published_to,
                "note": self.note,
            }
        )


def load_repair(raw: bytes) -> Repair:
    """A ledger record's value as a ``Repair``; raises ``ValueError`` if it is not one."""
    try:
        d = orjson.loads(raw)
        return Repair(
            identity=str(d["identity"]),
            dlq=str(d["dlq"]),
            state=State(d["state"]),
            at_ms=int(d["at_ms"]),
            event_id=d.get("event_id"),
            published_to=d.get("published_to"),
            note=str(d.get("note") or ""),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a repair record: {exc}") from exc


def latest(repairs: Iterable[Repair]) -> dict[str, Repair]:
    """Identity -> its newest repair (the ledger is read in order: the last one wins)."""
    return {r.identity: r for r in repairs}


def state_of(entry: Entry, ledger: Mapping[str, Repair]) -> State:
    """The entry's state by the ledger: pending unless a repair says otherwise."""
    repair = ledger.get(entry.letter.identity)
    return repair.state if repair is not None else State.PENDING


def replay_of(ledger: Mapping[str, Repair]) -> dict[str, str]:
    """Source record of a replay -> the dead letter it repaired.

    A repaired event the fold rejects again is dead-lettered anew, with the
    replayed record as its source; this names the dead letter it came from.
    """
    return {r.published_to: r.dlq for r in ledger.values() if r.published_to}


@dataclass(frozen=True)
class Filter:
    """Which dead letters a command looks at; None matches everything."""

    reason: str | None = None
    topic: str | None = None
    since_ms: int | None = None
    state: State | None = None

    def admits(self, entry: Entry, state: State) -> bool:
        """Whether ``entry`` (in ``state``) passes the filter."""
        letter = entry.letter
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.topic is not None and letter.source_topic != self.topic:
            return False
        if self.since_ms is not None and (letter.timestamp_ms or 0) < self.since_ms:
            return False
        return self.state is None or state is self.state


def parse_since(text: str) -> int:
    """An ISO 8601 time (a date, or a time without offset, is UTC) as Unix ms."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {safe(text)!r}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def safe(text: str, limit: int | None = _MAX_FIELD, keep_newlines: bool = False) -> str:
    """``text`` fit for a terminal: control characters escaped, cut at ``limit``.

    Dead letters are untrusted input; their details name whatever a producer sent.
    """
    out = []
    for ch in text:
        if ch.isprintable() or (keep_newlines and ch == "\n"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    shown = "".join(out)
    if limit is not None and len(shown) > limit:
        return shown[: limit - 3] + "..."
    return shown


def list_line(entry: Entry, state: State, replayed_from: str | None = None) -> str:
    """One ``continuity dlq list`` line."""
    d = entry.letter
    extra = f"  ({len(entry.copies)} copies)" if len(entry.copies) > 1 else ""
    if d.reference is not None:
        extra += f"  (reference: {d.reference.size} bytes left in {d.reference.topic})"
    if replayed_from:
        extra += f"  (replay of {DEAD_LETTERS} {replayed_from})"
    return (
        f"{d.position!s:>9}  {state.value:<8}  {d.reason:<17}  "
        f"{safe(d.source or '(no source headers)')}  {safe(d.event_type or '-', 40)}  "
        f"{safe(d.event_id or '-', 40)}  {safe(d.detail, 160)}{extra}"
    )


def list_json(entry: Entry, state: State, replayed_from: str | None = None) -> dict[str, Any]:
    """One ``continuity dlq list --json`` object."""
    d = entry.letter
    return {
        "dlq": str(d.position),
        "copies": [str(p) for p in entry.copies],
        "state": state.value,
        "reason": d.reason,
        "source": d.source,
        "type": d.event_type,
        "event_id": d.event_id,
        "detail": d.detail,
        "dead_lettered_at": _iso(d.timestamp_ms),
        "replay_of": replayed_from,
        "reference": None if d.reference is None else d.reference.model_dump(mode="json"),
    }


def summary(rows: Sequence[tuple[Entry, State]], shown: int) -> list[str]:
    """The lines closing ``continuity dlq list``: counts by reason and by state."""
    by_reason: dict[str, Counter[str]] = {}
    for entry, state in rows:
        by_reason.setdefault(entry.letter.reason, Counter())[state.value] += 1
    copies = sum(len(e.copies) - 1 for e, _ in rows)
    lines = [
        f"{len(rows)} dead letters"
        + (f" ({shown} shown)" if shown < len(rows) else "")
        + (f"; {copies} repeated copies folded in" if copies else "")
    ]
    for reason, states in sorted(by_reason.items()):
        parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        lines.append(f"  {reason:<17} {sum(states.values()):>6}  ({parts})")
    return lines


def show_lines(letter: DeadLetter, state: State, repair: Repair | None) -> list[str]:
    """``continuity dlq show``: where it is, its state, headers, key and value."""
    lines = [
        f"{DEAD_LETTERS} {letter.position}  state: {state.value}",
        f"dead-lettered at: {_iso(letter.timestamp_ms) or '(no timestamp)'}",
    ]
    if repair is not None:
        lines.append(
            f"repair: {repair.state.value} at {_iso(repair.at_ms)}"
            + (f" as {repair.published_to}" if repair.published_to else "")
            + (f"; note: {safe(repair.note, 200)}" if repair.note else "")
        )
    lines.append(f"key: {_bytes_text(letter.key)}")
    lines.append("headers:")
    lines.extend(
        f"  {safe(k, 100)}: {safe(v.decode('utf-8', 'replace'), 1000)}" for k, v in letter.headers
    )
    if letter.reference is not None:
        lines.extend(reference_lines(letter.reference))
        return lines
    lines.extend(value_lines(letter.value, letter.event is not None))
    return lines


def reference_lines(ref: DeadLetterReference) -> list[str]:
    """What a reference says, and where the record it names is."""
    return [
        f"a reference: the record was too large to copy ({safe(ref.why_reference, 200)})",
        f"source record: {safe(ref.topic)}:{ref.partition}@{ref.offset}, value {ref.size} bytes"
        f", key {ref.key_bytes} bytes",
        f"reason: {safe(ref.reason)}: {safe(ref.detail, 500)}",
    ]


def source_lines(
    ref: DeadLetterReference, found: bool, key: bytes | None, value: bytes | None
) -> list[str]:
    """``continuity dlq show`` of a reference: the source record read back by position
    (``found``), or why it is not there."""
    where = f"{safe(ref.topic)}:{ref.partition}@{ref.offset}"
    if not found:
        return [
            f"source record {where}: no longer in the log (its topic's retention removed it, "
            "or the log was reset); only the reference is left: drop it "
            "(continuity dlq drop) or replay an event rewritten by hand"
        ]
    return [
        f"source record {where}, read back from Kafka:",
        f"key: {_bytes_text(key)}",
        *value_lines(value, False, cap_json=True),
    ]


def value_lines(value: bytes | None, is_event: bool, cap_json: bool = False) -> list[str]:
    """A value for a terminal: JSON pretty-printed (``cap_json``: only up to 64 KiB),
    anything else escaped and cut at 64 KiB."""
    lines: list[str] = []
    fits = not cap_json or (value is not None and len(value) <= _MAX_SHOWN_BYTES)
    if value is None:
        lines.append("value: (none)")
    elif fits and (is_event or _is_json(value)):
        pretty = orjson.dumps(orjson.loads(value), option=orjson.OPT_INDENT_2).decode()
        lines.append(f"value ({len(value)} bytes, JSON):")
        lines.append(safe(pretty, None, keep_newlines=True))
    else:
        cut = value[:_MAX_SHOWN_BYTES]
        more = f" ... {len(value) - len(cut)} more bytes" if len(cut) < len(value) else ""
        kind = "not JSON" if fits else "shown in part"
        lines.append(f"value ({len(value)} bytes, {kind}): {cut!r}{more}")
    return lines


def _is_json(value: bytes) -> bool:
    try:
        orjson.loads(value)
    except (orjson.JSONDecodeError, RecursionError):
        return False
    return True


def _bytes_text(raw: bytes | None) -> str:
    if raw is None:
        return "(none)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)
    return text if text.isprintable() else repr(raw)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def export_line(entry: Entry, state: State) -> dict[str, Any]:
    """One line of ``continuity dlq export``: the dead letter, ready to be repaired.

    ``event`` is the value parsed as a JSON object (null when it is not one);
    then ``raw`` holds the value as text, for the operator to rewrite as an event.
    """
    d = entry.letter
    line: dict[str, Any] = {
        "dlq": str(d.position),
        "source": d.source,
        "reason": d.reason,
        "detail": d.detail,
        "state": state.value,
        "action": Action.REPLAY.value,
        "event": d.event,
    }
    if d.reference is not None:
        # The record is not here: it stays in its topic, too large to copy (and, at
        # that size, no event the contract accepts). Its repair is an event rewritten
        # by hand, or a drop.
        line["reference"] = d.reference.model_dump(mode="json")
        line["hint"] = (
            f"continuity dlq show {d.position} reads the {d.reference.size}-byte record "
            f"from {d.reference.topic} while its retention keeps it; write the event to "
            'replay in "event", or set "action": "drop"'
        )
        return line
    if d.event is None:
        line["raw"] = None if d.value is None else d.value.decode("utf-8", "backslashreplace")
    return line


@dataclass(frozen=True)
class RepairLine:
    """One valid line of a repair file."""

    number: int
    dlq: Position
    action: Action
    # The record to publish (replay lines only): contract topic, customer key, value.
    outgoing: Outgoing | None = None
    event_id: str | None = None
    event_type: str | None = None
    note: str = ""


@dataclass(frozen=True)
class LineError:
    """Why one line of a repair file is refused."""

    number: int
    message: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.message}"


@dataclass
class RepairFile:
    """A parsed repair file: its valid lines and the errors of the others."""

    lines: list[RepairLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


def parse_repairs(text_lines: Iterable[str]) -> RepairFile:
    """Validate every line of a repair file under the wire contract; never raises.

    A line is a JSON object with ``dlq`` (``"partition:offset"``), ``action``
    (``replay``, the default, or ``drop``), for a replay an ``event`` that the
    contract accepts, and an optional ``note``. Other fields (``source``,
    ``reason``, ``raw``...) are ignored. Blank lines are skipped. A position
    may appear once.
    """
    parsed = RepairFile()
    seen: dict[Position, int] = {}
    for number, text in enumerate(text_lines, start=1):
        if not text.strip():
            continue
        line = _parse_line(number, text)
        if isinstance(line, LineError):
            parsed.errors.append(line)
            continue
        if line.dlq in seen:
            parsed.errors.append(
                LineError(number, f"dlq {line.dlq} is already on line {seen[line.dlq]}")
            )
            continue
        seen[line.dlq] = number
        parsed.lines.append(line)
    return parsed


def _parse_line(number: int, text: str) -> RepairLine | LineError:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return LineError(number, f"not JSON ({safe(str(exc))})")
    except RecursionError:
        return LineError(number, "not JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return LineError(number, "not a JSON object")
    raw_pos = obj.get("dlq")
    if not isinstance(raw_pos, str):
        return LineError(number, '"dlq" must be the dead letter\'s position, e.g. "0:12"')
    try:
        pos = parse_position(raw_pos)
    except ValueError as exc:
        return LineError(number, str(exc))
    note = obj.get("note")
    if note is not None and not isinstance(note, str):
        return LineError(number, '"note" must be a string')
    raw_action = obj.get("action", Action.REPLAY.value)
    try:
        action = Action(raw_action)
    except ValueError:
        return LineError(
            number, f'"action" must be "replay" or "drop", not {safe(str(raw_action))!r}'
        )
    if action is Action.DROP:
        return RepairLine(number, pos, action, note=note or "")
    ev = obj.get("event")
    if not isinstance(ev, dict):
        return LineError(
            number,
            f'dlq {pos}: "event" must be the repaired event as a JSON object '
            '(rewrite "raw" into it), or set "action": "drop"',
        )
    out = prepare(orjson.dumps(ev))
    if isinstance(out, Rejected):
        return LineError(
            number,
            f"dlq {pos}: event breaks the contract: {out.reason.value}: {safe(out.detail, 300)}",
        )
    return RepairLine(
        number, pos, action, out, _text_field(ev, "event_id"), _text_field(ev, "type"), note or ""
    )


def replay_headers(pos: Position) -> list[tuple[str, bytes]]:
    """The headers of a replayed record: the dead letter it repairs."""
    return [(REPLAYED_FROM, f"{DEAD_LETTERS}:{pos}".encode())]
