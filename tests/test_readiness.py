"""The worker's readiness judgement. Proves: not ready before an assignment or during a
rebalance; a Redis outage is tolerated for the retry budget, then reported, and
forgotten with the first successful round trip."""

from __future__ import annotations

from streams.readiness import Readiness


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
