"""The broker measurements of the bench: ``bench.broker_growth`` against a real embedded
broker, and the freshness run's first- and last-fifth broker share (pure).

Proves: a short run produces and consumes through a fresh broker and reports one
CPU share per interval; the shares over a window's first and last fifth are
the CPU used over each divided by its wall time, samples outside the window
left out, and too few samples give none.
"""

from __future__ import annotations

import pytest

from bench.broker_growth import run
from bench.freshness_stack import end_shares


@pytest.mark.e2e
async def test_a_short_run_reports_the_brokers_share_per_interval() -> None:
    shares = await run(rate=200, linger_ms=0, seconds=2.5, every=1.0)
    assert len(shares) == 2
    assert all(0 <= s < 400 for s in shares)


def test_the_first_and_last_fifth_are_cpu_over_wall_time() -> None:
    # 1 s apart: 0.2 CPU s per s in the first fifth, 0.8 in the last; one sample outside.
    samples = [(-1.0, 0.0), (0.0, 1.0), (1.0, 1.2), (2.0, 1.4), (5.0, 3.0), (9.0, 6.0)]
    samples += [(10.0, 6.8)]
    assert end_shares(samples, 0.0, 10.0) == (20.0, 80.0)
    assert end_shares(samples[:2], 0.0, 10.0) is None
