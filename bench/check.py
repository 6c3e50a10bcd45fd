"""Is a run's final Redis state right? Compared with the oracle's projection (``bench.expect``).

The worker stores ``<prefix>:{p<n>}:s:<key>`` as a hash (``v``, ``d`` = session
JSON); the naive runner stores the same JSON as a plain string under the same
name; both keep aliases at ``<prefix>:{p<n>}:a:<anon>`` (``streams/store/keys.py``).
A run whose state is wrong does not count: its figures are reported as FAILED.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from redis.asyncio import RedisCluster

from bench.expect import Expectation, project
from bench.workload import Workload
from streams.core.session_codec import decode, json_of
from streams.store import keys
from streams.store.client import Client


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ok or not, what was compared, and the first problems found."""

    ok: bool
    what: str
    problems: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        if self.ok:
            return f"ok ({self.what})"
        return f"FAILED ({self.what}): " + "; ".join(self.problems[:3])


async def read_sessions(redis: Client, prefix: str, hashed: bool) -> dict[str, bytes]:
    """Every stored session's JSON by session key (hash field ``d``, or a plain string)."""
    names = [k async for k in redis.scan_iter(match=keys.SESSION.glob(prefix), count=2000)]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        if hashed:
            pipe.hget(name, "d")
        else:
            pipe.get(name)
    blobs = await pipe.execute()
    return {_id_of(name, keys.SESSION): blob for name, blob in zip(names, blobs, strict=True)}


async def read_aliases(redis: Client, prefix: str) -> dict[str, str]:
    names = [k async for k in redis.scan_iter(match=keys.ALIAS.glob(prefix), count=2000)]
    if not names:
        values = []
    elif isinstance(redis, RedisCluster):  # names of many slots: one MGET per slot
        values = await redis.mget_nonatomic(names)
    else:
        values = await redis.mget(names)
    return {
        _id_of(n, keys.ALIAS): v.decode() if isinstance(v, bytes) else str(v)
        for n, v in zip(names, values, strict=True)
    }


async def check_state(
    redis: Client, prefix: str, hashed: bool, workload: Workload, expected: Expectation
) -> Verdict:
    """Compare every session and alias under ``prefix`` with the expectation."""
    stored = await read_sessions(redis, prefix, hashed)
    aliases = await read_aliases(redis, prefix)
    problems: list[str] = []
    want = expected.oracle.sessions
    problems += _set_problems("session", want, stored)
    problems += _set_problems("alias", expected.oracle.aliases, aliases)
    problems += [
        f"alias {a} -> {aliases[a]}, expected {t}"
        for a, t in expected.oracle.aliases.items()
        if a in aliases and aliases[a] != t
    ]
    merged = {j.session_key for j in workload.journeys if j.merged}
    with_cart = {j.session_key for j in workload.journeys if not j.completed_checkout}
    exact = 0
    for key in sorted(set(want) & set(stored)):
        if key in expected.exact:
            exact += 1
            if json_of(stored[key]) != want[key].model_dump_json().encode():
                problems.append(f"{key}: bytes differ from the oracle")
            continue
        got = project(
            decode(stored[key]),
            merged=key in merged,
            with_cart=key in with_cart,
        )
        if got != expected.projections[key]:
            problems.append(f"{key}: {_first_difference(got, expected.projections[key])}")
    what = (
        f"{len(want)} sessions, {len(expected.oracle.aliases)} aliases: "
        f"{len(want) - exact} by projection, {exact} byte-exact"
    )
    return Verdict(not problems, what, tuple(problems))


async def check_counts(redis: Client, prefix: str, workload: Workload) -> Verdict:
    """The ceiling's invariant: per-customer counts add up to the events sent, every key present."""
    names = [k async for k in redis.scan_iter(match=f"{prefix}:n:*", count=2000)]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hget(name, "n")
    counts = [int(v) for v in await pipe.execute()]
    return _counted(names, counts, workload, "customer counts sum to events sent")


async def check_json_counts(redis: Client, prefix: str, workload: Workload) -> Verdict:
    """The getset runner's invariant: its JSON documents' counts add up to the events sent,
    one document per customer key."""
    names = [k async for k in redis.scan_iter(match=f"{prefix}:j:*", count=2000)]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
    counts = [int(orjson.loads(v)["n"]) for v in await pipe.execute()]
    return _counted(names, counts, workload, "customer documents count the events sent")


def _counted(names: list[bytes], counts: list[int], workload: Workload, what: str) -> Verdict:
    """Per-customer counts (one stored key each) against the workload: they add up to
    the events sent, and the keys are the workload's customers."""
    keys = {e.get("customer_id") or e["anonymous_id"] for e in workload.events}
    problems = []
    if sum(counts) != len(workload.events):
        problems.append(f"counts add up to {sum(counts)}, {len(workload.events)} sent")
    if {_braced(n) for n in names} != keys:
        problems.append(f"{len(names)} customer keys stored, {len(keys)} in the workload")
    return Verdict(not problems, f"{len(keys)} {what}", tuple(problems))


def check_count(count: int, sent: int) -> Verdict:
    """faust-empty's invariant: it saw exactly the events sent."""
    problems = () if count == sent else (f"counted {count}, {sent} sent",)
    return Verdict(not problems, "events counted == events sent", problems)


def _id_of(name: bytes, family: keys.Family) -> str:
    """``prefix:{p3}:s:<key>`` -> ``<key>`` (after the partition tag and the family's head)."""
    text = name.decode()
    head = "}" + family.head
    return text[text.index(head) + len(head) :]


def _braced(name: bytes) -> str:
    """The ceiling runner's ``prefix:n:{key}`` -> ``key``."""
    text = name.decode()
    return text[text.index("{") + 1 : text.rindex("}")]


def _set_problems(what: str, want: Iterable[str], got: Iterable[str]) -> list[str]:
    missing, extra = set(want) - set(got), set(got) - set(want)
    out = []
    if missing:
        out.append(f"{len(missing)} {what}s missing, e.g. {sorted(missing)[0]}")
    if extra:
        out.append(f"{len(extra)} unexpected {what}s, e.g. {sorted(extra)[0]}")
    return out


def _first_difference(got: dict[str, object], want: dict[str, object]) -> str:
    for name, expected in want.items():
        have = got.get(name)
        if have == expected:
            continue
        if isinstance(have, list) and isinstance(expected, list):
            missing = [x for x in expected if x not in have][:3]
            extra = [x for x in have if x not in expected][:3]
            return f"{name}: missing {missing}, unexpected {extra}"
        return f"{name} is {have!r:.200}, expected {expected!r:.200}"
    return "projection differs"
