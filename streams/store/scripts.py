"""The Lua scripts: the one loader, and the commit script's ARGV declared once.

Every script ships in ``streams/store/lua/`` (package data) and is registered
through :func:`register`, so there is one place that knows where scripts live
and which exist (:data:`SCRIPTS`, checked against the folder by a test).

``commit.lua`` takes a fixed head and then twenty-two counted sections, each a
row count and that many rows of a fixed width. The script and
``RedisState.commit`` must agree on their order and widths, or the script
reads one section's values as the next one's. :data:`COMMIT_SECTIONS` is that
agreement: :func:`commit_args` builds ARGV from rows given *by section name*
and refuses a missing, unknown or misshapen section, and a test checks the
list in the script's header comment and the script's ``section(width)`` calls
against it. The header is checked rather than generated because it is the
only documentation a reader of the Lua sees, kept next to the code it
describes; and the test checks the ``section(width)`` calls too, which is what
actually decides how the script parses ARGV and which a generated header would
not have guarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal, get_args

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from streams.store.keys import lua_prelude

ScriptName = Literal[
    "ack.lua",
    "clack.lua",
    "clsweep.lua",
    "commit.lua",
    "erase.lua",
    "fwack.lua",
    "handoff.lua",
    "load.lua",
    "reset.lua",
    "sweep.lua",
]
SCRIPTS: tuple[ScriptName, ...] = get_args(ScriptName)

# What a script argument may be (redis-py encodes each to bytes).
Arg = str | bytes | int | float
Row = tuple[Arg, ...]


def source(name: ScriptName) -> str:
    """The text of one shipped script, as written (without the layout prelude)."""
    return resources.files("streams.store").joinpath("lua", name).read_text(encoding="utf-8")


# First call of every script: two keys of KEYS[1]'s slot that never exist. On a slot
# being moved (MIGRATING on its old primary, IMPORTING on the new one, even for a
# client sent there by ASK) Redis refuses a command over missing keys of it, inside a
# script too ("Script attempted to access a non local key"). The scripts reach most
# of their keys by name inside Lua, not through KEYS, so without this the refusal
# could come halfway through: after some writes (a script is never rolled back), or
# not at all on the importing side, which would read keys not moved yet as absent.
# With it a script either runs on a settled slot from start to end (a slot cannot
# start moving during a script) or stops before it reads or writes anything with
# TRYAGAIN, which callers wait out (``client.transient``) until the move is over. A
# script touching another slot's key by mistake still gets the plain refusal, no
# retry. On a settled slot it is one read of two absent keys; a single primary, whose
# slots never move, runs the scripts without it.
SETTLED_SLOT_PROBE = """if #KEYS > 0 then
  local probe = redis.pcall('EXISTS', KEYS[1] .. ':settled?a', KEYS[1] .. ':settled?b')
  if type(probe) == 'table' and probe.err then
    return redis.error_reply('TRYAGAIN the slot of ' .. KEYS[1] .. ' is being moved')
  end
end
"""


def loaded(name: ScriptName, cluster: bool = True) -> str:
    """What Redis runs: the key layout's prelude (``keys.lua_prelude``), the settled-slot
    probe (:data:`SETTLED_SLOT_PROBE`; on a Redis Cluster only, where slots move),
    then the script."""
    return lua_prelude() + (SETTLED_SLOT_PROBE if cluster else "") + source(name)


def register(redis: Redis | RedisCluster, name: ScriptName) -> AsyncScript:
    """Register a shipped script with ``redis`` (run by EVALSHA, loaded on first use).

    Call it with ``keys=[...]`` naming at least one key of the slot it works in: a
    cluster client routes the script by its keys.
    """
    return redis.register_script(loaded(name, cluster=isinstance(redis, RedisCluster)))


@dataclass(frozen=True)
class Section:
    """One counted section of ``commit.lua``'s ARGV: a name and its row's columns."""

    name: str
    columns: tuple[str, ...]
    note: str = ""

    @property
    def width(self) -> int:
        """Values per row."""
        return len(self.columns)


# ARGV[1..4], before the sections.
COMMIT_HEAD: tuple[str, ...] = ("prefix", "partitions", "partition", "erasure_epoch", "local")
# In the order commit.lua reads them (its header comment lists the same).
COMMIT_SECTIONS: tuple[Section, ...] = (
    Section("expected_versions", ("key", "version")),
    Section("expected_aliases", ("anon", "target"), "target '' if none"),
    Section("expected_offsets", ("tp", "offset"), "offset -1 if none"),
    Section("expiry", ("grace_ms", "floor_ms"), "0 or 1 row; none sets no key TTLs"),
    Section("expired", ("key",), "sessions ended, and guests merged into them"),
    Section("writes", ("key", "version", "session", "notice")),
    Section("deletes", ("key", "merged_into", "notice")),
    Section("alias_writes", ("anon", "target")),
    Section("alias_deletes", ("anon",)),
    Section("links", ("anon", "customer"), "every sign-in's, the final aliases' included"),
    Section("offset_writes", ("tp", "offset", "fingerprint"), "of the record at that offset"),
    Section("activity", ("bucket", "ttl_seconds"), "0 or 1 row"),
    Section("multichannel", ("bucket", "ttl_seconds", "member")),
    Section("kpis", ("field", "increment")),
    Section("journey_entries", ("key", "score", "member")),
    Section("journey_bounds", ("max_entries", "min_score", "ttl_seconds"), "0 or 1 row"),
    Section("timers", ("key", "deadline_ms"), "deadline '-' cancels"),
    Section("notifications", ("json",)),
    Section("device_signins", ("anon", "customer", "ms")),
    Section("floors", ("key", "version")),
    Section("lifetimes", ("key", "end_ms", "ttl_ms"), "end_ms 0 if no event yet"),
    Section("device_lifetimes", ("anon", "end_ms")),
    Section("forwards", ("partition", "key", "value"), "to other partitions, in order"),
    Section("waiting", ("key", "pending"), "pending '' stops the wait"),
    Section("forward_marks", ("origin", "seq"), "the last forward applied per origin"),
    Section("device_renames", ("anon", "customer", "name"), "an erased customer's sign-in"),
    Section("changelog", ("offsets",), "0 or 1 row: the batch's applied offsets as JSON"),
)
_BY_NAME = {s.name: s for s in COMMIT_SECTIONS}


def commit_args(head: Sequence[Arg], rows: Mapping[str, Sequence[Row]]) -> list[Arg]:
    """ARGV of ``commit.lua``: ``head``, then every section of ``rows`` in declared order.

    ``rows`` must name every section of :data:`COMMIT_SECTIONS` and nothing
    else, each row as wide as its section: a ``ValueError`` otherwise, since a
    misplaced value would be read by the script as part of another section.
    """
    if len(head) != len(COMMIT_HEAD):
        raise ValueError(f"commit.lua takes {len(COMMIT_HEAD)} head values, got {len(head)}")
    if rows.keys() != _BY_NAME.keys():
        missing = sorted(_BY_NAME.keys() - rows.keys())
        unknown = sorted(rows.keys() - _BY_NAME.keys())
        raise ValueError(f"commit sections: missing {missing}, unknown {unknown}")
    args: list[Arg] = list(head)
    for section in COMMIT_SECTIONS:
        section_rows = rows[section.name]
        args.append(len(section_rows))
        for row in section_rows:
            if len(row) != section.width:
                raise ValueError(f"a {section.name} row has {len(row)} values, not {section.width}")
            args.extend(row)
    return args
