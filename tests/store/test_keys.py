"""The Redis key layout is declared once (``streams/store/keys.py``) and everything agrees with it.

Proves: the key names are the public contract's, byte for byte, each tagged
with its partition (``cont:{p7}:s:c-1``); each builder names exactly its
family's pattern, and the layout's matcher takes every key it builds and
nothing undeclared or misplaced; the Lua scripts build names only with the
prelude's ``key_<family>`` builders, exactly the families the module says
they build, and spell no name themselves; the prelude's builders, run by a
real redis-server, name exactly what the Python builders name for many ids
and partition counts; no Python module under ``streams/`` builds a key name
itself; the key module imports no I/O (``docs/redis-layout.md``, its
rendering: ``tests/docs/``). The e2e test at the end runs every writer
against a real redis-server and finds every key it leaves declared, with its
declared type.
"""

from __future__ import annotations

import random
import re
import string
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from schemas.events import ID_PATTERN
from schemas.topics import SESSION_FORWARDS
from streams.core.crossing import Placement
from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.plan import Plan, Record, needs, plan_batch
from streams.gateway import handoff
from streams.gateway.rate_limit import RateLimiter
from streams.store import keys
from streams.store.changelog import ChangelogOutbox
from streams.store.forwards import ForwardOutbox
from streams.store.handoffs import HandoffStore, LockedOut, Ticket
from streams.store.keys import FAMILIES, PLACEHOLDERS, Family, RedisType, Space
from streams.store.outbox import Outbox
from streams.store.scripts import SCRIPTS, ScriptName, source
from streams.store.state import Effects, Erased, RedisState
from tests.core.test_import_boundaries import violations
from tests.support.events import added, event
from tests.support.stack import space

ROOT = Path(__file__).resolve().parents[2]

# The space the contract is written for: the default prefix, eight partitions.
SPACE = Space("cont", 8)
# The partition a per-partition builder is called with.
PARTITION = 3

# One value per placeholder, as a builder takes it.
SAMPLES: dict[str, str | int] = {
    "key": "c-1",
    "anonymous_id": "anon-7",
    "customer_id": "c-1",
    "id": "c-1",
    "bucket": 5_999_999,
    "code": "ABCD2345",
    "store": "store-9",
    "subject": "till-1",
    "address": "127.0.0.1",
    "window": "LIMITER/ingest/customer::c-1/50/1/second",
}

# The contract: the names deployments, dashboards and older processes rely on.
# A change here is a migration, not a refactor. In Space("cont", 8), Kafka's
# partitioner puts c-1 on partition 7, anon-7 on 4 and ABCD2345 on 2.
CONTRACT = {
    "session": "cont:{p7}:s:c-1",
    "alias": "cont:{p4}:a:anon-7",
    "links": "cont:{p7}:l:c-1",
    "journey": "cont:{p7}:j:c-1",
    "devices": "cont:{p4}:dv:anon-7",
    "updates": "cont:{p3}:u",
    "erasure": "cont:{p7}:x:c-1",
    "erased_ids": "cont:{p3}:xs",
    "erasure_epoch": "cont:{p3}:xe",
    "offsets": "cont:{p3}:o",
    "fingerprints": "cont:{p3}:f",
    "offset_times": "cont:{p3}:ot",
    "heartbeats": "cont:hb",
    "activity": "cont:{p3}:h:5999999",
    "multichannel": "cont:{p3}:hm:5999999",
    "kpis": "cont:{p3}:k",
    "abandonment": "cont:{p3}:ab",
    "outbox": "cont:{p3}:n",
    "changelog": "cont:{p3}:cl",
    "changelog_expiry": "cont:{p3}:ex",
    "changelog_cursor": "cont:{p3}:clc",
    "changelog_lease": "cont:{p3}:clr",
    "forwards": "cont:{p3}:fw",
    "forwards_cursor": "cont:{p3}:fwc",
    "forwards_lease": "cont:{p3}:fwr",
    "forwards_seen": "cont:{p3}:fs",
    "waiting": "cont:{p3}:w",
    "handoff": "cont:{p2}:handoff:ABCD2345",
    "handoff_seen": "cont:{p2}:handoff-seen:ABCD2345",
    "handoff_by": "cont:{p7}:handoff-by:c-1",
    "version_floor": "cont:{p7}:vf:c-1",
    "claim_failures_token": "cont:handoff-fail:token:store-9:till-1",
    "claim_failures_store": "cont:handoff-fail:store:store-9",
    "claim_failures_address": "cont:handoff-fail:addr:127.0.0.1",
    "rate_limits": "cont:rl",  # the limits library's key_prefix; it appends ":{<window>}"
}


