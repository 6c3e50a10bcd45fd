"""The benchmark's reading of Prometheus histograms. Pure.

Proves: buckets are read by their bounds (``+Inf`` included), other series
and labelled ones are left alone; a difference of two reads counts what was
added; quantiles interpolate inside the bucket the rank falls in, as
``histogram_quantile`` does, answer the highest finite bound for a rank in
``+Inf``, and nothing for an empty histogram.
"""

from __future__ import annotations

import math

import pytest

from bench.histogram import buckets, delta, quantile

TEXT = """# HELP continuity_freshness_seconds x
# TYPE continuity_freshness_seconds histogram
continuity_freshness_seconds_bucket{le="0.01"} 2.0
continuity_freshness_seconds_bucket{le="0.02"} 6.0
continuity_freshness_seconds_bucket{le="+Inf"} 10.0
continuity_freshness_seconds_count 10.0
continuity_freshness_seconds_sum 0.3
continuity_other_seconds_bucket{le="0.01"} 99.0
"""


def test_buckets_are_read_by_their_bounds() -> None:
    assert buckets(TEXT, "continuity_freshness_seconds") == {0.01: 2.0, 0.02: 6.0, math.inf: 10.0}
    assert buckets(TEXT, "continuity_missing_seconds") == {}


def test_a_difference_counts_what_was_added() -> None:
    before = {0.01: 1.0, 0.02: 1.0, math.inf: 1.0}
    assert delta(buckets(TEXT, "continuity_freshness_seconds"), before) == {
        0.01: 1.0,
        0.02: 5.0,
        math.inf: 9.0,
    }


def test_quantiles_interpolate_within_the_bucket() -> None:
    h = {0.01: 2.0, 0.02: 6.0, math.inf: 10.0}
    assert quantile(h, 0.1) == pytest.approx(0.005)  # rank 1 of the first bucket's 2
    assert quantile(h, 0.4) == pytest.approx(0.015)  # rank 4: halfway through (0.01, 0.02]
    assert quantile(h, 0.99) == 0.02, "a rank in +Inf answers the highest finite bound"
    assert quantile({0.01: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({}, 0.5) is None
