"""Sessions active: which HyperLogLog buckets a commit feeds and a count reads. Pure.

Every committed session key is added (PFADD) to the HyperLogLog of the
current time bucket, ``P:h:<bucket>``; the gauge is PFCOUNT over the buckets
of the window, i.e. the number of distinct sessions changed in the last
``WINDOW_SECONDS`` (to within one bucket, and HyperLogLog's ~1% error).
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


def bucket_key(prefix: str, number: int) -> str:
    """The Redis key of one bucket."""
    return f"{prefix}:h:{number}"


def multichannel_key(prefix: str, number: int) -> str:
    """The Redis key of one bucket of the sessions on two or more channels."""
    return f"{prefix}:hm:{number}"


def window_keys(prefix: str, now: float) -> list[str]:
    """The bucket keys a count at ``now`` reads, oldest first."""
    return [bucket_key(prefix, b) for b in range(bucket(now - WINDOW_SECONDS), bucket(now) + 1)]
