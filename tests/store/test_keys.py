"""The Redis key layout is declared once (``streams/store/keys.py``) and everything agrees with it.

Proves: the key names are the public contract's, byte for byte; each builder
names exactly its family's pattern, and the layout's matcher takes every key
it builds and nothing undeclared; the Lua scripts spell exactly the names the
module says they spell (parsed from the ``.lua`` files, both ways); no Python
module under ``streams/`` builds a key name itself; the key module imports no
I/O (``docs/redis-layout.md``, its rendering: ``tests/docs/``). The e2e test at
the end runs every writer against a real redis-server and finds every key it
leaves declared, with its declared type.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from schemas.events import ID_PATTERN
from streams.core.decode import decode
from streams.core.erasure import Erasure
from streams.core.plan import Record, needs, plan_batch
from streams.gateway import handoff
from streams.gateway.rate_limit import RateLimiter
from streams.store import keys
from streams.store.changelog import ChangelogOutbox
from streams.store.handoffs import HandoffStore, Ticket
from streams.store.keys import FAMILIES, PLACEHOLDERS, Family, RedisType
from streams.store.outbox import Outbox
from streams.store.scripts import SCRIPTS, source
from streams.store.state import Effects, Erased, RedisState
from tests.core.test_import_boundaries import violations
from tests.support.events import added, event
from tests.support.stack import space

ROOT = Path(__file__).resolve().parents[2]

# One value per placeholder, as a builder takes it.
SAMPLES: dict[str, str | int] = {
    "key": "c-1",
    "anonymous_id": "anon-7",
    "customer_id": "c-1",
    "id": "c-1",
    "bucket": 5_999_999,
    "code": "ABCD2345",
    "store": "store-9",
    "address": "127.0.0.1",
    "window": "LIMITER/ingest/customer::c-1/50/1/second",
}

# The contract: the names deployments, dashboards and older processes rely on.
# A change here is a migration, not a refactor.
CONTRACT = {
    "session": "cont:s:{c-1}",
    "alias": "cont:a:{anon-7}",
    "links": "cont:l:{c-1}",
    "journey": "cont:j:{c-1}",
    "devices": "cont:dv:{anon-7}",
    "updates": "cont:u:{c-1}",
    "erasure": "cont:x:{c-1}",
    "erased_ids": "cont:xs",
    "erasure_epoch": "cont:xe",
    "offsets": "cont:o",
    "fingerprints": "cont:f",
    "offset_times": "cont:ot",
    "heartbeats": "cont:hb",
    "activity": "cont:h:5999999",
    "multichannel": "cont:hm:5999999",
    "kpis": "cont:k",
    "abandonment": "cont:ab",
    "outbox": "cont:n",
    "changelog": "cont:cl",
    "changelog_expiry": "cont:ex",
    "changelog_cursor": "cont:clc",
    "changelog_lease": "cont:clr",
    "handoff": "cont:handoff:ABCD2345",
    "handoff_seen": "cont:handoff-seen:ABCD2345",
    "handoff_by": "cont:handoff-by:{c-1}",
    "version_floor": "cont:vf:{c-1}",
    "claim_failures_store": "cont:handoff-fail:store:store-9",
    "claim_failures_address": "cont:handoff-fail:addr:127.0.0.1",
    "rate_limits": "cont:rl",  # the limits library's key_prefix; it appends ":{<window>}"
}


def placeholders(family: Family) -> list[str]:
    return re.findall(r"<([a-z_]+)>", family.pattern)


def built(family: Family, prefix: str = "cont") -> str:
    """The family's builder called with the sample of each placeholder, in pattern order."""
    builder = getattr(keys, family.name)
    if family is keys.RATE_LIMITS:
        return str(builder(prefix))
    return str(builder(prefix, *(SAMPLES[p] for p in placeholders(family))))


def substituted(family: Family, prefix: str = "cont") -> str:
    """The family's pattern with the samples filled in (optional parts left out)."""
    text = re.sub(r"\[[^\]]*\]", "", family.pattern)
    for name in placeholders(family):
        text = text.replace(f"<{name}>", str(SAMPLES[name]))
    return f"{prefix}:{text}"


def test_the_key_names_are_the_contracts() -> None:
    assert {f.name: built(f) for f in FAMILIES} == CONTRACT


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_builder_names_its_pattern_and_the_matcher_takes_it(family: Family) -> None:
    assert set(placeholders(family)) <= PLACEHOLDERS.keys()
    name = substituted(family)
    if family is keys.RATE_LIMITS:
        assert name == f"{built(family)}:{{{SAMPLES['window']}}}"
        assert keys.family_of(name + "/-1", "cont") is family, "the previous window's key"
    else:
        assert built(family) == name
    assert keys.family_of(name, "cont") is family
    assert keys.family_of(name, "fz12") is None, "another prefix's key is not this prefix's"


def test_family_names_heads_and_patterns_are_unique() -> None:
    for attr in ("name", "pattern", "head"):
        values = [getattr(f, attr) for f in FAMILIES]
        assert len(values) == len(set(values)), attr


@pytest.mark.parametrize(
    "name",
    [
        "cont:zz",
        "cont:s:c-1",  # no hash tag
        "cont:s:{c 1}",
        "cont:s:{c-1}}",
        "cont:s:{*}",
        "cont:h:12a",
        "cont:handoff:ABCD234I",  # I is not Crockford
        "cont:handoff-fail:who:x",
        "cont:rl:{LIMITER/ingest/customer::c-1/50/1/second}/-2",
        "cont:o:extra",
        "cont",
    ],
)
def test_the_matcher_refuses_what_is_not_declared(name: str) -> None:
    assert keys.family_of(name, "cont") is None


def test_globs_are_the_scan_patterns_the_code_used() -> None:
    assert keys.SESSION.glob("cont") == "cont:s:*"
    assert keys.DEVICES.glob("cont") == "cont:dv:*"
    assert keys.UPDATES.glob("cont") == "cont:u:*"
    assert keys.OFFSETS.glob("cont") == "cont:o", "a fixed key is its own pattern"


def test_placeholders_agree_with_their_sources() -> None:
    assert PLACEHOLDERS["key"].regex == ID_PATTERN
    code = re.compile(PLACEHOLDERS["code"].regex)
    assert all(code.fullmatch(handoff.new_code()) for _ in range(200))
    letters = "".join(chr(c) for c in range(ord("0"), ord("Z") + 1) if chr(c).isalnum())
    allowed = {ch for ch in letters if code.fullmatch(ch * handoff.CODE_LENGTH)}
    assert allowed == set(handoff.ALPHABET)


# --- The Lua scripts -------------------------------------------------------------------

# A quoted literal starting with ':' is a key suffix after ``prefix ..``.
LUA_LITERAL = re.compile(r"""(['"])(:[^'"]*)\1""")


def lua_heads(script: str) -> set[str]:
    return {m.group(2) for m in LUA_LITERAL.finditer(source(script))}


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_spells_exactly_the_names_declared_as_its_own(script: str) -> None:
    found = lua_heads(script)
    declared = {f.head for f in FAMILIES if script in f.lua}
    assert found - declared == set(), f"{script} builds names keys.py does not give it"
    assert declared - found == set(), f"keys.py says {script} builds names it does not"


def test_every_family_a_script_spells_names_that_script_among_its_users() -> None:
    for f in FAMILIES:
        assert set(f.lua) <= set(SCRIPTS), f.name
        users = set(f.writers) | set(f.readers)
        assert {f"store/lua/{s}" for s in f.lua} <= users, f.name


def test_the_lua_check_can_fail() -> None:
    """A literal keys.py does not declare is found (the parse is not vacuous)."""
    text = "redis.call('GET', prefix .. ':zz:{' .. k .. '}')"
    assert {m.group(2) for m in LUA_LITERAL.finditer(text)} == {":zz:{"}
    assert lua_heads("commit.lua") >= {":s:{", ":ot", ":dv:{"}


