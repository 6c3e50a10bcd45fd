"""The lifecycle benchmark (``bench/lifecycle.py``), tiny: Redis levels off at the TTL horizon.

Sixteen simulated days of a second each, TTLs of a few days (guest 3, session
6, grace 1, version floors one TTL longer), a few dozen shoppers a day, through
the real commit path into a fresh ``redis-server``, the changelog relay's
Redis side after every batch (about 17 s). Proves: every event is applied and
every changelog entry published, ended sessions as tombstones; Redis ends up
holding far fewer sessions than were ever written, no more than the TTL
horizon allows; the keys it holds grow far more slowly than the history once
every horizon is passed. Redis forgets by itself: nothing but the commits'
key TTLs removes a session here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.lifecycle import LifecycleSpec, run
from bench.lifecycle_traffic import Traffic

pytestmark = pytest.mark.e2e

TRAFFIC = Traffic(guests_per_day=40, signups_per_day=4, regulars=30, regular_every_days=3)
SPEC = LifecycleSpec(
    days=16,
    day_seconds=1,
    guest_ttl_days=3,
    session_ttl_days=6,
    grace_days=1,
    journey_days=6,
    shared_device_days=3,
    census_every=4,
    traffic=TRAFFIC,
)


async def test_redis_holds_the_ttl_horizon_not_the_history(tmp_path: Path) -> None:
    result = await run(SPEC, tmp_path, lambda line: None)

    assert result["outcomes"] == {"applied": result["days"][-1]["events"]}
    # The changelog relay ran as a worker's would: all published, ended keys tombstoned.
    assert result["changelog"]["outbox_entries_left"] == 0
    assert result["changelog"]["tombstones"] > 10 * TRAFFIC.guests_per_day
    last = result["days"][-1]
    held = result["census"][-1]["s"]
    ever = last["sessions_ever"]
    assert ever > 15 * TRAFFIC.guests_per_day, "the history is there to be forgotten"
    # Whatever the history, at most the last TTL + grace (+ a day of slack) of each
    # kind of session: one-visit guests, sign-ups, and the regulars.
    horizon = (
        TRAFFIC.guests_per_day * (SPEC.guest_ttl_days + SPEC.grace_days + 1)
        + TRAFFIC.signups_per_day * (SPEC.session_ttl_days + SPEC.grace_days + 1)
        + TRAFFIC.regulars
    )
    assert held <= horizon < ever / 2
    # Past every horizon (version floors included: 6 + 1 + 6 days for a customer),
    # the history grew by a fifth but the keys held did not follow.
    settled = next(r for r in result["days"] if r["day"] == 13)
    assert last["sessions_ever"] > settled["sessions_ever"] * 1.15
    assert last["keys"] < settled["keys"] * 1.1
