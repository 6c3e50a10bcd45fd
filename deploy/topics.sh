#!/usr/bin/env bash
# Create Continuity's topics on a real Kafka cluster (idempotent), then check
# the one layout rule the workers depend on.
#
#   BOOTSTRAP=broker-1:9092 PARTITIONS=12 REPLICATION=3 deploy/topics.sh
#
# TLS/SASL: put client settings in a file and pass COMMAND_CONFIG=/path/client.properties.
# kafka-topics.sh is taken from PATH, else /opt/kafka/bin (the apache/kafka image),
# or from KAFKA_TOPICS.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-localhost:9092}"
PARTITIONS="${PARTITIONS:-12}"
REPLICATION="${REPLICATION:-3}"
# acks=all only waits for the *in-sync* replicas; with 3 replicas, 2 must hold a
# write before it is acknowledged, so one lost broker cannot lose history.
if ((REPLICATION >= 3)); then default_isr=2; else default_isr=1; fi
MIN_ISR="${MIN_ISR:-$default_isr}"
# Source topics: a week (Kafka's default), cleanup.policy=delete. Redis is no
# longer rebuilt from the whole history: `continuity rebuild` restores the
# session changelog, then folds only the tail of the source topics that the
# changelog does not hold yet. Never compact them: the key is the customer, and
# compaction would keep only each customer's last event. Retention also bounds
# erasure in Kafka: Kafka deletes a segment once its newest record is older than
# RETENTION_MS, so with a segment rolled every SEGMENT_MS (a day, not Kafka's 7
# days) a source record (personal data) is gone at most 8 days after it was
# written. -1 keeps them forever (`continuity offsets rewind` can then replay all
# of it), at the price of that bound.
RETENTION_MS="${RETENTION_MS:-604800000}"
SEGMENT_MS="${SEGMENT_MS:-86400000}"
# Dead letters carry the same personal data, so the same week by default. A
# repaired dead letter is only sure to fold as its event would have when it is
# replayed within the expiry grace (CONTINUITY_EXPIRY_GRACE, 7 days) of that
# event, and ContinuityDeadLetterSpike fires within minutes; keep them longer if
# your operators need to, knowing erasure then reaches them later.
DLQ_RETENTION_MS="${DLQ_RETENTION_MS:-$RETENTION_MS}"
# The session changelog (every committed session version, keyed by session key,
# tombstones when a session ends or is erased) is compacted, never deleted by
# age. Tombstones stay DELETE_RETENTION_MS after compaction reaches them: a
# session's version floor outlives it by one session TTL (cont:vf, so a
# returning customer's versions go on past every version a client saw), and a
# rebuild from the changelog can only restore it while the tombstone is there;
# a consumer reading from the start must also reach a tombstone before it goes,
# or it never learns the session ended. So at least CONTINUITY_SESSION_TTL (90 days).
CHANGELOG_DELETE_RETENTION_MS="${CHANGELOG_DELETE_RETENTION_MS:-7776000000}"
# The newest hour is never compacted, so a consumer close behind (a downstream
# system, a rebuild folding the tail) sees every version rather than only each
# session's latest, and a busy session is not rewritten by the cleaner every few
# minutes. Within a week everything is compacted: once a session's tombstone is
# written, its earlier versions (personal data) leave the changelog within the
# same bound as the source records.
CHANGELOG_MIN_COMPACTION_LAG_MS="${CHANGELOG_MIN_COMPACTION_LAG_MS:-3600000}"
CHANGELOG_MAX_COMPACTION_LAG_MS="${CHANGELOG_MAX_COMPACTION_LAG_MS:-604800000}"

SOURCE_TOPICS=(cart-events browse-events checkout-events) # schemas/topics.py
DLQ_TOPIC=events-dlq
ERASURES_TOPIC=session-erasures
NOTIFICATIONS_TOPIC=session-notifications
REPAIRS_TOPIC=events-dlq-repairs
CHANGELOG_TOPIC=session-changelog
FORWARDS_TOPIC=session-forwards
# Notifications are for live consumers (marketing, analytics); a week is plenty.
NOTIFICATIONS_RETENTION_MS="${NOTIFICATIONS_RETENTION_MS:-604800000}"
# Forwards: work one partition's commit hands to another's (a login merging a
# guest's session into its customer's), folded by the workers moments later. A
# week outlasts any outage the source topics would; never compacted.
FORWARDS_RETENTION_MS="${FORWARDS_RETENTION_MS:-604800000}"

KAFKA_TOPICS="${KAFKA_TOPICS:-$(command -v kafka-topics.sh || echo /opt/kafka/bin/kafka-topics.sh)}"
client=("$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP")
if [[ -n "${COMMAND_CONFIG:-}" ]]; then client+=(--command-config "$COMMAND_CONFIG"); fi

create() { # topic retention_ms [extra kafka-topics.sh arguments...]
  "${client[@]}" --create --if-not-exists --topic "$1" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION" \
    --config cleanup.policy=delete --config retention.ms="$2" \
    --config min.insync.replicas="$MIN_ISR" "${@:3}"
}

partition_count() { # topic -> PartitionCount from --describe
  local out n attempt
  # A topic just created may not be in every broker's metadata yet.
  for attempt in 1 2 3 4 5; do
    if out="$("${client[@]}" --describe --topic "$1" 2>/dev/null)"; then
      n="$(sed -n 's/.*PartitionCount:[[:space:]]*\([0-9][0-9]*\).*/\1/p' <<<"$out")"
      if [[ -n "$n" ]]; then
        echo "${n%%$'\n'*}"
        return 0
      fi
    fi
    sleep "$attempt"
  done
  echo "topics.sh: cannot describe topic $1 on $BOOTSTRAP" >&2
  return 1
}

