"""Prometheus metrics of the worker, and how the facts of a batch are recorded in them.

Labels are bounded: a channel or event type from the contract (or
``unknown``), a topic, a partition number, an outcome, a reason, a Redis
operation; never a customer id. Each worker process is its own scrape target
with its own registry, so nothing here is counted by two processes: batch
counters belong to the worker that committed the batch (a plan is committed
once), per-partition gauges to the worker assigned the partition
(``streams/worker/gauges.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from schemas.events import Channel
from schemas.topics import FOLDED_TOPICS, SOURCE_TOPICS
from streams.core.facts import BatchFacts, RecordLabels
from streams.core.fold import Reason
from streams.core.kpi_delta import TTC_BUCKETS, KpiDelta

REDIS_OPERATIONS = ("load", "commit", "refresh")

EVENTS = Counter(
    "continuity_events_total",
    "Source records by topic and final outcome (applied, duplicate, already_applied, "
    "rejected, erased), each counted once, by the worker that decided it.",
    ["topic", "outcome"],
)
RECEIVED = Counter(
    "continuity_events_received_total",
    "Records received from Kafka by channel and event type (counted before folding).",
    ["channel", "type"],
)
PROCESSED = Counter(
    "continuity_events_processed_total",
    "Source records committed, by channel, event type and final outcome "
    "(applied, duplicate, already_applied, rejected = dead-lettered, erased): each once, "
    "where it was decided (a record forwarded to another partition counts there).",
    ["channel", "type", "outcome"],
)
DEFERRED = Counter(
    "continuity_events_deferred_total",
    "Steps of source records on their way, by source topic: forwarded (handed to another "
    "partition) or held (kept by a session waiting for a merge). Not final outcomes.",
    ["topic", "outcome"],
)
FORWARDS_CONSUMED = Counter(
    "continuity_forwards_consumed_total",
    "session-forwards records consumed, by what became of the record itself: applied "
    "(its work done), duplicate (a relay's re-send), already_applied, rejected.",
    ["outcome"],
)
MISPLACED = Counter(
    "continuity_misplaced_records_total",
    "Source records that came on another partition than their key's (a producer not "
    "partitioning with murmur2): forwarded to their key's partition.",
)
DEAD_LETTERS = Counter(
    "continuity_dead_letters_total",
    "Records sent to the dead-letter topic, by reason.",
    ["topic", "reason"],
)
DEAD_LETTER_REFERENCES = Counter(
    "continuity_dead_letter_references_total",
    "Records dead-lettered as a reference to their position: too large to copy within "
    "CONTINUITY_DEAD_LETTER_MAX_BYTES, or refused as too large by the broker.",
    ["topic", "reason"],
)
DEAD_LETTER_SEND_FAILURES = Counter(
    "continuity_dead_letter_send_failures_total",
    "Failed sends of a dead letter (each retried: its partition waits), by error and "
    "whether Kafka calls the error retriable.",
    ["error", "retriable"],
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
REDIS_ROLLBACKS = Counter(
    "continuity_redis_rollbacks_total",
    "Partitions found with an applied offset in Redis below one known applied (a failover "
    "to a lagging replica, a crash within AOF's fsync window, a restore): folded again.",
    ["topic"],
)
LOG_RESETS = Counter(
    "continuity_log_resets_total",
    "Partitions whose log was found reset (broker data lost, topic recreated): a new epoch.",
    ["topic"],
)
REDIS_UP = Gauge("continuity_redis_up", "1 while the worker's last Redis operation succeeded.")
REDIS_SECONDS = Histogram(
    "continuity_redis_command_duration_seconds",
    "Duration of the worker's Redis round trips by operation (load, commit, refresh).",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDIS_ERRORS = Counter(
    "continuity_redis_errors_total",
    "Redis round trips that failed, by operation (load, commit, refresh).",
    ["operation"],
)
MERGE_DROPPED_LINES = Counter(
    "continuity_merge_dropped_lines_total",
    "Guest cart lines not merged (other currency or cart full) on login.",
)
BATCH_SIZE = Histogram(
    "continuity_batch_size",
    "Records per folded batch.",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
FETCHES_JOINED = Counter(
    "continuity_fetches_joined_total",
    "Fetches that arrived while the agent was folding and joined the one waiting for it.",
)
BATCH_SECONDS = Histogram(
    "continuity_batch_duration_seconds",
    "Time to decode, fold and commit one batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_AGE = Histogram(
    "continuity_event_age_at_commit_seconds",
    "Seconds from an applied event's occurred_at to its state being committed in Redis.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
APPEND_AGE = Histogram(
    "continuity_kafka_age_at_commit_seconds",
    "Seconds from an applied event's Kafka record timestamp to its state being committed.",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "continuity_consumer_lag_records",
    "Records beyond the last applied offset, per partition assigned to this worker.",
    ["topic", "partition"],
)
SESSIONS_ACTIVE = Gauge(
    "continuity_sessions_active",
    "Distinct sessions changed within the window (HyperLogLog estimate); exported only by "
    "the worker assigned partition 0 of cart-events.",
    ["window"],
)
MULTICHANNEL_SESSIONS = Counter(
    "continuity_multichannel_sessions_total",
    "Sessions whose channel set grew to two or more channels.",
)
CROSS_CHANNEL_RESUMES = Counter(
    "continuity_cross_channel_resumes_total",
    "Carts changed on one channel and next touched on another, by channel pair.",
    ["from_channel", "to_channel"],
)
CHECKOUTS_COMPLETED = Counter(
    "continuity_checkouts_completed_total",
    "Checkouts completed (applied checkout.completed events), by channel.",
    ["channel"],
)
CARTS_STARTED = Counter(
    "continuity_carts_started_total",
    "Empty carts that got their first line, by channel.",
    ["channel"],
)
CARTS_CONVERTED = Counter(
    "continuity_carts_converted_total",
    "Carts checked out, by the channel they started on and their channel path.",
    ["start_channel", "path"],
)
CARTS_ABANDONED = Counter(
    "continuity_carts_abandoned_total",
    "Carts abandoned (cart.abandoned delivered), by start channel and channel path.",
    ["start_channel", "path"],
)
FIRST_TOUCH_TO_CHECKOUT = Histogram(
    "continuity_first_touch_to_checkout_seconds",
    "From the first event since the previous checkout to a completed checkout.",
    buckets=TTC_BUCKETS,
)
SHARED_DEVICE = Counter(
    "continuity_shared_device_kept_apart_total",
    "Decisions of the shared-device guard: a sign-in that did not take the device's guest "
    "cart (sign_in), a guest event kept out of the last signed-in customer (guest_event).",
    ["what"],
)
EVENT_TIME_CLAMPED = Counter(
    "continuity_event_time_clamped_total",
    "Events whose occurred_at lay beyond CONTINUITY_EVENT_TIME_MAX_AHEAD / _MAX_BEHIND of "
    "their Kafka record's timestamp and were folded at that bound.",
)
NOTIFICATIONS = Counter(
    "continuity_notifications_sent_total",
    "Notifications published to session-notifications, by type.",
    ["type"],
)
NOTIFICATIONS_PENDING = Gauge(
    "continuity_notifications_pending",
    "Notifications in the Redis outbox not yet published (a stuck relay grows this).",
)

CHANGELOG_RECORDS = Counter(
    "continuity_changelog_records_total",
    "Records published to session-changelog (states and tombstones, not watermarks).",
)
CHANGELOG_PENDING = Gauge(
    "continuity_changelog_pending",
    "Changelog entries in the Redis outbox not yet published (a stuck relay grows this), "
    "of the partitions whose lease this worker holds: the sum over workers is the total.",
)
FORWARDS_PUBLISHED = Counter(
    "continuity_forwards_published_total",
    "Forward records published to session-forwards (a relay sending a round again after a "
    "crash or a lost lease counts its records again).",
)
FORWARD_RELAY_ERRORS = Counter(
    "continuity_forward_relay_errors_total",
    "Failed rounds of the forward relay (Redis or Kafka unavailable, a lease lost mid-round) "
    "and unreadable forward entries skipped.",
)
FORWARDS_PENDING = Gauge(
    "continuity_forwards_pending",
    "Forward records in a partition's Redis stream not yet published (a stuck relay grows "
    "this), reported by the worker holding the partition's lease.",
    ["partition"],
)

# Series an alert or a rate() reads exist at 0 from the start: a counter that
# appears with its first increment hides that increment from increase().
for _op in REDIS_OPERATIONS:
    REDIS_ERRORS.labels(_op)
for _topic in SOURCE_TOPICS:
    for _reason in Reason:
        DEAD_LETTERS.labels(_topic, _reason.value)
for _topic in FOLDED_TOPICS:
    LOG_RESETS.labels(_topic)
    REDIS_ROLLBACKS.labels(_topic)
for _channel in Channel:
    CHECKOUTS_COMPLETED.labels(_channel.value)
    CARTS_STARTED.labels(_channel.value)
for _type in ("cart.abandoned", "session.resumed_elsewhere"):
    NOTIFICATIONS.labels(_type)
for _what in ("sign_in", "guest_event"):
    SHARED_DEVICE.labels(_what)
for _topic in SOURCE_TOPICS:
    for _step in ("forwarded", "held"):
        DEFERRED.labels(_topic, _step)
for _outcome in ("applied", "duplicate", "already_applied", "rejected"):
    FORWARDS_CONSUMED.labels(_outcome)


# Labelled children, looked up once per metric and label values for the process's
# life: ``.labels()`` takes a lock and builds a key on every call, which a steady
# trickle of small batches paid per batch and label. Label values are bounded
# (above), so this is too; only metrics whose series are never removed come here.
_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: MetricWrapperBase, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once."""
    key = (id(metric), values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found


def record_received(labels: Iterable[RecordLabels]) -> None:
    """Count records as they arrive, before the batch is folded."""
    # One labelled child lookup per distinct (channel, type), not per record:
    # .labels() takes a lock and builds a key each call.
    counts: dict[tuple[str, str], int] = {}
    for lab in labels:
        key = (lab.channel, lab.type)
        counts[key] = counts.get(key, 0) + 1
    for (channel, type_), n in counts.items():
        child(RECEIVED, channel, type_).inc(n)


def record_batch(facts: BatchFacts) -> None:
    """Count the facts of one committed batch."""
    BATCH_SIZE.observe(facts.size)
    for (topic, outcome), n in facts.by_topic.items():
        child(EVENTS, topic, outcome).inc(n)
    for (topic, reason), n in facts.dead_letters.items():
        child(DEAD_LETTERS, topic, reason).inc(n)
    for (topic, step), n in facts.deferred.items():
        child(DEFERRED, topic, step).inc(n)
    for outcome, n in facts.forwards.items():
        child(FORWARDS_CONSUMED, outcome).inc(n)
    if facts.misplaced:
        MISPLACED.inc(facts.misplaced)
    if facts.dropped_lines:
        MERGE_DROPPED_LINES.inc(facts.dropped_lines)
    for (channel, type_, outcome), n in facts.processed.items():
        child(PROCESSED, channel, type_, outcome).inc(n)
    for channel, seconds in facts.event_ages:
        child(EVENT_AGE, channel).observe(seconds)
    for topic, seconds in facts.append_ages:
        child(APPEND_AGE, topic).observe(seconds)
    if facts.multichannel_sessions:
        MULTICHANNEL_SESSIONS.inc(facts.multichannel_sessions)
    record_kpis(facts.kpis)
    for what, n in facts.kept_apart.items():
        child(SHARED_DEVICE, what).inc(n)
    if facts.clamped:
        EVENT_TIME_CLAMPED.inc(facts.clamped)


def record_kpis(kpis: KpiDelta) -> None:
    """Count KPI increments: of a committed batch, or of acknowledged abandonments."""
    for (before, after), n in kpis.resumes.items():
        child(CROSS_CHANNEL_RESUMES, before.value, after.value).inc(n)
    for channel, n in kpis.checkouts.items():
        child(CHECKOUTS_COMPLETED, channel.value).inc(n)
    for channel, n in kpis.carts_started.items():
        child(CARTS_STARTED, channel.value).inc(n)
    for (start, path), n in kpis.converted.items():
        child(CARTS_CONVERTED, start.value, path).inc(n)
    for (start, path), n in kpis.abandoned.items():
        child(CARTS_ABANDONED, start.value, path).inc(n)
    for seconds in kpis.first_touch_to_checkout:
        FIRST_TOUCH_TO_CHECKOUT.observe(seconds)