def placeholders(family: Family) -> list[str]:
    return re.findall(r"<([a-z_]+)>", family.pattern)


def arguments(family: Family, values: dict[str, str | int]) -> list[str | int]:
    """A builder's arguments after the space: the partition first for a per-partition one."""
    given = [values[p] for p in placeholders(family)]
    return [PARTITION, *given] if family.scope == "partition" else given


def built(family: Family, space: Space = SPACE) -> str:
    """The family's builder called with the sample of each placeholder, in pattern order."""
    builder = getattr(keys, family.name)
    if family is keys.RATE_LIMITS:
        return str(builder(space))
    return str(builder(space, *arguments(family, SAMPLES)))


def substituted(family: Family, space: Space = SPACE) -> str:
    """The family's full pattern with the samples and the right partition filled in."""
    text = re.sub(r"\[[^\]]*\]", "", family.full)
    if family.scope == "key":
        own = SAMPLES[placeholders(family)[0]]
        text = text.replace("<partition>", str(space.partition(str(own))), 1)
    text = text.replace("<partition>", str(PARTITION))
    for name in placeholders(family):
        text = text.replace(f"<{name}>", str(SAMPLES[name]))
    return f"{space.prefix}:{text}"


def test_the_key_names_are_the_contracts() -> None:
    assert {f.name: built(f) for f in FAMILIES} == CONTRACT


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_builder_names_its_pattern_and_the_matcher_takes_it(family: Family) -> None:
    assert set(placeholders(family)) <= PLACEHOLDERS.keys()
    name = substituted(family)
    if family is keys.RATE_LIMITS:
        assert name == f"{built(family)}:{{{SAMPLES['window']}}}"
        assert keys.family_of(name + "/-1", SPACE) is family, "the previous window's key"
    elif family is keys.CLAIM_FAILURES_TOKEN:
        assert keys.claim_failures_token(SPACE, "store-9", None) == name, "a token of no terminal"
        assert built(family) == f"{name}:{SAMPLES['subject']}"
        assert keys.family_of(built(family), SPACE) is family
    else:
        assert built(family) == name
    assert keys.family_of(name, SPACE) is family
    assert keys.family_of(name, Space("fz12", 8)) is None, "another prefix's key is not ours"


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.scope != "global"], ids=str)
def test_a_tagged_name_carries_its_partition_and_nothing_else_is_taken(family: Family) -> None:
    name = built(family)
    tag = re.search(r"\{p([0-9]+)\}", name)
    assert tag is not None
    assert name.startswith(f"cont:{{p{tag.group(1)}}}:")
    assert int(tag.group(1)) < SPACE.partitions
    if family.scope == "key":
        # Under another partition it is misplaced: no reader would look there.
        moved = name.replace(tag.group(0), f"{{p{(int(tag.group(1)) + 1) % 8}}}", 1)
        assert keys.family_of(moved, SPACE) is None, moved
    # A partition the space does not have.
    assert keys.family_of(name.replace(tag.group(0), "{p8}", 1), SPACE) is None
    assert keys.family_of(name.replace(tag.group(0), "", 1).replace("::", ":"), SPACE) is None


def test_family_names_heads_and_patterns_are_unique() -> None:
    for attr in ("name", "pattern", "head"):
        values = [getattr(f, attr) for f in FAMILIES]
        assert len(values) == len(set(values)), attr


@pytest.mark.parametrize(
    "name",
    [
        "cont:{p3}:zz",
        "cont:s:c-1",  # no partition tag
        "cont:s:{c-1}",  # the old layout
        "cont:o",  # the old layout
        "cont:{p7}:s:c 1",
        "cont:{p7}:s:c-1}",
        "cont:{p7}:s:*",
        "cont:{p}:o",
        "cont:{px}:o",
        "cont:{p3}:h:12a",
        "cont:{p2}:handoff:ABCD234I",  # I is not Crockford
        "cont:{p3}:hb",  # a global key tagged
        "cont:handoff-fail:who:x",
        "cont:rl:{LIMITER/ingest/customer::c-1/50/1/second}/-2",
        "cont:{p3}:o:extra",
        "cont",
    ],
)
def test_the_matcher_refuses_what_is_not_declared(name: str) -> None:
    assert keys.family_of(name, SPACE) is None


