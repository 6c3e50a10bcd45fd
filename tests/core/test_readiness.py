"""The worker's readiness judgement. Proves: not ready before an assignment or during a
rebalance; a Redis outage is tolerated for the retry budget, then reported, and
forgotten with the first successful round trip."""

from __future__ import annotations

from streams.core.readiness import Readiness


def test_ready_only_with_an_assignment() -> None:
    r = Readiness(retry_budget=10)
    assert r.problems(0)
    r.on_assigned()
    assert r.problems(0) == []
    r.on_revoked()
    assert r.problems(0)


def test_redis_outage_counts_only_beyond_the_budget() -> None:
    r = Readiness(retry_budget=10)
    r.on_assigned()
    r.redis_failed(100.0)
    r.redis_failed(105.0)  # the outage started at the first failure
    assert r.problems(110.0) == []
    assert r.problems(110.5) == ["redis unreachable for 10s"]
    r.redis_ok()
    assert r.problems(200.0) == []


def test_a_ping_clears_an_outage_but_not_refused_writes() -> None:
    r = Readiness(retry_budget=10.0)
    r.on_assigned()
    r.redis_failed(100.0)
    r.redis_answered()
    assert r.problems(200.0) == [], "reachable again: the outage is over"
    r.redis_failed(100.0, "refusing writes (READONLY)")
    r.redis_answered()  # a read-only replica answers PING
    assert r.problems(111.0) == ["redis refusing writes (READONLY) for 11s"]
    r.redis_ok()  # a commit went through
    assert r.problems(120.0) == []
