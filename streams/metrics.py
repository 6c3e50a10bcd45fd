"""Prometheus metrics of the worker. Labels are bounded: never a customer id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "continuity_events_total",
    "Records consumed by source topic and outcome: applied, duplicate, already_applied, rejected.",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "continuity_dead_letters_total",
    "Records sent to the dead-letter topic, by reason.",
    ["topic", "reason"],
)
COMMIT_CONFLICTS = Counter(
    "continuity_commit_conflicts_total",
    "Batch commits refused because another writer changed what the batch read.",
    ["what"],
)
REDIS_RETRIES = Counter(
    "continuity_redis_retries_total",
    "Redis operations retried after a connection error or timeout.",
)
REDIS_UP = Gauge("continuity_redis_up", "1 while the worker's last Redis operation succeeded.")
MERGE_DROPPED_LINES = Counter(
    "continuity_merge_dropped_lines_total",
    "Guest cart lines not merged (other currency or cart full) on login.",
)
BATCH_SIZE = Histogram(
    "continuity_batch_size",
    "Records per folded batch.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
BATCH_SECONDS = Histogram(
    "continuity_batch_duration_seconds",
    "Time to decode, fold and commit one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