def test_globs_scan_every_partition_of_a_family() -> None:
    assert keys.SESSION.glob("cont") == "cont:{p*}:s:*"
    assert keys.DEVICES.glob("cont") == "cont:{p*}:dv:*"
    assert keys.OFFSETS.glob("cont") == "cont:{p*}:o", "every partition's fixed key"
    assert keys.HEARTBEATS.glob("cont") == "cont:hb", "a global fixed key is its own pattern"


def test_placeholders_agree_with_their_sources() -> None:
    assert PLACEHOLDERS["key"].regex == ID_PATTERN
    code = re.compile(PLACEHOLDERS["code"].regex)
    assert all(code.fullmatch(handoff.new_code()) for _ in range(200))
    letters = "".join(chr(c) for c in range(ord("0"), ord("Z") + 1) if chr(c).isalnum())
    allowed = {ch for ch in letters if code.fullmatch(ch * handoff.CODE_LENGTH)}
    assert allowed == set(handoff.ALPHABET)


# --- The Lua scripts -------------------------------------------------------------------

# A reference to a prelude builder (a call, or the builder kept in a local).
LUA_BUILDER = re.compile(r"\bkey_([a-z_]+)\b")
# A quoted Lua literal.
LUA_LITERAL = re.compile(r"""(['"])([^'"\n]*)\1""")


def lua_builders(text: str) -> set[str]:
    return set(LUA_BUILDER.findall(text))


def lua_name_literals(text: str) -> list[str]:
    """Literals that spell (part of) a key name: a family's head, a tag, the prefix."""
    heads = tuple(f.head for f in FAMILIES)
    found = []
    for _, literal in LUA_LITERAL.findall(text):
        tagged = "{p" in literal or ":{" in literal
        if literal.startswith(heads) or tagged or re.match(r"cont(:|$)", literal):
            found.append(literal)
    return found


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_builds_exactly_the_names_declared_as_its_own(script: ScriptName) -> None:
    found = lua_builders(source(script))
    declared = {f.name for f in FAMILIES if script in f.lua}
    assert found - declared == set(), f"{script} builds names keys.py does not give it"
    assert declared - found == set(), f"keys.py says {script} builds names it does not"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_spells_no_name_itself_and_sets_the_layout_first(script: ScriptName) -> None:
    text = source(script)
    assert lua_name_literals(text) == [], f"{script} spells key names itself"
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("--")]
    assert code[0].startswith("layout(ARGV[1], ARGV[2])"), f"{script} must set the layout first"


def test_every_family_a_script_builds_names_that_script_among_its_users() -> None:
    for f in FAMILIES:
        assert set(f.lua) <= set(SCRIPTS), f.name
        users = set(f.writers) | set(f.readers)
        assert {f"store/lua/{s}" for s in f.lua} <= users, f.name
        if f.scope == "global":
            assert f.lua == (), f"{f.name} has no prelude builder"


def test_the_lua_checks_can_fail() -> None:
    """A builder or a literal keys.py does not declare is found (the parse is not vacuous)."""
    text = "redis.call('GET', prefix .. ':s:{' .. k .. '}'); local x = key_zz(k)"
    assert lua_builders(text) == {"zz"}
    assert lua_name_literals(text) == [":s:{"]
    assert lua_name_literals("local t = prefix .. ':{p' .. n .. '}:o'") == [":{p"]
    assert lua_name_literals("local o = P .. ':o'") == [":o"]
    assert lua_name_literals("local n = string.match(tp, ':(%d+)$')") == []
    assert lua_builders(source("commit.lua")) >= {"session", "offset_times", "devices"}


# --- The prelude against the Python builders, in a real redis-server -------------------

_ID_FIRST = string.ascii_letters + string.digits
_ID_REST = _ID_FIRST + "._:@+-"


def random_id(rng: random.Random) -> str:
    """An id of the wire alphabet, 1 to 128 characters (every murmur2 tail length)."""
    length = rng.choice([1, 2, 3, 4, 5, 7, 8, rng.randint(1, 128)])
    return rng.choice(_ID_FIRST) + "".join(rng.choice(_ID_REST) for _ in range(length - 1))


def python_names(space: Space, some_id: str, code: str, n: int, bucket: int) -> list[str]:
    """Every tagged family's Python name, in FAMILIES order, for one id, code and partition."""
    values: dict[str, str | int] = {p: some_id for p in ("key", "anonymous_id", "customer_id")}
    values |= {"id": some_id, "code": code, "bucket": bucket}
    out = []
    for f in FAMILIES:
        if f.scope == "global":
            continue
        given = [values[p] for p in placeholders(f)]
        builder = getattr(keys, f.name)
        out.append(builder(space, n, *given) if f.scope == "partition" else builder(space, *given))
    return out


