"""``continuity dlq list|show|export|replay|drop``: the operator's side of dead letters.

Each command returns its exit status: 0 done, 1 the broker could not be read
or written (nothing half-done that running it again would not fix) or ``show``
found no dead letter at its position, 2 usage or an invalid repair file
(nothing published or recorded). Listings and exports go to
stdout; progress, what was started and where to look go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from schemas.topics import DEAD_LETTERS
from streams.cli.common import Subcommands, load_settings
from streams.core.dlq_repair import (
    REPAIRS,
    REPLAYED_FROM,
    Action,
    DeadLetter,
    Entry,
    Filter,
    Position,
    Repair,
    RepairLine,
    State,
    dedupe,
    export_line,
    list_json,
    list_line,
    parse_position,
    parse_repairs,
    parse_since,
    replay_of,
    safe,
    show_lines,
    source_lines,
    state_of,
    summary,
)
from streams.core.fold import Reason
from streams.kafka.progress import ReadProgress
from streams.ops.dlq import (
    DlqError,
    apply_repairs,
    read_ledger,
    read_letters,
    read_letters_at,
    read_source,
)

OK, FAILED, USAGE = 0, 1, 2
REASONS = (*(r.value for r in Reason), "unknown")


def run(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    """Run the ``dlq`` action named by ``args.action``; return the exit status."""
    commands: dict[str, Callable[[argparse.Namespace, str, Mapping[str, Any]], int]] = {
        "list": _list,
        "export": _export,
        "show": _show,
        "replay": _replay,
        "drop": _drop,
    }
    try:
        return commands[args.action](args, bootstrap, kafka)
    except _Usage as exc:
        _err(f"continuity dlq {args.action}: {exc}")
        return USAGE
    # KafkaError covers LogUnreadable, the reads' one error.
    except (DlqError, KafkaError, OSError, TimeoutError) as exc:
        _err(
            f"continuity dlq {args.action}: cannot complete on {bootstrap}: {exc!r}; "
            "running it again is safe"
        )
        return FAILED


class _Usage(ValueError):
    """Arguments or a repair file the command cannot work with (exit 2)."""


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(p: ReadProgress) -> None:
    _err(f"  {p.line()}")


def _filter(args: argparse.Namespace, default_state: State | None) -> Filter:
    if args.reason is not None and args.reason not in REASONS:
        raise _Usage(f"unknown reason {safe(args.reason)!r}; one of {', '.join(REASONS)}")
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    state = (
        default_state if args.state is None else None if args.state == "all" else State(args.state)
    )
    return Filter(args.reason, args.topic, since, state)


def _entries(
    args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any], default_state: State | None
) -> tuple[list[tuple[Entry, State]], dict[str, str]]:
    """The filtered, deduplicated dead letters with their states, and replay-of links."""
    filt = _filter(args, default_state)
    _err(f"reading {DEAD_LETTERS} and {REPAIRS} on {bootstrap}...")

    async def read() -> tuple[dict[str, Repair], list[DeadLetter]]:
        ledger = await read_ledger(bootstrap, kafka=kafka)
        letters = await read_letters(bootstrap, kafka=kafka, progress=_progress)
        return ledger, letters

    ledger, letters = asyncio.run(read())
    links = replay_of(ledger)
    rows = [(e, state_of(e, ledger)) for e in dedupe(letters)]
    return [(e, s) for e, s in rows if filt.admits(e, s)], links


def _list(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    if args.limit is not None and args.limit < 0:
        raise _Usage("--limit must be 0 or more")
    rows, links = _entries(args, bootstrap, kafka, None)
    shown = rows if args.limit is None else rows[: args.limit]
    for entry, state in shown:
        link = links.get(entry.letter.source or "")
        if args.json:
            sys.stdout.write(orjson.dumps(list_json(entry, state, link)).decode() + "\n")
        else:
            print(list_line(entry, state, link))
    closing = summary(rows, len(shown))
    for line in closing:
        # With --json stdout stays pure JSON lines.
        print(line, file=sys.stderr if args.json else sys.stdout)
    if not args.json and any(s is State.PENDING for _, s in rows):
        print(
            "repair: continuity dlq export > dl.jsonl; edit it; continuity dlq replay dl.jsonl "
            "(one dead letter in full: continuity dlq show <partition:offset>)"
        )
    return OK


def _export(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    rows, _ = _entries(args, bootstrap, kafka, State.PENDING)
    text = "".join(orjson.dumps(export_line(e, s)).decode() + "\n" for e, s in rows)
    if args.out in (None, "-"):
        sys.stdout.write(text)
        where = "stdout"
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise _Usage(f"cannot write {args.out}: {exc}") from None
        where = args.out
    reasons = Counter(e.letter.reason for e, _ in rows)
    _err(
        f"exported {len(rows)} dead letters to {where}"
        + (f" ({', '.join(f'{r}: {n}' for r, n in sorted(reasons.items()))})" if rows else "")
        + '; fix each line\'s "event" (or set "action": "drop", or delete the line to leave it '
        "pending), then: continuity dlq replay FILE --dry-run, and without --dry-run"
    )
    return OK


def _show(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    try:
        pos = parse_position(args.position)
    except ValueError as exc:
        raise _Usage(str(exc)) from None

    async def read() -> tuple[dict[str, Repair], dict[Position, DeadLetter]]:
        return await read_ledger(bootstrap, kafka=kafka), await read_letters_at(
            bootstrap, [pos], kafka=kafka
        )

    ledger, found = asyncio.run(read())
    letter = found.get(pos)
    if letter is None:
        _err(f"continuity dlq show: no dead letter at {DEAD_LETTERS} {pos} on {bootstrap}")
        return FAILED
    repair = ledger.get(letter.identity)
    state = repair.state if repair is not None else State.PENDING
    for line in show_lines(letter, state, repair):
        print(line)
    if letter.reference is not None:
        # The record was too large to copy: read it where it is, while retention keeps it.
        source = asyncio.run(read_source(bootstrap, letter.reference, kafka=kafka))
        key = source.key if source is not None else None
        value = source.value if source is not None else None
        for line in source_lines(letter.reference, source is not None, key, value):
            print(line)
    return OK


def _read_file(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Usage(f"cannot read {path}: {exc}") from None


def _replay(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    parsed = parse_repairs(_read_file(args.file))
    if parsed.errors:
        for error in parsed.errors:
            _err(str(error))
        raise _Usage(
            f"{len(parsed.errors)} invalid lines in {args.file}; nothing was published "
            "(the whole file is refused)"
        )
    if not parsed.lines:
        _err(f"{args.file} holds no repairs; nothing to do")
        return OK
    _err(
        f"checking {len(parsed.lines)} repairs of {args.file} "
        f"against {DEAD_LETTERS} on {bootstrap}..."
    )

    async def read() -> tuple[dict[str, Repair], dict[Position, DeadLetter]]:
        ledger = await read_ledger(bootstrap, kafka=kafka)
        letters = await read_letters_at(bootstrap, [ln.dlq for ln in parsed.lines], kafka=kafka)
        return ledger, letters

    ledger, letters = asyncio.run(read())
    missing = [ln for ln in parsed.lines if ln.dlq not in letters]
    if missing:
        for ln in missing:
            _err(f"line {ln.number}: no dead letter at {DEAD_LETTERS} {ln.dlq}")
        raise _Usage(f"{len(missing)} lines name no dead letter; nothing was published")
    todo: list[RepairLine] = []
    planned: dict[str, int] = {}
    for ln in parsed.lines:
        letter = letters[ln.dlq]
        if letter.identity in planned:
            # Two copies of one dead letter (at-least-once delivery to the DLQ).
            _err(
                f"line {ln.number}: {DEAD_LETTERS} {ln.dlq} is a copy of the dead letter on "
                f"line {planned[letter.identity]}; skipped"
            )
            continue
        done = ledger.get(letter.identity)
        if ln.action is Action.DROP and done is not None and done.state is State.REPLAYED:
            _err(f"line {ln.number}: {DEAD_LETTERS} {ln.dlq} was replayed; it cannot be dropped")
            continue
        if done is not None and not args.force:
            _err(
                f"line {ln.number}: {DEAD_LETTERS} {ln.dlq} was already {done.state.value}"
                + (f" (as {done.published_to})" if done.published_to else "")
                + "; skipped (--force to do it again: the fold skips a repeated event_id)"
            )
            continue
        if ln.action is Action.REPLAY and letter.event_id and ln.event_id != letter.event_id:
            _err(
                f"line {ln.number}: note: event_id changed from {safe(letter.event_id)!r}; "
                "the fold will see a new event"
            )
        planned[letter.identity] = ln.number
        todo.append(ln)
    for ln in todo:
        print(f"  {_describe(ln)}" + (" (dry run)" if args.dry_run else ""))
    if args.dry_run:
        _err(f"dry run: {len(todo)} repairs would be made; nothing was published")
        return OK
    if not todo:
        _err("nothing to do")
        return OK
    _err(f"publishing to {bootstrap}...")
    published, _ = asyncio.run(apply_repairs(bootstrap, todo, letters, kafka=kafka))
    for p in published:
        print(f"  {DEAD_LETTERS} {p.line.dlq} -> {p.where}")
    dropped = sum(1 for ln in todo if ln.action is Action.DROP)
    per_topic = Counter(p.topic for p in published)
    keys = sorted({p.line.outgoing.key.decode() for p in published if p.line.outgoing})
    print(
        f"replayed {len(published)} events "
        f"({', '.join(f'{t}: {n}' for t, n in sorted(per_topic.items())) or 'none'}), "
        f"dropped {dropped}; recorded in {REPAIRS}. Each replayed record carries "
        f"{REPLAYED_FROM}. Look: continuity dlq list --state replayed"
        + (f"; continuity session show {safe(keys[0])}" if keys else "")
        + "; a repair the fold rejects again is dead-lettered anew (listed as a replay of it)"
    )
    return OK


def _describe(ln: RepairLine) -> str:
    if ln.action is Action.DROP:
        return f"{DEAD_LETTERS} {ln.dlq}: drop" + (f" ({safe(ln.note)})" if ln.note else "")
    out = ln.outgoing
    assert out is not None
    return (
        f"{DEAD_LETTERS} {ln.dlq}: replay {safe(ln.event_type or '-')} "
        f"{safe(ln.event_id or '-')} to {out.topic}, key {safe(out.key.decode())}"
    )


def _drop(args: argparse.Namespace, bootstrap: str, kafka: Mapping[str, Any]) -> int:
    try:
        positions = [parse_position(p) for p in args.positions]
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    lines = [
        RepairLine(n, pos, Action.DROP, note=args.note or "")
        for n, pos in enumerate(dict.fromkeys(positions), start=1)
    ]

    async def run_drop() -> str:
        ledger = await read_ledger(bootstrap, kafka=kafka)
        letters = await read_letters_at(bootstrap, positions, kafka=kafka)
        missing = [str(p) for p in positions if p not in letters]
        if missing:
            return f"no dead letter at {DEAD_LETTERS} {', '.join(missing)}"
        replayed = [
            str(p)
            for p in positions
            if (r := ledger.get(letters[p].identity)) is not None and r.state is State.REPLAYED
        ]
        if replayed:
            return f"already replayed: {DEAD_LETTERS} {', '.join(replayed)}"
        await apply_repairs(bootstrap, lines, letters, kafka=kafka)
        return ""

    refused = asyncio.run(run_drop())
    if refused:
        raise _Usage(f"{refused}; nothing was recorded")
    print(f"dropped {len(lines)} dead letters; recorded in {REPAIRS} (continuity dlq list)")
    return OK


def command(args: argparse.Namespace) -> int:
    """``continuity dlq ...`` with the broker and client settings from the environment."""
    from streams.kafka.security import kafka_client_kwargs

    settings = load_settings()
    return run(args, settings.kafka_bootstrap, kafka_client_kwargs(settings))


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    dl = sub.add_parser("dlq", help="inspect, repair and replay dead letters (events-dlq)")
    dlsub = dl.add_subparsers(dest="action", required=True)
    states = ["pending", "replayed", "dropped", "all"]
    for action, help_, default_state in (
        ("list", "one line per dead letter, then counts by reason", "all"),
        ("export", "dead letters as a JSON-lines repair file", "pending"),
    ):
        a = dlsub.add_parser(action, help=help_)
        a.add_argument("--reason", help="only this reason, e.g. invalid_event")
        a.add_argument("--topic", help="only dead letters from this source topic")
        a.add_argument("--since", help="only those dead-lettered since this ISO time (UTC if bare)")
        a.add_argument("--state", choices=states, help=f"only this state (default {default_state})")
        a.set_defaults(func=command)
        if action == "list":
            a.add_argument("--limit", type=int, default=None, help="print at most N lines")
            a.add_argument("--json", action="store_true", help="JSON lines; counts on stderr")
        else:
            a.add_argument("--out", default=None, help="file to write (default stdout)")
    a = dlsub.add_parser("show", help="one dead letter: headers, key and value")
    a.add_argument("position", help="its events-dlq position, partition:offset")
    a.set_defaults(func=command)
    a = dlsub.add_parser("replay", help="validate a repair file, then publish and record it")
    a.add_argument("file", help="the edited export ('-' for stdin)")
    a.add_argument("--dry-run", action="store_true", help="validate and show; publish nothing")
    a.add_argument("--force", action="store_true", help="also lines already replayed or dropped")
    a.set_defaults(func=command)
    a = dlsub.add_parser("drop", help="record dead letters as dropped (never to be replayed)")
    a.add_argument("positions", nargs="+", help="events-dlq positions, partition:offset")
    a.add_argument("--note", default="", help="why (kept in the ledger)")
    a.set_defaults(func=command)
