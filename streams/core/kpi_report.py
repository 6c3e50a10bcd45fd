"""The omnichannel KPI report: the Redis KPI counters turned into rates. Pure.

Input: the fields of the KPI hash ``P:k`` (written by the commit script and
the notification relay, see ``streams/core/kpi_delta.py`` for what each counts)
and two HyperLogLog counts over the sessions-active window
(``streams/core/activity.py``): sessions changed in it, and those of them on two
or more channels. Output: the JSON of ``GET /v1/kpis``, which the gateway's
KPI gauges and the demo page also read.

Every ratio is ``None`` (JSON ``null``) when its denominator is 0, never a
made-up 0. Counters are read only for the channels of the wire contract
(``schemas.events.Channel``): a field naming anything else is ignored, so
what Redis holds can never add keys (or metric labels) beyond that set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.events import Channel
from streams.core.activity import BUCKET_SECONDS, WINDOW_LABEL, WINDOW_SECONDS
from streams.core.kpi_delta import TTC_BUCKETS

CHANNELS: tuple[Channel, ...] = tuple(Channel)
_BY_VALUE = {c.value: c for c in CHANNELS}


def counters(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, int]:
    """``HGETALL P:k`` as field -> integer; a value that is not an integer is skipped."""
    out: dict[str, int] = {}
    for k, v in raw.items():
        name = k.decode(errors="replace") if isinstance(k, bytes) else k
        try:
            out[name] = int(v)
        except ValueError:
            continue
    return out


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is 0."""
    return numerator / denominator if denominator > 0 else None


def report(
    fields: Mapping[str, int], active_sessions: int, multichannel_sessions: int
) -> dict[str, Any]:
    """The KPI report of the counters ``fields`` and the window's session counts."""
    # HyperLogLogs estimate (about 1% error) and are counted separately, so the
    # subset's estimate can exceed the whole's by a little: never a share over 1.
    multichannel = min(multichannel_sessions, active_sessions)
    return {
        "sessions": {
            "window": WINDOW_LABEL,
            "window_seconds": WINDOW_SECONDS,
            "bucket_seconds": BUCKET_SECONDS,
            "active": active_sessions,
            "multichannel": multichannel,
            "multichannel_share": ratio(multichannel, active_sessions),
        },
        "resumes": _resumes(fields),
        "carts": _carts(fields),
        "paths": _paths(fields),
        "checkouts": _checkouts(fields),
        "first_touch_to_checkout": first_touch_to_checkout(fields),
    }


def _per_channel(fields: Mapping[str, int], counter: str) -> dict[str, int]:
    # Hash fields of ``P:k`` such as ``carts_started:web``, not key names.
    return {c.value: max(0, fields.get(f"{counter}:{c.value}", 0)) for c in CHANNELS}


def _rates(started: int, converted: int, abandoned: int) -> dict[str, Any]:
    return {
        "started": started,
        "converted": converted,
        "abandoned": abandoned,
        "conversion_rate": ratio(converted, started),
        "abandonment_rate": ratio(abandoned, started),
    }


def _carts(fields: Mapping[str, int]) -> dict[str, Any]:
    started = _per_channel(fields, "carts_started")
    converted = _per_channel(fields, "converted")
    abandoned = _per_channel(fields, "abandoned")
    return {
        "overall": _rates(sum(started.values()), sum(converted.values()), sum(abandoned.values())),
        "by_start_channel": {
            c.value: _rates(started[c.value], converted[c.value], abandoned[c.value])
            for c in CHANNELS
        },
    }


def _resumes(fields: Mapping[str, int]) -> dict[str, Any]:
    pairs: list[dict[str, Any]] = []
    for name, n in fields.items():
        kind, _, rest = name.partition(":")
        src, _, dst = rest.partition(":")
        if kind != "resumes" or src not in _BY_VALUE or dst not in _BY_VALUE or n <= 0:
            continue
        pairs.append({"from_channel": src, "to_channel": dst, "count": n})
    pairs.sort(key=lambda p: (-p["count"], p["from_channel"], p["to_channel"]))
    return {"total": sum(p["count"] for p in pairs), "by_pair": pairs}


def _is_path(label: str) -> bool:
    """A label ``kpi_delta.path_label`` can write: enum channels joined by ``>``, maybe ``>+``."""
    hops = label.removesuffix(">+").split(">")
    return all(h in _BY_VALUE for h in hops)


def _paths(fields: Mapping[str, int]) -> list[dict[str, Any]]:
    converted: dict[str, int] = {}
    abandoned: dict[str, int] = {}
    for name, n in fields.items():
        kind, _, label = name.partition(":")
        target = {"converted_path": converted, "abandoned_path": abandoned}.get(kind)
        if target is not None and n > 0 and _is_path(label):
            target[label] = n
    rows: list[dict[str, Any]] = []
    for label in sorted(converted.keys() | abandoned.keys()):
        c, a = converted.get(label, 0), abandoned.get(label, 0)
        rows.append(
            {"path": label, "converted": c, "abandoned": a, "conversion_rate": ratio(c, c + a)}
        )
    # Busiest first; sorted() is stable, so equal totals stay in label order.
    rows.sort(key=lambda r: -(int(r["converted"]) + int(r["abandoned"])))
    return rows


def _checkouts(fields: Mapping[str, int]) -> dict[str, Any]:
    by_channel = _per_channel(fields, "checkouts")
    return {"total": sum(by_channel.values()), "by_channel": by_channel}


def histogram(fields: Mapping[str, int]) -> list[tuple[float, int]]:
    """The first-touch-to-checkout histogram: (upper bound in s, count in that bucket alone)."""
    bounds: list[float] = [*TTC_BUCKETS, math.inf]
    return [(b, max(0, fields.get(f"ttc:{'inf' if math.isinf(b) else int(b)}", 0))) for b in bounds]


def quantile(q: float, buckets: Iterable[tuple[float, int]]) -> float | None:
    """The ``q`` quantile of a histogram, interpolated within its bucket.

    Prometheus' ``histogram_quantile`` over non-cumulative ``(upper bound, count)``
    buckets sorted by bound: linear within the bucket holding the rank
    ``q * total``, the first bucket starting at 0, and the highest finite bound
    when the rank falls in the ``+Inf`` bucket. ``None`` without observations.
    """
    rows = list(buckets)
    total = sum(n for _, n in rows)
    if total <= 0:
        return None
    rank = q * total
    below, lower = 0, 0.0
    for upper, n in rows:
        if n > 0 and below + n >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / n
        below += n
        if not math.isinf(upper):
            lower = upper
    return lower


def first_touch_to_checkout(fields: Mapping[str, int]) -> dict[str, Any]:
    """Count, mean and median (seconds) of first touch -> completed checkout."""
    count = max(0, fields.get("ttc_count", 0))
    total_ms = max(0, fields.get("ttc_sum_ms", 0))
    buckets = histogram(fields)
    mean = ratio(total_ms / 1000, count)
    return {
        "count": count,
        "mean_seconds": mean,
        "median_seconds": quantile(0.5, buckets),
        "buckets": [
            {"le": "+Inf" if math.isinf(b) else str(int(b)), "count": n}
            for b, n in buckets
            if n > 0
        ],
    }