def test_no_script_names_a_fixed_prefix() -> None:
    for script in SCRIPTS:
        assert not re.search(r"""['"]cont[:'"]""", source(script)), script


# --- The Python modules ----------------------------------------------------------------


def key_literals(text: str) -> list[str]:
    """f-string fragments that build a declared name: ``}:s:{{``, ``}:xe"``, ``"cont:``."""
    found: list[str] = []
    for f in FAMILIES:
        literal = f.head[1:].replace("{", "{{")
        tail = "" if "<" in f.pattern else "[\"']"
        found += re.findall(r"\}:" + re.escape(literal) + tail, text)
    return found + re.findall(r"""['"]cont:""", text)


def test_python_modules_name_keys_only_through_the_key_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): hits
        for path in sorted((ROOT / "streams").rglob("*.py"))
        if path.name != "keys.py" or path.parent.name != "store"
        if (hits := key_literals(path.read_text()))
    }
    assert offenders == {}


def test_the_python_check_can_fail() -> None:
    assert key_literals('x = f"{prefix}:s:{{{key}}}"\ny = f"{p}:xe"') == ["}:s:{{", '}:xe"']


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


async def declared_keys(redis: Redis, prefix: str) -> dict[str, Family]:
    """Every key under ``prefix``, by family; fails on an undeclared or mistyped key."""
    out: dict[str, Family] = {}
    async for raw in redis.scan_iter(match=f"{prefix}:*", count=1000):
        name = raw.decode()
        family = keys.family_of(name, prefix)
        assert family is not None, f"undeclared key {name!r}"
        kind = (await redis.type(name)).decode()
        assert kind == TYPE_REPLY[family.type], f"{name!r} is a {kind}, not a {family.type}"
        out[name] = family
    return out


@pytest.mark.e2e
async def test_every_key_the_writers_leave_is_declared_with_its_type(client: Redis) -> None:
    prefix = "lay"
    state = RedisState(client, space(prefix), Effects(abandon_after=3600))
    # A guest's cart on the phone, a login on the web, the cart again on the web: a
    # session, an alias, links, a journey, a device sign-in, buckets, KPIs, timers.
    await commit(
        state, [event("cart.item_added", added("A-1"), anon="g-1", channel="mobile_app")], 0
    )
    await commit(state, [event("session.identified", customer="c-1", anon="g-1")], 1)
    await commit(state, [event("cart.item_added", added("B-2"), customer="c-1")], 2)
    await commit(state, [event("cart.item_added", added("C-3"), customer="c-2")], 3)
    outbox = Outbox(client, prefix, "worker-1")
    await outbox.ensure_group()
    await outbox.heartbeat(int(time.time() * 1000))
    store = HandoffStore(client, prefix)
    assert await store.create("ABCD2345", Ticket("c-1", "c-1", None), 60)
    await store.record_failure("store-9", "127.0.0.1", 60)
    limiter = RateLimiter(client, prefix, {"ingest": "50/second"})
    assert await limiter.hit("ingest", "customer::c-1") is None
    changelog = ChangelogOutbox(client, prefix)
    assert await changelog.hold()
    assert await changelog.advance(await changelog.cursor())
    before_erasure = set((await declared_keys(client, prefix)).values())
    # An erasure of the second customer, and an abandoned cart swept into the outbox.
    done = await state.erase(Erasure("c-2", ("c-2",), int(time.time() * 1000)))
    assert isinstance(done, Erased), done
    assert await outbox.sweep(int(time.time() * 1000) + 7_200_000) >= 1
    seen = before_erasure | set((await declared_keys(client, prefix)).values())
    # Every stored family turned up (only the pub/sub channels store nothing).
    stored = {f for f in FAMILIES if f.type is not RedisType.CHANNEL}
    assert {f.name for f in stored - seen} == set()