def lua_calls() -> str:
    """Lua calling every tagged family's builder with ARGV's id, code, partition and bucket."""
    names = {"key": "id", "anonymous_id": "id", "customer_id": "id", "id": "id"}
    names |= {"code": "code", "bucket": "bucket"}
    calls = []
    for f in FAMILIES:
        if f.scope == "global":
            continue
        given = [names[p] for p in placeholders(f)]
        args = ["n", *given] if f.scope == "partition" else given
        calls.append(f"key_{f.name}({', '.join(args)})")
    return ",\n    ".join(calls)


PRELUDE_CHECK = """
layout(ARGV[1], ARGV[2])
local out = {}
local i = 3
while i <= #ARGV do
  local id, code, n, bucket = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  out[#out + 1] = {partition_of(id), tag(n),
    %s}
  i = i + 4
end
return out
"""


@pytest.mark.e2e
async def test_the_prelude_builds_exactly_the_python_names(client: Redis) -> None:
    script = client.register_script(keys.lua_prelude() + PRELUDE_CHECK % lua_calls())
    rng = random.Random(20261205)
    counts = [1, 2, 3, 7, 8, 12, 16, 64, 100, 1000, *(rng.randint(1, 5000) for _ in range(6))]
    checked = 0
    for partitions in counts:
        space = Space(rng.choice(["cont", "c-9", "blue.green"]), partitions)
        rows = []
        for _ in range(60):
            rows.append(
                (
                    random_id(rng),
                    handoff.new_code(),
                    rng.randrange(partitions),
                    rng.randrange(10**7),
                )
            )
        args = [space.prefix, partitions, *(v for row in rows for v in row)]
        reply = await script(keys=[keys.offsets(space, 0)], args=args)
        for (some_id, code, n, bucket), got in zip(rows, reply, strict=True):
            expected = [space.partition(some_id), space.tag(n)]
            expected += python_names(space, some_id, code, n, bucket)
            assert [int(got[0]), *(g.decode() for g in got[1:])] == expected, (some_id, space)
            checked += 1
    assert checked == len(counts) * 60


# --- The Python modules ----------------------------------------------------------------


def key_literals(text: str) -> list[str]:
    """f-string fragments that build a declared name or a tag: ``}:s:{``, ``}:xe"``,
    ``{{p``, ``"cont:``."""
    found: list[str] = []
    for f in FAMILIES:
        literal = f.head[1:].replace("{", "{{")
        tail = r"\{" if "<" in f.pattern else "[\"']"
        found += re.findall(r"\}:" + re.escape(literal) + tail, text)
    return found + re.findall(r"""['"]cont:|\{\{p""", text)


def test_python_modules_name_keys_only_through_the_key_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): hits
        for path in sorted((ROOT / "streams").rglob("*.py"))
        if path.name != "keys.py" or path.parent.name != "store"
        if (hits := key_literals(path.read_text()))
    }
    assert offenders == {}


def test_the_python_check_can_fail() -> None:
    text = 'x = f"{space.at(key)}:s:{key}"\ny = f"{t}:xe"\nz = f"{prefix}:{{p{n}}}"'
    assert key_literals(text) == ["}:s:{", '}:xe"', "{{p"]


def test_the_key_module_imports_no_io() -> None:
    """The pure core's rule (tests/core/test_import_boundaries.py) holds for it too."""
    assert violations("streams.store.keys") == []


# --- Against a real redis-server -------------------------------------------------------

# What ``TYPE`` answers for each declared type (a HyperLogLog is a string to Redis).
TYPE_REPLY = {
    RedisType.STRING: "string",
    RedisType.HASH: "hash",
    RedisType.SET: "set",
    RedisType.SORTED_SET: "zset",
    RedisType.HYPERLOGLOG: "string",
    RedisType.STREAM: "stream",
}


async def commit(state: RedisState, events: list[dict[str, object]], offset: int) -> None:
    batch = [
        Record("cart-events", 0, offset + i, b"k", orjson.dumps(e)) for i, e in enumerate(events)
    ]
    decoded = [decode(r.value) for r in batch]
    plan = plan_batch(batch, decoded, await state.load(needs(batch, decoded)))
    assert await state.commit(plan, active_at=time.time()) is None


