"""Every Redis key Continuity uses, declared once: pattern, type, writers, readers, lifetime.

Key names are a public contract: deployments and operators rely on them, the
gateway fuzz test checks them, and a worker and a gateway of different
versions share one Redis. So each family is written down here exactly once (:data:`FAMILIES`)
and every Python module builds names with the typed functions below
(``keys.session(prefix, key)``) instead of f-strings. ``docs/redis-layout.md``
is generated from :data:`FAMILIES` (``make docs``, ``streams/docs_pages.py``)
and a test fails when the page is stale.

The Lua scripts (``streams/store/lua/``) cannot import Python; they keep their
small local helpers (``prefix .. ':s:{' .. k .. '}'``), and a test parses those
literals out of every script and checks them against :attr:`Family.lua` both
ways: a script spells no name not declared here, and spells every name
declared as its own. The few names a script receives in ARGV (the applied
offsets, the activity buckets) are built here by its caller.

Why this module lives in ``streams/store`` and not in ``streams/core``: a key
name is a storage fact (what Redis calls a thing), and the pure core has no
reason to know one. The two core modules that used to build names (the
sessions-active HyperLogLogs) no longer do: ``core/activity.py`` answers with
bucket *numbers* (``window``), the time arithmetic that is its to decide, and
``core/kpi_report.py`` only computes the report; their callers at the edge
(``store/state.py``, ``worker/gauges.py``, ``gateway/kpis.py``) name the keys
here. That keeps the
import boundary as it is (core imports nothing from store) without declaring a
second "pure" folder. This module itself imports no I/O (plain string
building and the pure constants it documents), so anything may import it.
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
    CHANNEL = "pub/sub channel"


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
        Placeholder("bucket", r"[0-9]+", f"a time bucket: Unix seconds // {BUCKET_SECONDS}"),
        Placeholder("code", _CODE, "a handoff code, 8 characters of Crockford base32"),
        Placeholder("store", ID_PATTERN, "the store id of a POS token"),
        Placeholder(
            "address",
            r"[0-9A-Fa-f.:]+|unknown",
            "the client's IP address (`unknown` when the server has none)",
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
_STATE = "store/state.py"
_OUTBOX = "store/outbox.py"
_HANDOFFS = "store/handoffs.py"
_WIPE = "ops/rebuild.py (wipe)"
# A session's key TTL (streams/core/expiry.py), as the page says it.
_ENDS = (
    "expires `CONTINUITY_EXPIRY_GRACE` (default 7 days) after its session ends: idle "
    "`CONTINUITY_GUEST_TTL` or `CONTINUITY_SESSION_TTL` on event time, or the commit if later"
)

_PATTERN_PART = re.compile(r"(<[a-z_]+>|\[|\])")


@dataclass(frozen=True)
class Family:
    """One kind of Redis key: ``pattern`` follows ``<prefix>:``.

    ``name`` is also the name of its builder function below. In a pattern,
    ``<name>`` is a :data:`PLACEHOLDERS` entry and ``[...]`` an optional part.
    ``lua`` names the scripts that spell this name themselves from the prefix
    (checked against the scripts by a test).
    """

    name: str
    pattern: str
    type: RedisType
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    lifetime: str
    meaning: str
    lua: tuple[str, ...] = ()

    @property
    def head(self) -> str:
        """The literal part before the first placeholder, as a script spells it: ``:s:{``."""
        return ":" + re.split(r"[<\[]", self.pattern, maxsplit=1)[0]

    def glob(self, prefix: str) -> str:
        """A SCAN/PSUBSCRIBE pattern matching every key of the family under ``prefix``."""
        if "<" not in self.pattern:
            return f"{prefix}:{self.pattern}"
        return f"{prefix}{self.head.rstrip('{')}*"

    @property
    def regex(self) -> str:
        """A regular expression for the part after ``<prefix>:`` (unanchored)."""
        out = []
        for part in _PATTERN_PART.split(self.pattern):
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
        """The pattern as the page shows it: ``cont:s:{<key>}``."""
        return f"{prefix}:{self.pattern}"


SESSION = Family(
    "session",
    "s:{<key>}",
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
    "a:{<anonymous_id>}",
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
    "l:{<customer_id>}",
    RedisType.SET,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_COMMIT, _ERASE, _STATE),
    lifetime="expires with the customer's session; deleted when that session ends, by an "
    "erasure, by a wipe",
    meaning="guest ids signed in to the customer's session, their alias still pointing "
    "at it or moved on since (what an erasure must find)",
    lua=("commit.lua", "erase.lua"),
)

JOURNEY = Family(
    "journey",
    "j:{<key>}",
    RedisType.SORTED_SET,
    writers=(_COMMIT, _ERASE, _WIPE),
    readers=(_COMMIT, "gateway/routes/journey.py"),
    lifetime=f"expires `CONTINUITY_JOURNEY_MAX_AGE` s (default "
    f"{DEFAULT_JOURNEY.max_age_seconds // 86400} days) after its last write, or with its "
    "session if sooner; deleted when the session ends; at most "
    f"`CONTINUITY_JOURNEY_MAX_ENTRIES` (default {DEFAULT_JOURNEY.max_entries}) entries, "
    f"none older than `CONTINUITY_JOURNEY_MAX_AGE` (default "
    f"{DEFAULT_JOURNEY.max_age_seconds // 86400} days)",
    meaning="the journey: one JSON entry per applied event, scored by `occurred_at` ms "
    "(`core/journey.py`); a merged guest's entries move into the customer's",
    lua=("commit.lua", "erase.lua"),
)

DEVICES = Family(
    "devices",
    "dv:{<anonymous_id>}",
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
    "u:{<key>}",
    RedisType.CHANNEL,
    writers=(_COMMIT, _ERASE),
    readers=("gateway/fanout.py", "dev/live.py"),
    lifetime="pub/sub: nothing is stored",
    meaning='`{"key", "version"}` after each committed version; `{"key", "merged_into"}` '
    'when a guest merges; `{"key", "erased": true}` after an erasure',
    lua=("commit.lua", "erase.lua"),
)

ERASURE = Family(
    "erasure",
    "x:{<id>}",
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
)

OFFSETS = Family(
    "offsets",
    "o",
    RedisType.HASH,
    writers=(_COMMIT, _RESET, _WIPE),
    readers=(
        _LOAD,
        _ERASE,
        _STATE,
        "gateway/sessions.py",
        "gateway/freshness.py",
        "worker/gauges.py",
        "cli/rebuild.py",
    ),
    lifetime="no TTL; deleted by a wipe",
    meaning="`<topic>:<partition>` -> last applied offset (belongs to the state, not to a "
    "consumer group); the scripts get its name in ARGV",
)

FINGERPRINTS = Family(
    "fingerprints",
    "f",
    RedisType.HASH,
    writers=(_COMMIT, _RESET, _WIPE),
    readers=(_STATE,),
    lifetime="no TTL; deleted by a wipe",
    meaning="`<topic>:<partition>` -> fingerprint of the record at that offset (broker "
    "log reset detection, `core/log_reset.py`); the scripts get its name in ARGV",
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
)

ACTIVITY = Family(
    "activity",
    "h:<bucket>",
    RedisType.HYPERLOGLOG,
    writers=(_COMMIT,),
    readers=("worker/gauges.py", "gateway/kpis.py"),
    lifetime=f"expires {BUCKET_TTL_SECONDS // 60} min after its last write",
    meaning=f"session keys committed in one {BUCKET_SECONDS // 60}-minute bucket "
    "(`core/activity.py`; feeds `continuity_sessions_active`); "
    "`commit.lua` gets its name in ARGV",
)

MULTICHANNEL = Family(
    "multichannel",
    "hm:<bucket>",
    RedisType.HYPERLOGLOG,
    writers=(_COMMIT,),
    readers=("gateway/kpis.py",),
    lifetime=f"expires {BUCKET_TTL_SECONDS // 60} min after its last write",
    meaning="sessions on two or more channels committed in one bucket (the multichannel "
    "share); `commit.lua` gets its name in ARGV",
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
)

CHANGELOG = Family(
    "changelog",
    "cl",
    RedisType.STREAM,
    writers=(_COMMIT, _ERASE, _RESET, _CLSWEEP, _CLACK),
    readers=(_CHANGELOG,),
    lifetime="an entry is trimmed once the changelog relay published it",
    meaning="the session changelog's outbox (`core/changelog.py`): per commit, the batch's "
    "applied offsets and every touched key's state; read in order by the one relay holding "
    "the lease",
    lua=("clack.lua", "clsweep.lua", "commit.lua", "erase.lua", "reset.lua"),
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
)

CHANGELOG_CURSOR = Family(
    "changelog_cursor",
    "clc",
    RedisType.STRING,
    writers=(_CLACK, _CHANGELOG),
    readers=(_CHANGELOG,),
    lifetime="no TTL",
    meaning="the changelog relay's progress: the last entry published and the applied "
    "offsets and fingerprints as of it (JSON)",
    lua=("clack.lua",),
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
)

HANDOFF = Family(
    "handoff",
    "handoff:<code>",
    RedisType.STRING,
    writers=(_HANDOFFS, _ERASE, _COMMIT),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_TTL`; taken (GETDEL) by its one claim; deleted when its "
    "session ends",
    meaning="a pending POS handoff code: JSON of its ticket (session key and ids)",
    lua=("commit.lua", "erase.lua"),
)

HANDOFF_SEEN = Family(
    "handoff_seen",
    "handoff-seen:<code>",
    RedisType.STRING,
    writers=(_HANDOFFS, _ERASE),
    readers=(_HANDOFFS,),
    lifetime="the code's TTL plus an hour",
    meaning="`issued` or `claimed`: a late or repeated claim gets 410, not 404",
    lua=("erase.lua",),
)

HANDOFF_BY = Family(
    "handoff_by",
    "handoff-by:{<key>}",
    RedisType.SET,
    writers=(_HANDOFFS, _ERASE, _COMMIT),
    readers=(_ERASE, _COMMIT),
    lifetime="expires with the session's newest code; deleted when the session ends",
    meaning="a session's handoff codes, so an erasure or the session's end can delete them",
    lua=("commit.lua", "erase.lua"),
)

VERSION_FLOOR = Family(
    "version_floor",
    "vf:{<key>}",
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

CLAIM_FAILURES_STORE = Family(
    "claim_failures_store",
    "handoff-fail:store:<store>",
    RedisType.STRING,
    writers=(_HANDOFFS,),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_FAILURE_WINDOW`, from the window's first failure",
    meaning="failed handoff claims of one store in the current window",
)

CLAIM_FAILURES_ADDRESS = Family(
    "claim_failures_address",
    "handoff-fail:addr:<address>",
    RedisType.STRING,
    writers=(_HANDOFFS,),
    readers=(_HANDOFFS,),
    lifetime="`CONTINUITY_HANDOFF_FAILURE_WINDOW`, from the window's first failure",
    meaning="failed handoff claims from one client address in the current window",
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
    HANDOFF,
    HANDOFF_SEEN,
    HANDOFF_BY,
    VERSION_FLOOR,
    CLAIM_FAILURES_STORE,
    CLAIM_FAILURES_ADDRESS,
    RATE_LIMITS,
)

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


# --- Builders: every Python module names keys with these ------------------------------


def session(prefix: str, key: str) -> str:
    """The session hash of ``key``."""
    return f"{prefix}:s:{{{key}}}"


def alias(prefix: str, anonymous_id: str) -> str:
    """The alias of a merged guest."""
    return f"{prefix}:a:{{{anonymous_id}}}"


def version_floor(prefix: str, key: str) -> str:
    """The version floor ``key``'s session leaves when Redis forgets it."""
    return f"{prefix}:vf:{{{key}}}"


def links(prefix: str, customer_id: str) -> str:
    """The set of guest ids linked to a customer."""
    return f"{prefix}:l:{{{customer_id}}}"


def journey(prefix: str, key: str) -> str:
    """The journey sorted set of ``key``."""
    return f"{prefix}:j:{{{key}}}"


def devices(prefix: str, anonymous_id: str) -> str:
    """The sign-ins on one device."""
    return f"{prefix}:dv:{{{anonymous_id}}}"


def updates(prefix: str, key: str) -> str:
    """The pub/sub channel announcing every committed version of ``key``."""
    return f"{prefix}:u:{{{key}}}"


def erasure(prefix: str, some_id: str) -> str:
    """The erasure recorded for a customer or guest id."""
    return f"{prefix}:x:{{{some_id}}}"


def erased_ids(prefix: str) -> str:
    """The set of every erased id."""
    return f"{prefix}:xs"


def erasure_epoch(prefix: str) -> str:
    """The count of erasures and log resets, checked by every commit."""
    return f"{prefix}:xe"


def offsets(prefix: str) -> str:
    """The applied offsets hash."""
    return f"{prefix}:o"


def fingerprints(prefix: str) -> str:
    """The fingerprints of the records at the applied offsets."""
    return f"{prefix}:f"


def offset_times(prefix: str) -> str:
    """When each partition was last applied (Redis's clock, ms)."""
    return f"{prefix}:ot"


def heartbeats(prefix: str) -> str:
    """The workers' heartbeats."""
    return f"{prefix}:hb"


def activity(prefix: str, bucket: int) -> str:
    """The sessions-active HyperLogLog of one time bucket (``core/activity.py``)."""
    return f"{prefix}:h:{bucket}"


def multichannel(prefix: str, bucket: int) -> str:
    """The HyperLogLog of one bucket's sessions on two or more channels."""
    return f"{prefix}:hm:{bucket}"


def kpis(prefix: str) -> str:
    """The KPI counters hash."""
    return f"{prefix}:k"


def abandonment(prefix: str) -> str:
    """The abandonment deadlines sorted set."""
    return f"{prefix}:ab"


def changelog(prefix: str) -> str:
    """The session changelog's outbox stream."""
    return f"{prefix}:cl"


def changelog_expiry(prefix: str) -> str:
    """When each key's changelog tombstone is due."""
    return f"{prefix}:ex"


def changelog_cursor(prefix: str) -> str:
    """The changelog relay's progress."""
    return f"{prefix}:clc"


def changelog_lease(prefix: str) -> str:
    """The changelog relay's lease."""
    return f"{prefix}:clr"


def outbox(prefix: str) -> str:
    """The notification outbox stream."""
    return f"{prefix}:n"


def handoff(prefix: str, code: str) -> str:
    """A pending handoff code."""
    return f"{prefix}:handoff:{code}"


def handoff_seen(prefix: str, code: str) -> str:
    """What became of a handoff code (issued or claimed)."""
    return f"{prefix}:handoff-seen:{code}"


def handoff_by(prefix: str, key: str) -> str:
    """The handoff codes of one session."""
    return f"{prefix}:handoff-by:{{{key}}}"


def claim_failures_store(prefix: str, store: str) -> str:
    """Failed handoff claims of one store in the current window."""
    return f"{prefix}:handoff-fail:store:{store}"


def claim_failures_address(prefix: str, address: str) -> str:
    """Failed handoff claims from one client address in the current window."""
    return f"{prefix}:handoff-fail:addr:{address}"


def claim_failures(prefix: str, kind: Literal["store", "addr"], who: str) -> str:
    """:func:`claim_failures_store` or :func:`claim_failures_address` by ``kind``."""
    if kind == "store":
        return claim_failures_store(prefix, who)
    return claim_failures_address(prefix, who)


def rate_limits(prefix: str) -> str:
    """The ``key_prefix`` handed to the ``limits`` library, which appends ``:{<window>}``."""
    return f"{prefix}:rl"


# --- Matching and the page -------------------------------------------------------------


@cache
def _matcher(prefix: str) -> re.Pattern[str]:
    alternatives = "|".join(f"(?P<{f.name}>{f.regex})" for f in FAMILIES)
    return re.compile(rf"{re.escape(prefix)}:(?:{alternatives})")


def family_of(name: str, prefix: str) -> Family | None:
    """The family of key ``name`` under ``prefix``, or ``None`` if it is undeclared."""
    found = _matcher(prefix).fullmatch(name)
    if found is None or found.lastgroup is None:
        return None
    return BY_NAME[found.lastgroup]


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
    used = {p for f in FAMILIES for p in re.findall(r"<([a-z_]+)>", f.pattern)}
    lines += ["", "| placeholder | stands for |", "|---|---|"]
    lines += [
        f"| `<{p.name}>` | {_cell(p.meaning)} |" for p in PLACEHOLDERS.values() if p.name in used
    ]
    return "\n".join(lines) + "\n"
