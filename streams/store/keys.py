"""Every Redis key Continuity uses, declared once: pattern, type, writers, readers, lifetime.

Key names are a public contract: deployments and operators rely on them, the
gateway fuzz test checks them, and a worker and a gateway of different
versions share one Redis. So each family is written down here exactly once
(:data:`FAMILIES`) and every Python module builds names with the typed
functions below (``keys.session(space, key)``) instead of f-strings.
``docs/redis-layout.md`` is generated from :data:`FAMILIES` (``make docs``,
``streams/docs_pages.py``) and a test fails when the page is stale.

**The partition tag.** Every key a commit touches carries, as its Redis Cluster
hash tag, the Kafka partition its id lands on: ``cont:{p17}:s:<key>``. The
partition is Kafka's default partitioner's (``streams/core/placement.py``), so
partition 17 of every co-partitioned source topic, its applied offsets, its
outbox, its changelog and every session keyed to it share one slot, and a
commit of that partition is one single-slot script (Kafka Streams' task
owning its partition's stores, in Redis). A :class:`Space` is the prefix plus
the partition count (``CONTINUITY_TOPIC_PARTITIONS``, checked against the
topics at start): the same id must land in the same slot for every process.
Families are per key (tagged with their id's partition), per partition
(tagged with the partition itself), or global (no tag: gateway-only counters
no script touches with others).

The Lua scripts (``streams/store/lua/``) cannot import Python: they are given
a prelude generated from this module (:func:`lua_prelude`), with the same
partitioner and one ``key_<family>`` builder per family, so a script spells no
name itself. A test runs those builders in a real Redis against the Python
ones, and checks which builders each script calls against :attr:`Family.lua`.

Why this module lives in ``streams/store`` and not in ``streams/core``: a key
name is a storage fact (what Redis calls a thing), and the pure core has no
reason to know one. ``core/activity.py`` answers with bucket *numbers*, and
``core/kpi_report.py`` only computes the report; their callers at the edge
name the keys here. This module itself imports no I/O (plain string building
and the pure constants it documents), so anything may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Literal

from schemas.events import ID_PATTERN
from streams.core.activity import BUCKET_SECONDS, BUCKET_TTL_SECONDS
from streams.core.journey import DEFAULT_JOURNEY
from streams.core.placement import partition_of

# The prefix the page renders keys with (``CONTINUITY_REDIS_PREFIX``'s default).
DEFAULT_PREFIX = "cont"


class RedisType(StrEnum):
    """What a key holds, as the page names it."""

    STRING = "string"
    HASH = "hash"
    SET = "set"
    SORTED_SET = "sorted set"
    HYPERLOGLOG = "HyperLogLog"
    STREAM = "stream"
    CHANNEL = "sharded pub/sub channel"


@dataclass(frozen=True)
class Placeholder:
    """One ``<name>`` part of a key pattern: what it stands for and what it may be."""

    name: str
    regex: str
    meaning: str


# Ids are the wire contract's (``schemas.events.Id``), whose alphabet keeps ``}``,
# ``*`` and whitespace out of every key. Handoff codes are Crockford base32
# (``streams/gateway/handoff.py``; a test checks the two agree).
_CODE = r"[0-9A-HJKMNP-TV-Z]{8}"
PLACEHOLDERS: dict[str, Placeholder] = {
    p.name: p
    for p in (
        Placeholder("key", ID_PATTERN, "a session key: a customer id, or a guest's anonymous id"),
        Placeholder("anonymous_id", ID_PATTERN, "a guest's (a device's) anonymous id"),
        Placeholder("customer_id", ID_PATTERN, "a customer id"),
        Placeholder("id", ID_PATTERN, "a customer or guest id"),
        Placeholder(
            "partition",
            r"[0-9]+",
            "the Kafka partition: of the key's id (murmur2, as the default producer places "
            "it), or the partition itself for a per-partition key",
        ),
        Placeholder("bucket", r"[0-9]+", f"a time bucket: Unix seconds // {BUCKET_SECONDS}"),
        Placeholder("code", _CODE, "a handoff code, 8 characters of Crockford base32"),
        Placeholder("store", ID_PATTERN, "the store id of a POS token"),
        Placeholder("subject", ID_PATTERN, "the `sub` of a POS token (its terminal)"),
        Placeholder(
            "address",
            r"[0-9A-Fa-f.:]+|unknown",
            "the client's IP address, as a trusted proxy names it (`CONTINUITY_TRUSTED_PROXIES`)",
        ),
        Placeholder(
            "window",
            rf"LIMITER/[a-z-]+/[a-z]+:(?:{ID_PATTERN})?:(?:{ID_PATTERN})?/[0-9]+/[0-9]+/[a-z]+",
            "the `limits` library's window: `LIMITER/<limit>/<role>:<store>:<subject>"
            "/<amount>/<multiples>/<granularity>`",
        ),
    )
}

# Modules (paths under ``streams/``) that touch keys, as the page names them.
_COMMIT = "store/lua/commit.lua"
_LOAD = "store/lua/load.lua"
_ERASE = "store/lua/erase.lua"
_RESET = "store/lua/reset.lua"
_SWEEP = "store/lua/sweep.lua"
_ACK = "store/lua/ack.lua"
_CLSWEEP = "store/lua/clsweep.lua"
_CLACK = "store/lua/clack.lua"
_CHANGELOG = "store/changelog.py"
_FWACK = "store/lua/fwack.lua"
_FORWARDS = "store/forwards.py"
_STATE = "store/state.py"
_OUTBOX = "store/outbox.py"
_HANDOFFS = "store/handoffs.py"
_ISSUE = "store/lua/handoff.lua"
_WIPE = "ops/rebuild.py (wipe)"
# A session's key TTL (streams/core/expiry.py), as the page says it.
_ENDS = (
    "expires `CONTINUITY_EXPIRY_GRACE` (default 7 days) after its session ends: idle "
    "`CONTINUITY_GUEST_TTL` or `CONTINUITY_SESSION_TTL` on event time, or the commit if later"
)

_PATTERN_PART = re.compile(r"(<[a-z_]+>|\[|\])")
Scope = Literal["key", "partition", "global"]
_TAG = "{p<partition>}:"


@dataclass(frozen=True)
class Space:
    """Where one deployment's keys live: the prefix, and the partition count placing them.

    Every process sharing a Redis must use the same two values: a different
    partition count puts the same id in another slot.
    """

    prefix: str
    partitions: int

    def partition(self, some_id: str) -> int:
        """The partition ``some_id``'s keys are tagged with (its Kafka partition)."""
        return partition_of(some_id, self.partitions)

    def tag(self, partition: int) -> str:
        """The name head of one partition's keys: ``cont:{p3}``."""
        return f"{self.prefix}:{{p{partition}}}"

    def at(self, some_id: str) -> str:
        """The name head of ``some_id``'s keys."""
        return self.tag(self.partition(some_id))

    def all_partitions(self) -> range:
        """Every partition number, for readers that combine per-partition keys."""
        return range(self.partitions)