async def planned(state: RedisState, batch: list[Record], place: Placement) -> Plan:
    """Plan and commit one partition's records as the worker does."""
    decoded = [decode(r.value) for r in batch]
    snapshot = await state.load(needs(batch, decoded, place), place.partition)
    plan = plan_batch(batch, decoded, snapshot, place=place)
    assert await state.commit(plan, time.time(), partition=place.partition) is None
    return plan


async def declared_keys(redis: Redis, prefix: str) -> dict[str, Family]:
    """Every key under ``prefix``, by family; fails on an undeclared or mistyped key."""
    out: dict[str, Family] = {}
    async for raw in redis.scan_iter(match=f"{prefix}:*", count=1000):
        name = raw.decode()
        family = keys.family_of(name, space(prefix))
        assert family is not None, f"undeclared key {name!r}"
        reply = await redis.type(name)
        kind = reply.decode() if isinstance(reply, bytes) else reply
        assert kind == TYPE_REPLY[family.type], f"{name!r} is a {kind}, not a {family.type}"
        out[name] = family
    return out


@pytest.mark.e2e
async def test_every_key_the_writers_leave_is_declared_with_its_type(client: Redis) -> None:
    prefix = "lay"
    where = space(prefix)
    state = RedisState(client, where, Effects(abandon_after=3600))
    # A guest's cart on the phone, a login on the web, the cart again on the web: a
    # session, an alias, links, a journey, a device sign-in, buckets, KPIs, timers.
    await commit(
        state, [event("cart.item_added", added("A-1"), anon="g-1", channel="mobile_app")], 0
    )
    await commit(state, [event("session.identified", customer="c-1", anon="g-1")], 1)
    await commit(state, [event("cart.item_added", added("B-2"), customer="c-1")], 2)
    await commit(state, [event("cart.item_added", added("C-3"), customer="c-2")], 3)
    outbox = Outbox(client, where, "worker-1")
    await outbox.ensure_group()
    await outbox.heartbeat(int(time.time() * 1000))
    store = HandoffStore(client, where)
    code = handoff.code_in_partition(where.partition("c-1"), where.partitions)
    assert await store.create(code, Ticket("c-1", "c-1", None), 60)
    counters = [
        store.token_counter("store-9", "till-1", 5),
        store.token_counter("store-9", None, 5),
        store.store_counter("store-9", 20),
        store.address_counter("127.0.0.1", 20),
    ]
    assert not isinstance(await store.reserve_guess(counters, 60), LockedOut)
    limiter = RateLimiter(client, where, {"ingest": "50/second"})
    assert await limiter.hit("ingest", "customer::c-1") is None
    changelog = ChangelogOutbox(client, where, where.partition("c-1"))
    assert await changelog.hold()
    assert await changelog.advance(await changelog.cursor())
    # A forward record as the commit appends it, published: its cursor, its lease.
    home = where.partition("c-1")
    forward = {"p": (home + 1) % where.partitions, "k": "c-9", "v": b"{}"}
    sent = await client.xadd(keys.forwards(where, home), forward)  # type: ignore[arg-type]
    forwards = ForwardOutbox(client, where, home)
    assert await forwards.hold()
    assert await forwards.advance(sent.decode())
    # A login whose guest lives on another partition: the customer's session waits for
    # the guest side, which applies the forward (and marks it applied).
    guest = next(g for g in (f"g-{n}" for n in range(2, 99)) if where.partition(g) != home)
    login = Record(
        "cart-events", home, 9, b"c-1",
        orjson.dumps(event("session.identified", customer="c-1", anon=guest)),
    )  # fmt: skip
    plan = await planned(state, [login], Placement(home, where.partitions))
    assert plan.pending
    assert plan.forwards
    out = plan.forwards[0]
    arrived = Record(
        SESSION_FORWARDS, out.partition, 0, out.key, out.value, forwarded=(home, "1-0")
    )
    assert (await planned(state, [arrived], Placement(out.partition, where.partitions))).forwards
    before_erasure = set((await declared_keys(client, prefix)).values())
    # An erasure of the second customer, and an abandoned cart swept into the outbox.
    done = await state.erase(Erasure("c-2", ("c-2",), int(time.time() * 1000)))
    assert isinstance(done, Erased), done
    assert await outbox.sweep(int(time.time() * 1000) + 7_200_000) >= 1
    seen = before_erasure | set((await declared_keys(client, prefix)).values())
    # Every stored family turned up (only the pub/sub channels store nothing).
    stored = {f for f in FAMILIES if f.type is not RedisType.CHANNEL}
    assert {f.name for f in stored - seen} == set()
