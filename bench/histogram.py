"""A Prometheus histogram read from ``/metrics`` text, and its quantiles. Pure.

The benchmark reads the gateway's own ``continuity_freshness_seconds`` before
and after a measurement and reports the quantiles of the difference the way
Prometheus' ``histogram_quantile`` computes them: linear interpolation inside
the bucket the rank falls in (so a quantile is only as exact as the buckets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def buckets(text: str, name: str) -> dict[float, float]:
    """Upper bound -> cumulative count of histogram ``name`` (no labels) in ``text``."""
    out: dict[float, float] = {}
    prefix = f'{name}_bucket{{le="'
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        series, value = line.rsplit(" ", 1)
        bound = series[len(prefix) : series.index('"', len(prefix))]
        out[math.inf if bound == "+Inf" else float(bound)] = float(value)
    return out


def delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """The counts added between two reads of one histogram."""
    return {le: n - before.get(le, 0.0) for le, n in after.items()}


def quantile(cumulative: Mapping[float, float], q: float) -> float | None:
    """``histogram_quantile(q, ...)`` of cumulative bucket counts; None when empty.

    A rank in the ``+Inf`` bucket answers the highest finite bound, as Prometheus does.
    """
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower
