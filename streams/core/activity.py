"""Sessions active: which HyperLogLog buckets a commit feeds and a count reads. Pure.

Every committed session key is added (PFADD) to the HyperLogLog of the
current time bucket (``P:h:<bucket>``, named in ``streams/store/keys.py``); the
gauge is PFCOUNT over the buckets of the window, i.e. the number of distinct
sessions changed in the last ``WINDOW_SECONDS`` (to within one bucket, and
HyperLogLog's ~1% error).
Cost is fixed whatever the traffic: at most 12 KiB per bucket, a handful of
buckets, one PFCOUNT per refresh. Buckets expire by themselves.
"""

from __future__ import annotations

BUCKET_SECONDS = 300
WINDOW_SECONDS = 1800
WINDOW_LABEL = "30m"
# A bucket must outlive the last window that reads it, plus slack for clock skew.
BUCKET_TTL_SECONDS = WINDOW_SECONDS + 2 * BUCKET_SECONDS


def bucket(at: float) -> int:
    """The bucket number of Unix time ``at``."""
    return int(at // BUCKET_SECONDS)


def window(now: float) -> range:
    """The bucket numbers a count at ``now`` reads, oldest first (the current one last).

    Numbers, not key names: the names are the store's (``streams/store/keys.py``,
    ``activity`` and ``multichannel``), which the pure core may not import.
    """
    return range(bucket(now - WINDOW_SECONDS), bucket(now) + 1)