@dataclass(frozen=True)
class Family:
    """One kind of Redis key: ``pattern`` follows ``<prefix>:`` and the partition tag.

    ``name`` is also the name of its builder function below. In a pattern,
    ``<name>`` is a :data:`PLACEHOLDERS` entry and ``[...]`` an optional part.
    ``scope`` says how it is tagged: ``key`` (the partition of its first
    placeholder's id), ``partition`` (one per partition) or ``global`` (untagged).
    ``lua`` names the scripts that build this name (checked against them by a test).
    """

    name: str
    pattern: str
    type: RedisType
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    lifetime: str
    meaning: str
    lua: tuple[str, ...] = ()
    scope: Scope = "key"

    @property
    def full(self) -> str:
        """The pattern after ``<prefix>:``, tag included: ``{p<partition>}:s:<key>``."""
        return self.pattern if self.scope == "global" else _TAG + self.pattern

    @property
    def head(self) -> str:
        """The literal part of the pattern before its first placeholder: ``:s:``."""
        return ":" + re.split(r"[<\[]", self.pattern, maxsplit=1)[0]

    def glob(self, prefix: str) -> str:
        """A SCAN pattern matching every key of the family under ``prefix``."""
        if self.scope == "global":
            return (
                f"{prefix}:{self.pattern}" if "<" not in self.pattern else f"{prefix}{self.head}*"
            )
        tail = self.pattern if "<" not in self.pattern else self.head[1:] + "*"
        return f"{prefix}:{{p*}}:{tail}"

    @property
    def regex(self) -> str:
        """A regular expression for the part after ``<prefix>:`` (unanchored)."""
        out = []
        for part in _PATTERN_PART.split(self.full):
            if part.startswith("<"):
                out.append(f"(?:{PLACEHOLDERS[part[1:-1]].regex})")
            elif part == "[":
                out.append("(?:")
            elif part == "]":
                out.append(")?")
            else:
                out.append(re.escape(part))
        return "".join(out)

    def shown(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The pattern as the page shows it: ``cont:{p<partition>}:s:<key>``."""
        return f"{prefix}:{self.full}"


SESSION = Family(
    "session",
    "s:<key>",
    RedisType.HASH,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(
        _LOAD,
        _SWEEP,
        _ERASE,
        _STATE,
        "gateway/sessions.py",
        "gateway/routes/journey.py",
        _CLSWEEP,
    ),
    lifetime=f"{_ENDS}; deleted when its guest merges into a customer, by an erasure, by a wipe",
    meaning="`v` = version, `d` = session JSON, zlib-compressed unless "
    "`CONTINUITY_SESSION_COMPRESSION=false` (readers take both: `core/session_codec.py`)",
    lua=("clsweep.lua", "commit.lua", "erase.lua", "load.lua", "sweep.lua"),
)

ALIAS = Family(
    "alias",
    "a:<anonymous_id>",
    RedisType.STRING,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_LOAD, _ERASE, _STATE, "gateway/sessions.py", _CLSWEEP),
    lifetime="expires with its target's session; deleted when that session ends, by an "
    "unmerge, by an erasure naming its target, by a wipe",
    meaning="the customer a merged guest now points at",
    lua=("clsweep.lua", "commit.lua", "erase.lua", "load.lua"),
)

LINKS = Family(
    "links",
    "l:<customer_id>",
    RedisType.SET,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_COMMIT, _ERASE, _STATE, _LOAD),
    lifetime="expires with the customer's session; deleted when that session ends, by an "
    "erasure, by a wipe",
    meaning="guest ids signed in to the customer's session, their alias still pointing "
    "at it or moved on since (what an erasure must find)",
    lua=("commit.lua", "erase.lua", "load.lua"),
)

JOURNEY = Family(
    "journey",
    "j:<key>",
    RedisType.SORTED_SET,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_COMMIT, "gateway/routes/journey.py", _LOAD),
    lifetime=f"expires `CONTINUITY_JOURNEY_MAX_AGE` s (default "
    f"{DEFAULT_JOURNEY.max_age_seconds // 86400} days) after its last write, or with its "
    "session if sooner; deleted when the session ends; at most "
    f"`CONTINUITY_JOURNEY_MAX_ENTRIES` (default {DEFAULT_JOURNEY.max_entries}) entries, "
    f"none older than `CONTINUITY_JOURNEY_MAX_AGE` (default "
    f"{DEFAULT_JOURNEY.max_age_seconds // 86400} days)",
    meaning="the journey: one JSON entry per applied event, scored by `occurred_at` ms "
    "(`core/journey.py`); a merged guest's entries move into the customer's",
    lua=("commit.lua", "erase.lua", "load.lua"),
)

DEVICES = Family(
    "devices",
    "dv:<anonymous_id>",
    RedisType.SORTED_SET,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_LOAD, _ERASE, _CLSWEEP),
    lifetime="expires `CONTINUITY_EXPIRY_GRACE` after the newest sign-in stops counting "
    "(`CONTINUITY_SHARED_DEVICE_WINDOW` after it, event time, or the commit if later); the "
    "newest 50 members kept; deleted by a wipe",
    meaning="customers signed in on a device, by their newest sign-in (ms, event time): "
    "the shared-device guard (`core/shared_device.py`); an erased customer's become "
    "`erased:<ms>`",
    lua=("clsweep.lua", "commit.lua", "erase.lua", "load.lua"),
)

UPDATES = Family(
    "updates",
    "u",
    RedisType.CHANNEL,
    writers=(_COMMIT, _ERASE),
    readers=("gateway/fanout.py", "dev/live.py"),
    lifetime="sharded pub/sub (`SPUBLISH`): nothing is stored",
    meaning='`{"key", "version", "t"}` after each committed version of a key of the partition '
    "(`t`: the Kafka timestamp in ms of the oldest record the commit applied to the key, "
    "`streams/core/notice.py`), then a line break and the session's stored value (`d`) at "
    'that version, which streams are served from without a read; `{"key", "merged_into"}` '
    'when a guest merges; `{"key", "erased": true}` after an erasure. Gateways `SSUBSCRIBE` '
    "per partition, so a notice stays on its shard",
    lua=("commit.lua", "erase.lua"),
    scope="partition",
)

ERASURE = Family(
    "erasure",
    "x:<id>",
    RedisType.STRING,
    writers=(_ERASE, _RESET, _STATE),
    readers=(_LOAD, _RESET, _STATE),
    lifetime="no TTL; kept by a wipe, so a re-fold cannot restore erased state",
    meaning="the erasure covering this id: log ends per partition, version floors "
    "(`core/erasure.py`; Operations: Right to erasure)",
    lua=("erase.lua", "load.lua", "reset.lua"),
)

ERASED_IDS = Family(
    "erased_ids",
    "xs",
    RedisType.SET,
    writers=(_ERASE, _STATE),
    readers=(_RESET,),
    lifetime="no TTL; kept by a wipe",
    meaning="every id with an erasure (a log reset drops that partition from each)",
    lua=("erase.lua", "reset.lua"),
    scope="partition",
)

ERASURE_EPOCH = Family(
    "erasure_epoch",
    "xe",
    RedisType.STRING,
    writers=(_ERASE, _RESET, _STATE),
    readers=(_COMMIT, _LOAD),
    lifetime="no TTL; kept by a wipe",
    meaning="erasures and log resets so far (an integer): a commit planned before one "
    "is refused and re-planned",
    lua=("commit.lua", "erase.lua", "load.lua", "reset.lua"),
    scope="partition",
)

OFFSETS = Family(
    "offsets",
    "o",
    RedisType.HASH,
    writers=(_COMMIT, _RESET, _WIPE),
    readers=(
        _LOAD,
        _STATE,
        "gateway/sessions.py",
        "gateway/freshness.py",
        "worker/gauges.py",
        "cli/rebuild.py",
    ),
    lifetime="no TTL; deleted by a wipe",
    meaning="`<topic>:<partition>` -> last applied offset of partition `<partition>` of "
    "each co-partitioned topic (belongs to the state, not to a consumer group)",
    lua=("commit.lua", "load.lua", "reset.lua"),
    scope="partition",
)

FINGERPRINTS = Family(
    "fingerprints",
    "f",
    RedisType.HASH,
    writers=(_COMMIT, _RESET, _WIPE),
    readers=(_STATE,),
    lifetime="no TTL; deleted by a wipe",
    meaning="`<topic>:<partition>` -> fingerprint of the record at that offset (broker "
    "log reset detection, `core/log_reset.py`)",
    lua=("commit.lua", "reset.lua"),
    scope="partition",
)

OFFSET_TIMES = Family(
    "offset_times",
    "ot",
    RedisType.HASH,
    writers=(_COMMIT, _WIPE),
    readers=("gateway/freshness.py",),
    lifetime="no TTL; deleted by a wipe",
    meaning="`<topic>:<partition>` -> when a batch was last applied there (ms, Redis's "
    "clock): the gateway's `X-Continuity-Applied-At`",
    lua=("commit.lua",),
    scope="partition",
)

HEARTBEATS = Family(
    "heartbeats",
    "hb",
    RedisType.SORTED_SET,
    writers=(_OUTBOX,),
    readers=("gateway/freshness.py",),
    lifetime="no TTL; a member silent for an hour is removed at the next heartbeat",
    meaning="worker -> its relay's last round (ms): whether any worker is folding "
    "(the gateway's `X-Continuity-Workers`)",
    scope="global",
)

ACTIVITY = Family(
    "activity",
    "h:<bucket>",
    RedisType.HYPERLOGLOG,
    writers=(_COMMIT,),
    readers=("worker/gauges.py", "gateway/kpis.py"),
    lifetime=f"expires {BUCKET_TTL_SECONDS // 60} min after its last write",
    meaning=f"session keys committed in one {BUCKET_SECONDS // 60}-minute bucket "
    "(`core/activity.py`; feeds `continuity_sessions_active`, the sum of the "
    "partitions' counts)",
    lua=("commit.lua",),
    scope="partition",
)

MULTICHANNEL = Family(
    "multichannel",
    "hm:<bucket>",
    RedisType.HYPERLOGLOG,
    writers=(_COMMIT,),
    readers=("gateway/kpis.py",),
    lifetime=f"expires {BUCKET_TTL_SECONDS // 60} min after its last write",
    meaning="sessions on two or more channels committed in one bucket (the multichannel share)",
    lua=("commit.lua",),
    scope="partition",
)

KPIS = Family(
    "kpis",
    "k",
    RedisType.HASH,
    writers=(_COMMIT, _ACK, _WIPE),
    readers=("gateway/kpis.py",),
    lifetime="no TTL; a wipe deletes the fields a re-fold recounts (all but `abandoned*`)",
    meaning="KPI counters (`core/kpi_delta.py`), each fact exactly once: incremented by "
    "commits, abandonments by the relay's acknowledgement",
    lua=("ack.lua", "commit.lua"),
    scope="partition",
)

ABANDONMENT = Family(
    "abandonment",
    "ab",
    RedisType.SORTED_SET,
    writers=(_COMMIT, _SWEEP, _ERASE, _WIPE),
    readers=(_SWEEP,),
    lifetime="no TTL; a member leaves when its cart changes, is swept, erased or wiped",
    meaning="abandonment deadlines (Unix ms) of carts with items, by session key",
    lua=("commit.lua", "erase.lua", "sweep.lua"),
    scope="partition",
)

OUTBOX = Family(
    "outbox",
    "n",
    RedisType.STREAM,
    writers=(_COMMIT, _SWEEP, _ACK),
    readers=(_OUTBOX, _ACK),
    lifetime="an entry is deleted when acknowledged (after Kafka accepted it)",
    meaning="the notification outbox (`core/notifications.py`), read by the workers' "
    "relays as consumer group `relay`",
    lua=("ack.lua", "commit.lua", "sweep.lua"),
    scope="partition",
)

CHANGELOG = Family(
    "changelog",
    "cl",
    RedisType.STREAM,
    writers=(_COMMIT, _ERASE, _RESET, _CLSWEEP, _CLACK),
    readers=(_CHANGELOG,),
    lifetime="an entry is trimmed once the changelog relay published it",
    meaning="the session changelog's outbox (`core/changelog.py`): per commit, the batch's "
    "applied offsets (`o`), the last forward applied per origin (`m`), the last forward it "
    "wrote (`f`: the entry waits until the forward relay published it) and every touched "
    "key's state (its wait for a merge included); read in order by the one relay holding "
    "the lease",
    lua=("clack.lua", "clsweep.lua", "commit.lua", "erase.lua", "reset.lua"),
    scope="partition",
)

CHANGELOG_EXPIRY = Family(
    "changelog_expiry",
    "ex",
    RedisType.SORTED_SET,
    writers=(_COMMIT, _ERASE, _CLSWEEP, _CHANGELOG),
    readers=(_CLSWEEP,),
    lifetime="no TTL; a member leaves when its tombstone is in the changelog outbox",
    meaning="when Redis forgets each key (Unix ms): the changelog relay publishes its "
    "tombstone then",
    lua=("clsweep.lua", "commit.lua", "erase.lua"),
    scope="partition",
)

CHANGELOG_CURSOR = Family(
    "changelog_cursor",
    "clc",
    RedisType.STRING,
    writers=(_CLACK, _CHANGELOG),
    readers=(_CHANGELOG,),
    lifetime="no TTL",
    meaning="the changelog relay's progress: the last entry published and the applied "
    "offsets, fingerprints and last forward applied per origin as of it (JSON)",
    lua=("clack.lua",),
    scope="partition",
)

CHANGELOG_LEASE = Family(
    "changelog_lease",
    "clr",
    RedisType.STRING,
    writers=(_CHANGELOG,),
    readers=(_CLACK, _CHANGELOG),
    lifetime="the lease time; renewed by its holder every round",
    meaning="which worker's relay publishes the changelog, as `<host>-<pid>:<random>` (a "
    "redis-py lock token): one at a time keeps the topic in commit order",
    lua=("clack.lua",),
    scope="partition",
)

FORWARDS = Family(
    "forwards",
    "fw",
    RedisType.STREAM,
    writers=(_COMMIT, _FWACK, _WIPE),
    readers=(_FORWARDS,),
    lifetime="an entry is trimmed once the forward relay published it",
    meaning="forward records to other partitions (a login merging a guest into a customer "
    "on another partition), appended by the commit in the same step as the partition's "
    "state: `p` = destination partition, `k` = record key, `v` = record value; published "
    "in order to `session-forwards` by the one relay holding the lease",
    lua=("fwack.lua", "commit.lua"),
    scope="partition",
)

FORWARDS_SEEN = Family(
    "forwards_seen",
    "fs",
    RedisType.HASH,
    writers=(_COMMIT, _FORWARDS, _WIPE),
    readers=(_LOAD,),
    lifetime="no TTL",
    meaning="per origin partition, the id of the last forward record from it applied here "
    "(a relay's re-sends carry ids at or below it): origin -> `<ms>-<n>`",
    lua=("commit.lua", "load.lua"),
    scope="partition",
)

WAITING = Family(
    "waiting",
    "w",
    RedisType.HASH,
    writers=(_COMMIT, _WIPE),
    readers=(_LOAD,),
    lifetime="no TTL; a field goes when its merge lands",
    meaning="sessions waiting for the guest side of a login on another partition to answer: "
    "session key -> JSON `{a: the login's origin, h: the records held meanwhile}` "
    "(streams/core/crossing.py); each change is in the key's changelog record (`waiting`)",
    lua=("commit.lua", "load.lua"),
    scope="partition",
)

FORWARDS_CURSOR = Family(
    "forwards_cursor",
    "fwc",
    RedisType.STRING,
    writers=(_FWACK, _WIPE),
    readers=(_FORWARDS, _CHANGELOG),
    lifetime="no TTL",
    meaning="the forward relay's progress: the id of the last entry Kafka acknowledged (the "
    "changelog relay publishes a commit's entry only once this covers its forwards)",
    lua=("fwack.lua",),
    scope="partition",
)

FORWARDS_LEASE = Family(
    "forwards_lease",
    "fwr",
    RedisType.STRING,
    writers=(_FORWARDS,),
    readers=(_FWACK, _FORWARDS),
    lifetime="the lease time; renewed by its holder while it publishes",
    meaning="which worker's relay publishes the partition's forwards, as "
    "`<host>-<pid>:<random>` (a redis-py lock token): one at a time keeps them in order",
    lua=("fwack.lua",),
    scope="partition",
)

HANDOFF = Family(
    "handoff",
    "handoff:<code>",
    RedisType.STRING,
    writers=(_HANDOFFS, _ERASE, _COMMIT, _ISSUE),
    readers=(_HANDOFFS, _ISSUE),
    lifetime="`CONTINUITY_HANDOFF_TTL`; taken (GETDEL) by its one claim; deleted when its "
    "session ends, or revoked past `CONTINUITY_HANDOFF_MAX_PENDING` of its session's",
    meaning="a pending POS handoff code: JSON of its ticket (session key and ids)",
    lua=("commit.lua", "erase.lua", "handoff.lua"),
)

HANDOFF_SEEN = Family(
    "handoff_seen",
    "handoff-seen:<code>",
    RedisType.STRING,
    writers=(_ISSUE, _HANDOFFS, _ERASE),
    readers=(_HANDOFFS,),
    lifetime="the code's TTL plus an hour",
    meaning="`issued` or `claimed`: a late or repeated claim gets 410, not 404",
    lua=("erase.lua",),
)

HANDOFF_BY = Family(
    "handoff_by",
    "handoff-by:<key>",
    RedisType.SET,
    writers=(_ISSUE, _ERASE, _COMMIT),
    readers=(_ISSUE, _ERASE, _COMMIT),
    lifetime="expires with the session's newest code; deleted when the session ends",
    meaning="a session's handoff codes (those no longer pending leave it when the next is "
    "issued), so an erasure or the session's end can delete them, and at most "
    "`CONTINUITY_HANDOFF_MAX_PENDING` are pending",
    lua=("commit.lua", "erase.lua"),
)

VERSION_FLOOR = Family(
    "version_floor",
    "vf:<key>",
    RedisType.STRING,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_LOAD, _ERASE, _CLSWEEP),
    lifetime="expires one session TTL after its session's key (so a client's version stays "
    "valid that long after Redis forgot the session); deleted when its guest merges, by an "
    "erasure (which records it), by a wipe",
    meaning="the session's version, outliving it: a session started after Redis forgot the "
    "ended one goes on from here (`core/expiry.py`)",
    lua=("clsweep.lua", "commit.lua", "erase.lua", "load.lua"),
)

CLAIM_FAILURES_TOKEN = Family(
    "claim_failures_token",
    "handoff-fail:token:<store>[:<subject>]",
    RedisType.STRING,
    writers=(_HANDOFFS,),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_FAILURE_WINDOW`, from the window's first failure",
    meaning="failed handoff claims of one pos token (its store and terminal) in the current "
    "window; a claim in flight counts until it is known not to be a failed one",
    scope="global",
)

CLAIM_FAILURES_STORE = Family(
    "claim_failures_store",
    "handoff-fail:store:<store>",
    RedisType.STRING,
    writers=(_HANDOFFS,),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_FAILURE_WINDOW`, from the window's first failure",
    meaning="failed handoff claims of one store (all its tokens) in the current window",
    scope="global",
)

CLAIM_FAILURES_ADDRESS = Family(
    "claim_failures_address",
    "handoff-fail:addr:<address>",
    RedisType.STRING,
    writers=(_HANDOFFS,),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_FAILURE_WINDOW`, from the window's first failure",
    meaning="failed handoff claims from one client address in the current window, kept only "
    "with `CONTINUITY_TRUSTED_PROXIES` (the address a trusted proxy names)",
    scope="global",
)

RATE_LIMITS = Family(
    "rate_limits",
    "rl:{<window>}[/-1]",
    RedisType.STRING,
    writers=("gateway/rate_limit.py",),
    readers=("gateway/rate_limit.py",),
    lifetime="the `limits` library's: each counter expires with its window",
    meaning="per-token rate-limit counters (sliding window: the current window, and "
    "`/-1` the previous one)",
    scope="global",
)

# In the order the page lists them.
FAMILIES: tuple[Family, ...] = (
    SESSION,
    ALIAS,
    LINKS,
    JOURNEY,
    DEVICES,
    UPDATES,
    ERASURE,
    ERASED_IDS,
    ERASURE_EPOCH,
    OFFSETS,
    FINGERPRINTS,
    OFFSET_TIMES,
    HEARTBEATS,
    ACTIVITY,
    MULTICHANNEL,
    KPIS,
    ABANDONMENT,
    OUTBOX,
    CHANGELOG,
    CHANGELOG_EXPIRY,
    CHANGELOG_CURSOR,
    CHANGELOG_LEASE,
    FORWARDS,
    FORWARDS_CURSOR,
    FORWARDS_LEASE,
    FORWARDS_SEEN,
    WAITING,
    HANDOFF,
    HANDOFF_SEEN,
    HANDOFF_BY,
    VERSION_FLOOR,
    CLAIM_FAILURES_TOKEN,
    CLAIM_FAILURES_STORE,
    CLAIM_FAILURES_ADDRESS,
    RATE_LIMITS,
)

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


# --- Builders: every Python module names keys with these ------------------------------


def session(space: Space, key: str) -> str:
    """The session hash of ``key``."""
    return f"{space.at(key)}:s:{key}"


def alias(space: Space, anonymous_id: str) -> str:
    """The alias of a merged guest."""
    return f"{space.at(anonymous_id)}:a:{anonymous_id}"


def version_floor(space: Space, key: str) -> str:
    """The version floor ``key``'s session leaves when Redis forgets it."""
    return f"{space.at(key)}:vf:{key}"


def links(space: Space, customer_id: str) -> str:
    """The set of guest ids linked to a customer."""
    return f"{space.at(customer_id)}:l:{customer_id}"


def journey(space: Space, key: str) -> str:
    """The journey sorted set of ``key``."""
    return f"{space.at(key)}:j:{key}"


def devices(space: Space, anonymous_id: str) -> str:
    """The sign-ins on one device."""
    return f"{space.at(anonymous_id)}:dv:{anonymous_id}"


def updates(space: Space, partition: int) -> str:
    """The sharded channel announcing every committed version of the partition's keys."""
    return f"{space.tag(partition)}:u"


def erasure(space: Space, some_id: str) -> str:
    """The erasure recorded for a customer or guest id."""
    return f"{space.at(some_id)}:x:{some_id}"


def erased_ids(space: Space, partition: int) -> str:
    """The set of the partition's erased ids."""
    return f"{space.tag(partition)}:xs"


def erasure_epoch(space: Space, partition: int) -> str:
    """The partition's count of erasures and log resets, checked by its commits."""
    return f"{space.tag(partition)}:xe"


def offsets(space: Space, partition: int) -> str:
    """The partition's applied offsets hash (one field per co-partitioned topic)."""
    return f"{space.tag(partition)}:o"


def fingerprints(space: Space, partition: int) -> str:
    """The fingerprints of the records at the partition's applied offsets."""
    return f"{space.tag(partition)}:f"


def offset_times(space: Space, partition: int) -> str:
    """When the partition was last applied (Redis's clock, ms)."""
    return f"{space.tag(partition)}:ot"


def heartbeats(space: Space) -> str:
    """The workers' heartbeats."""
    return f"{space.prefix}:hb"


def activity(space: Space, partition: int, bucket: int) -> str:
    """The partition's sessions-active HyperLogLog of one time bucket (``core/activity.py``)."""
    return f"{space.tag(partition)}:h:{bucket}"


def multichannel(space: Space, partition: int, bucket: int) -> str:
    """The partition's HyperLogLog of one bucket's sessions on two or more channels."""
    return f"{space.tag(partition)}:hm:{bucket}"


def kpis(space: Space, partition: int) -> str:
    """The partition's KPI counters hash."""
    return f"{space.tag(partition)}:k"


def abandonment(space: Space, partition: int) -> str:
    """The partition's abandonment deadlines."""
    return f"{space.tag(partition)}:ab"


def changelog(space: Space, partition: int) -> str:
    """The partition's session changelog outbox stream."""
    return f"{space.tag(partition)}:cl"


def changelog_expiry(space: Space, partition: int) -> str:
    """When each of the partition's keys' changelog tombstone is due."""
    return f"{space.tag(partition)}:ex"


def changelog_cursor(space: Space, partition: int) -> str:
    """The changelog relay's progress on the partition."""
    return f"{space.tag(partition)}:clc"


def changelog_lease(space: Space, partition: int) -> str:
    """The lease of the relay publishing the partition's changelog."""
    return f"{space.tag(partition)}:clr"


def forwards(space: Space, partition: int) -> str:
    """The partition's stream of forward records to other partitions."""
    return f"{space.tag(partition)}:fw"


def forwards_seen(space: Space, partition: int) -> str:
    """The last forward applied on the partition, per origin partition."""
    return f"{space.tag(partition)}:fs"


def waiting(space: Space, partition: int) -> str:
    """The partition's sessions waiting for a login's guest side, and what they hold."""
    return f"{space.tag(partition)}:w"


def forwards_cursor(space: Space, partition: int) -> str:
    """The forward relay's progress on the partition (the last entry published)."""
    return f"{space.tag(partition)}:fwc"


def forwards_lease(space: Space, partition: int) -> str:
    """The lease of the relay publishing the partition's forwards."""
    return f"{space.tag(partition)}:fwr"


def outbox(space: Space, partition: int) -> str:
    """The partition's notification outbox stream."""
    return f"{space.tag(partition)}:n"


def handoff(space: Space, code: str) -> str:
    """A pending handoff code (drawn so that it lands in its session's partition)."""
    return f"{space.at(code)}:handoff:{code}"


def handoff_seen(space: Space, code: str) -> str:
    """What became of a handoff code (issued or claimed)."""
    return f"{space.at(code)}:handoff-seen:{code}"


def handoff_by(space: Space, key: str) -> str:
    """The handoff codes of one session."""
    return f"{space.at(key)}:handoff-by:{key}"


def claim_failures_token(space: Space, store: str, subject: str | None) -> str:
    """Failed handoff claims of one pos token (store, and terminal if it names one)."""
    tail = f":{subject}" if subject else ""
    return f"{space.prefix}:handoff-fail:token:{store}{tail}"


def claim_failures_store(space: Space, store: str) -> str:
    """Failed handoff claims of one store in the current window."""
    return f"{space.prefix}:handoff-fail:store:{store}"


def claim_failures_address(space: Space, address: str) -> str:
    """Failed handoff claims from one client address in the current window."""
    return f"{space.prefix}:handoff-fail:addr:{address}"


def claim_failures(space: Space, kind: Literal["store", "addr"], who: str) -> str:
    """:func:`claim_failures_store` or :func:`claim_failures_address` by ``kind``."""
    if kind == "store":
        return claim_failures_store(space, who)
    return claim_failures_address(space, who)


def rate_limits(space: Space) -> str:
    """The ``key_prefix`` handed to the ``limits`` library, which appends ``:{<window>}``."""
    return f"{space.prefix}:rl"


# --- Matching, the Lua prelude and the page --------------------------------------------


@cache
def _matcher(prefix: str) -> re.Pattern[str]:
    alternatives = "|".join(f"(?P<{f.name}>{f.regex})" for f in FAMILIES)
    return re.compile(rf"{re.escape(prefix)}:(?:{alternatives})")


def family_of(name: str, space: Space) -> Family | None:
    """The family of key ``name`` in ``space``, or ``None`` if it is undeclared.

    A tagged name must carry a partition of the space, and a per-key name its id's
    own: a key tagged with another partition is misplaced, and no reader finds it.
    """
    found = _matcher(space.prefix).fullmatch(name)
    if found is None or found.lastgroup is None:
        return None
    family = BY_NAME[found.lastgroup]
    if family.scope == "global":
        return family
    tag, _, rest = name[len(space.prefix) + 1 :].partition(":")
    partition = int(tag[2:-1])
    if partition >= space.partitions:
        return None
    if family.scope == "key" and space.partition(rest.partition(":")[2]) != partition:
        return None
    return family


_LUA_PARTITIONER = """\
-- Generated from streams/store/keys.py (lua_prelude): the key layout and Kafka's
-- partitioner, so a script spells no key name itself. Call layout(prefix, partitions)
-- before any builder.
local LAYOUT_PREFIX, LAYOUT_PARTITIONS = nil, nil
local function layout(prefix, partitions)
  LAYOUT_PREFIX, LAYOUT_PARTITIONS = prefix, tonumber(partitions)
end
-- 32-bit multiplication modulo 2^32 in doubles: split so no product passes 2^53.
local function mul32(a, b)
  a = a % 4294967296
  b = b % 4294967296
  local alo, blo = a % 65536, b % 65536
  local ahi, bhi = (a - alo) / 65536, (b - blo) / 65536
  return bit.tobit((alo * blo + ((ahi * blo + alo * bhi) % 65536) * 65536) % 4294967296)
end
local partition_cache = {}
-- Kafka's default partitioner: murmur2 of the id's bytes, positive, modulo the count.
local function partition_of(id)
  local known = partition_cache[id]
  if known then return known end
  local len, m = #id, 0x5bd1e995
  local h = bit.bxor(bit.tobit(0x9747b28c), len)
  local whole = len - len % 4
  for i = 1, whole, 4 do
    local b1, b2, b3, b4 = string.byte(id, i, i + 3)
    local k = bit.bor(b1, bit.lshift(b2, 8), bit.lshift(b3, 16), bit.lshift(b4, 24))
    k = mul32(k, m)
    k = bit.bxor(k, bit.rshift(k, 24))
    h = bit.bxor(mul32(h, m), mul32(k, m))
  end
  local rest = len % 4
  if rest == 3 then h = bit.bxor(h, bit.lshift(string.byte(id, whole + 3), 16)) end
  if rest >= 2 then h = bit.bxor(h, bit.lshift(string.byte(id, whole + 2), 8)) end
  if rest >= 1 then h = mul32(bit.bxor(h, string.byte(id, whole + 1)), m) end
  h = bit.bxor(h, bit.rshift(h, 13))
  h = mul32(h, m)
  h = bit.bxor(h, bit.rshift(h, 15))
  local n = bit.band(h, 0x7fffffff) % LAYOUT_PARTITIONS
  partition_cache[id] = n
  return n
end
local function tag(n) return LAYOUT_PREFIX .. ':{p' .. n .. '}' end
"""


def _lua_builder(family: Family) -> str:
    names = re.findall(r"<([a-z_]+)>", family.pattern)
    literal = _PATTERN_PART.split(family.pattern)
    body: list[str] = []
    for part in literal:
        if part.startswith("<"):
            body.append(part[1:-1])
        elif part:
            body.append(f"':{part}'" if not body else f"'{part}'")
    if family.scope == "key":
        head, params = f"tag(partition_of({names[0]}))", names
    elif family.scope == "partition":
        head, params = "tag(n)", ["n", *names]
    else:
        head, params = "LAYOUT_PREFIX", names
    tail = " .. ".join(body)
    return f"local function key_{family.name}({', '.join(params)}) return {head} .. {tail} end"


@cache
def lua_prelude() -> str:
    """The Lua every script is loaded with: the partitioner and one builder per tagged
    family (``key_session(k)``, ``key_offsets(n)``, ``key_activity(n, bucket)``)."""
    builders = [_lua_builder(f) for f in FAMILIES if f.scope != "global"]
    return _LUA_PARTITIONER + "\n".join(builders) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _modules(paths: tuple[str, ...]) -> str:
    # "ops/rebuild.py (wipe)": the path as code, the note after it as text.
    out = []
    for p in paths:
        path, _, note = p.partition(" ")
        out.append(f"`{path}` {note}" if note else f"`{path}`")
    return ", ".join(out)


def markdown(prefix: str = DEFAULT_PREFIX) -> str:
    """The layout as Markdown: one table row per family, then the placeholders."""
    lines = [
        "| key | type | holds | written by | read by | lifetime |",
        "|---|---|---|---|---|---|",
    ]
    for f in FAMILIES:
        cells = (
            f"`{f.shown(prefix)}`",
            f.type.value,
            f.meaning,
            _modules(f.writers),
            _modules(f.readers),
            f.lifetime,
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    used = {p for f in FAMILIES for p in re.findall(r"<([a-z_]+)>", f.full)}
    lines += ["", "| placeholder | stands for |", "|---|---|"]
    lines += [
        f"| `<{p.name}>` | {_cell(p.meaning)} |" for p in PLACEHOLDERS.values() if p.name in used
    ]
    return "\n".join(lines) + "\n"
