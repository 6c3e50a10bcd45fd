"""The keys a partition's load or commit script declares up front, for Redis Cluster.

The scripts build their key names from their arguments (the layout prelude), so
one routing key (the partition's offsets hash) would do while the partition's
slot stays on one primary. While the slot moves (``redis-cli --cluster
reshard``: ``MIGRATE`` key by key), that is not enough: on the source a script
meeting a key already moved fails half way, after some of its writes; on the
target (reached by ``ASK``) it reads a key not yet moved as absent, and would
fold into an empty session. Redis checks the keys a script declares before it
runs it: while the slot moves, a script runs only on the node holding every
declared key, and otherwise is answered ``TRYAGAIN``, which the workers retry
until the move ends (``streams/store/client.py``: transient). So each script
declares every key it reads or writes that its arguments name: the partition's
own keys and every per-id key of the ids it names. A key only known from data
read inside the script (a guest's alias found in an ended session's link set, a
handoff code of that session) is not declared: that narrow case is why a slot
is best moved as the operations manual says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.core.plan import Needs, Plan
from streams.store import keys
from streams.store.keys import Space

# Per-id names a load or commit may read or write for an id of its partition.
_PER_ID: tuple[Callable[[Space, str], str], ...] = (
    keys.session,
    keys.alias,
    keys.version_floor,
    keys.links,
    keys.journey,
    keys.devices,
    keys.erasure,
    keys.handoff_by,
)
# The partition's own names a commit may write (the offsets hash routes the script).
_PER_PARTITION: tuple[Callable[[Space, int], str], ...] = (
    keys.fingerprints,
    keys.offset_times,
    keys.kpis,
    keys.abandonment,
    keys.changelog,
    keys.changelog_expiry,
    keys.forwards,
    keys.forwards_seen,
    keys.waiting,
    keys.outbox,
    keys.erased_ids,
    keys.erasure_epoch,
)


def declared(space: Space, partition: int, ids: Iterable[str]) -> list[str]:
    """The routing key (the offsets hash) first, then the partition's own names and
    the per-id names of those of ``ids`` on ``partition`` (another partition's ids are
    named only by a one-primary deployment, where declarations change nothing)."""
    names = [keys.offsets(space, partition)]
    names.extend(name(space, partition) for name in _PER_PARTITION)
    for some_id in sorted(set(ids)):
        if space.partition(some_id) == partition:
            names.extend(name(space, some_id) for name in _PER_ID)
    return names


def load_ids(needs: Needs) -> set[str]:
    """Every id a load reads keys of."""
    return {*needs.anonymous_ids, *needs.keys, *needs.journeys, *needs.links}


def commit_ids(plan: Plan) -> set[str]:
    """Every id a commit's arguments name keys of."""
    return {
        *plan.expected_versions,
        *plan.expected_aliases,
        *plan.writes,
        *plan.deletes,
        *plan.cleared,
        *plan.aliases,
        *plan.alias_deletes,
        *(i for link in plan.links for i in link),
        *(e.key for e in plan.journey),
        *plan.floors,
        *(anon for anon, _, _ in plan.device_links),
        *(anon for anon, _, _ in plan.device_renames),
        *plan.pending,
    }