echo "topics.sh: $BOOTSTRAP, $PARTITIONS partitions, replication $REPLICATION, min ISR $MIN_ISR"
# LogAppendTime: the record timestamp is the broker's append time, not the
# producer's clock, so continuity_kafka_age_at_commit_seconds measures the
# pipeline (append -> Redis commit) and not clock skew. Events carry their own
# occurred_at. An existing topic keeps its setting; change it with
# `kafka-configs.sh --alter --entity-type topics --entity-name <topic>
# --add-config message.timestamp.type=LogAppendTime`.
for topic in "${SOURCE_TOPICS[@]}"; do
  create "$topic" "$RETENTION_MS" --config segment.ms="$SEGMENT_MS" \
    --config message.timestamp.type=LogAppendTime
done
# Same count as the sources: nothing requires it, but one number is one less
# thing to get wrong when scaling.
create "$DLQ_TOPIC" "$DLQ_RETENTION_MS" --config segment.ms="$SEGMENT_MS"
# Keyed by session key: one customer's notifications keep their order.
create "$NOTIFICATIONS_TOPIC" "$NOTIFICATIONS_RETENTION_MS"
# Erasures: compacted (the key is the customer; the latest erasure is what counts)
# and never deleted, so a rebuild after years still honours them. One partition:
# they are few, and a rebuild reads them all before folding anything.
"${client[@]}" --create --if-not-exists --topic "$ERASURES_TOPIC" \
  --partitions 1 --replication-factor "$REPLICATION" \
  --config cleanup.policy=compact --config min.insync.replicas="$MIN_ISR"
# What operators did with dead letters (continuity dlq): compacted, keyed by the
# dead letter's source record, one partition, kept for good like the erasures.
"${client[@]}" --create --if-not-exists --topic "$REPAIRS_TOPIC" \
  --partitions 1 --replication-factor "$REPLICATION" \
  --config cleanup.policy=compact --config min.insync.replicas="$MIN_ISR"

# --if-not-exists leaves an existing topic as it is: topics created before the
# week's retention keep theirs (-1); move them with `kafka-configs.sh --alter
# --entity-type topics --entity-name <topic> --add-config
# retention.ms=604800000,segment.ms=86400000`. So check what is really
# there. A customer's events are keyed by customer and must land on the same
# partition number of every source topic (one worker owns partition n of all
# three); that only holds if the three partition counts are equal. The worker
# refuses to start otherwise; failing here fails earlier.
status=0
first=""
for topic in "${SOURCE_TOPICS[@]}"; do
  n="$(partition_count "$topic")"
  echo "  $topic: $n partitions"
  first="${first:-$n}"
  if [[ "$n" != "$first" ]]; then status=1; fi
done
if ((status)); then
  echo "topics.sh: source topics disagree on their partition count; workers will refuse to start" >&2
  exit 1
fi
# The changelog is co-partitioned with the sources: keyed by session key, the
# key the events of that session travel under, so a session's versions sit on
# the partition number its events do. It takes the sources' real count.
"${client[@]}" --create --if-not-exists --topic "$CHANGELOG_TOPIC" \
  --partitions "$first" --replication-factor "$REPLICATION" \
  --config cleanup.policy=compact \
  --config delete.retention.ms="$CHANGELOG_DELETE_RETENTION_MS" \
  --config min.compaction.lag.ms="$CHANGELOG_MIN_COMPACTION_LAG_MS" \
  --config max.compaction.lag.ms="$CHANGELOG_MAX_COMPACTION_LAG_MS" \
  --config min.insync.replicas="$MIN_ISR"
n="$(partition_count "$CHANGELOG_TOPIC")"
echo "  $CHANGELOG_TOPIC: $n partitions"
if [[ "$n" != "$first" ]]; then
  echo "topics.sh: $CHANGELOG_TOPIC has $n partitions, the source topics $first;" \
    "it must match them (workers will refuse to start)" >&2
  exit 1
fi
# The forwards are addressed to partitions of the same layout and folded with the
# sources (one worker owns partition n of each): the sources' real count too.
"${client[@]}" --create --if-not-exists --topic "$FORWARDS_TOPIC" \
  --partitions "$first" --replication-factor "$REPLICATION" \
  --config cleanup.policy=delete --config retention.ms="$FORWARDS_RETENTION_MS" \
  --config min.insync.replicas="$MIN_ISR"
n="$(partition_count "$FORWARDS_TOPIC")"
echo "  $FORWARDS_TOPIC: $n partitions"
if [[ "$n" != "$first" ]]; then
  echo "topics.sh: $FORWARDS_TOPIC has $n partitions, the source topics $first;" \
    "it must match them (workers will refuse to start)" >&2
  exit 1
fi
if [[ "$first" != "$PARTITIONS" ]]; then
  # Not fatal: the workers follow the topics. Partitions can only be added, and
  # adding them moves customers to other partitions (see deploy/README.md).
  echo "topics.sh: warning: topics already existed with $first partitions, not $PARTITIONS;" \
    "set CONTINUITY_TOPIC_PARTITIONS=$first" >&2
fi
echo "topics.sh: ok"
