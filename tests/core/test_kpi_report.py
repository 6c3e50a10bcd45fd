"""The KPI report built from the Redis KPI counters (``streams/core/kpi_report.py``). Pure.

Proves: rates are converted / started and abandoned / started per start
channel and overall, a path's rate is converted / (converted + abandoned),
every ratio is null when its denominator is 0; resumes are listed by channel
pair; fields naming no contract channel are ignored; the median of first
touch -> checkout is interpolated like Prometheus' ``histogram_quantile`` and
always lies within the bucket holding the middle observation; the mean is
the exact mean (to the millisecond); the window keys are the sessions-active
buckets.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Channel
from streams.core.kpi_delta import TTC_BUCKETS, KpiDelta
from streams.core.kpi_report import counters, histogram, quantile, report


def test_an_empty_hash_gives_zeros_and_null_ratios() -> None:
    r = report({}, 0, 0)
    assert r["sessions"]["multichannel_share"] is None
    assert r["carts"]["overall"] == {
        "started": 0,
        "converted": 0,
        "abandoned": 0,
        "conversion_rate": None,
        "abandonment_rate": None,
    }
    assert set(r["carts"]["by_start_channel"]) == {c.value for c in Channel}
    assert r["resumes"] == {"total": 0, "by_pair": []}
    assert r["paths"] == []
    assert r["checkouts"]["total"] == 0
    assert r["first_touch_to_checkout"] == {
        "count": 0,
        "mean_seconds": None,
        "median_seconds": None,
        "buckets": [],
    }


def test_rates_per_start_channel_path_and_overall() -> None:
    fields = {
        "carts_started:mobile_app": 10,
        "carts_started:web": 5,
        "converted:mobile_app": 6,
        "converted_path:mobile_app>web>pos": 4,
        "converted_path:mobile_app": 2,
        "abandoned:mobile_app": 2,
        "abandoned:web": 5,
        "abandoned_path:mobile_app": 2,
        "abandoned_path:web": 5,
        "resumes:mobile_app:web": 7,
        "resumes:web:pos": 3,
        "checkouts:pos": 4,
        "checkouts:web": 2,
    }
    r = report(fields, 40, 10)
    assert r["sessions"]["multichannel_share"] == 0.25
    app = r["carts"]["by_start_channel"]["mobile_app"]
    assert (app["conversion_rate"], app["abandonment_rate"]) == (0.6, 0.2)
    web = r["carts"]["by_start_channel"]["web"]
    assert (web["conversion_rate"], web["abandonment_rate"]) == (0.0, 1.0)
    assert r["carts"]["by_start_channel"]["pos"]["conversion_rate"] is None
    overall = r["carts"]["overall"]
    assert (overall["started"], overall["converted"], overall["abandoned"]) == (15, 6, 7)
    assert overall["conversion_rate"] == pytest.approx(6 / 15)
    assert overall["abandonment_rate"] == pytest.approx(7 / 15)
    assert r["paths"] == [
        {"path": "web", "converted": 0, "abandoned": 5, "conversion_rate": 0.0},
        {"path": "mobile_app", "converted": 2, "abandoned": 2, "conversion_rate": 0.5},
        {"path": "mobile_app>web>pos", "converted": 4, "abandoned": 0, "conversion_rate": 1.0},
    ]
    assert r["resumes"] == {
        "total": 10,
        "by_pair": [
            {"from_channel": "mobile_app", "to_channel": "web", "count": 7},
            {"from_channel": "web", "to_channel": "pos", "count": 3},
        ],
    }
    assert r["checkouts"]["total"] == 6
    assert r["checkouts"]["by_channel"]["pos"] == 4


def test_fields_naming_no_contract_channel_are_ignored() -> None:
    fields = {
        "carts_started:teleport": 9,
        "resumes:web:teleport": 9,
        "resumes:web": 9,
        "converted_path:web>teleport": 9,
        "abandoned_path:": 9,
        "checkouts:": 9,
        "something:else": 9,
        "converted_path:web>pos>kiosk>+": 1,
    }
    r = report(fields, 0, 0)
    assert r["carts"]["overall"]["started"] == 0
    assert r["resumes"]["total"] == 0
    assert [p["path"] for p in r["paths"]] == ["web>pos>kiosk>+"]
    assert r["checkouts"]["total"] == 0


def test_hgetall_bytes_are_decoded_and_non_integers_skipped() -> None:
    raw = {b"carts_started:web": b"3", b"ttc_count": b"x", b"\xffx": b"1"}
    assert counters(raw) == {"carts_started:web": 3, "\ufffdx": 1}


def test_the_multichannel_share_never_exceeds_one() -> None:
    # Two HyperLogLog estimates: the subset's may come out a little above the whole's.
    assert report({}, 100, 101)["sessions"]["multichannel_share"] == 1.0


def test_the_median_interpolates_within_its_bucket() -> None:
    # 4 observations in (60, 300]: rank 2 of 4 is halfway through that bucket.
    buckets = [(60.0, 0), (300.0, 4), (math.inf, 0)]
    assert quantile(0.5, buckets) == 180.0
    # 1 in [0, 60], 1 in (60, 300]: rank 1 ends the first bucket.
    assert quantile(0.5, [(60.0, 1), (300.0, 1), (math.inf, 0)]) == 60.0
    # The middle observation beyond every finite bound: the highest finite bound.
    assert quantile(0.5, [(60.0, 0), (300.0, 1), (math.inf, 3)]) == 300.0
    assert quantile(0.5, [(60.0, 0), (math.inf, 0)]) is None


observations = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=4_000_000, allow_nan=False),
        st.sampled_from([0.0, *TTC_BUCKETS]),  # exactly on a bound: in that bucket (le)
    ),
    min_size=1,
    max_size=60,
)


def _bucket_of(seconds: float) -> tuple[float, float]:
    lower = 0.0
    for bound in TTC_BUCKETS:
        if seconds <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


@settings(max_examples=400, deadline=None)
@given(obs=observations)
def test_the_median_lies_in_the_bucket_of_the_middle_observation(obs: list[float]) -> None:
    fields = dict(KpiDelta(first_touch_to_checkout=obs).fields())
    ttc = report(fields, 0, 0)["first_touch_to_checkout"]
    assert ttc["count"] == len(obs)
    assert ttc["mean_seconds"] == pytest.approx(sum(round(s * 1000) for s in obs) / 1000 / len(obs))
    middle = sorted(obs)[math.ceil(len(obs) / 2) - 1]
    lower, upper = _bucket_of(middle)
    median = ttc["median_seconds"]
    assert median is not None
    if math.isinf(upper):
        assert median == lower  # histogram_quantile's answer past the last finite bound
    else:
        assert lower <= median <= upper
    assert sum(b["count"] for b in ttc["buckets"]) == len(obs)


@settings(max_examples=200, deadline=None)
@given(obs=observations, q1=st.floats(0.01, 1.0), q2=st.floats(0.01, 1.0))
def test_quantiles_grow_with_q(obs: list[float], q1: float, q2: float) -> None:
    fields = dict(KpiDelta(first_touch_to_checkout=obs).fields())

    lo, hi = sorted((q1, q2))
    a, b = quantile(lo, histogram(fields)), quantile(hi, histogram(fields))
    assert a is not None
    assert b is not None
    assert a <= b
