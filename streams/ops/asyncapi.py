"""The AsyncAPI 3 document of every topic, generated from the models and topic settings.

One channel per topic: its address, the key, the partitioning (the source topics,
the session changelog and the session forwards share one partition count and one
key -> partition mapping), its cleanup policy and retention as
``streams/kafka/topics.py`` creates it, the headers, and one message per record
kind with the payload's JSON Schema from the pydantic models in ``schemas/``.
Exported with the JSON Schema files (``make schemas``); a test fails when the
checked-in copy is stale, and the node parser validates it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.changelog import (
    CONTROL_HEADER,
    POSITIONS_HEADER,
    REASON_HEADER,
    SEQ_HEADER,
    VERSION_HEADER,
    WATERMARK_KEY,
    SessionState,
    Watermark,
)
from schemas.dead_letter import DETAIL_HEADER as DLQ_DETAIL_HEADER
from schemas.dead_letter import KIND_HEADER as DLQ_KIND_HEADER
from schemas.dead_letter import OFFSET_HEADER as DLQ_OFFSET_HEADER
from schemas.dead_letter import PARTITION_HEADER as DLQ_PARTITION_HEADER
from schemas.dead_letter import REASON_HEADER as DLQ_REASON_HEADER
from schemas.dead_letter import REFERENCE_KIND, DeadLetterReference
from schemas.dead_letter import SIZE_HEADER as DLQ_SIZE_HEADER
from schemas.dead_letter import TOPIC_HEADER as DLQ_TOPIC_HEADER
from schemas.events import EVENT_MODELS, EVENT_TYPES, ID_PATTERN
from schemas.forward import Forward
from schemas.notifications import CartAbandoned, SessionResumedElsewhere
from schemas.records import ErasureRecord, RepairRecord
from schemas.topics import (
    BROWSE_EVENTS,
    CART_EVENTS,
    CHECKOUT_EVENTS,
    DEAD_LETTERS,
    DLQ_REPAIRS,
    ERASURES,
    FORWARD_ORIGIN_HEADER,
    FORWARD_SEQ_HEADER,
    FORWARD_SPACE_HEADER,
    NOTIFICATIONS,
    REPLAYED_FROM_HEADER,
    SESSION_CHANGELOG,
    SESSION_FORWARDS,
    SOURCE_TOPICS,
    topic_for,
)
from streams.core.fold import Reason
from streams.kafka.topics import topic_configs

ASYNCAPI_VERSION = "3.1.0"
# The document's own version: raised when a channel or message changes meaning.
DOCUMENT_VERSION = "1.0.0"
KAFKA_BINDING = "0.5.0"
COMPONENT_REF = "#/components/schemas/{model}"
# The channels whose partition count is CONTINUITY_TOPIC_PARTITIONS: one key lands on
# the same partition number of each (the default partitioner, murmur2 of the key).
CO_PARTITIONED: tuple[str, ...] = (*SOURCE_TOPICS, SESSION_CHANGELOG, SESSION_FORWARDS)
# Channel id in the document -> topic.
CHANNELS: dict[str, str] = {
    "cartEvents": CART_EVENTS,
    "browseEvents": BROWSE_EVENTS,
    "checkoutEvents": CHECKOUT_EVENTS,
    "deadLetters": DEAD_LETTERS,
    "sessionNotifications": NOTIFICATIONS,
    "sessionErasures": ERASURES,
    "deadLetterRepairs": DLQ_REPAIRS,
    "sessionChangelog": SESSION_CHANGELOG,
    "sessionForwards": SESSION_FORWARDS,
}

_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    *((m, "validation") for m in EVENT_MODELS),
    (CartAbandoned, "serialization"),
    (SessionResumedElsewhere, "serialization"),
    (SessionState, "serialization"),
    (Watermark, "serialization"),
    (Forward, "serialization"),
    (ErasureRecord, "serialization"),
    (RepairRecord, "serialization"),
    (DeadLetterReference, "serialization"),
]


def document() -> dict[str, Any]:
    """The AsyncAPI 3 document, as a JSON-ready dict (stable: sorted where it matters)."""
    refs, defs = models_json_schema(_MODELS, ref_template=COMPONENT_REF)
    schemas: dict[str, Any] = dict(sorted(defs.get("$defs", {}).items()))

    def ref(model: type[BaseModel]) -> str:
        for (m, _mode), r in refs.items():
            if m is model:
                return str(r["$ref"])
        raise KeyError(model.__name__)

    messages: dict[str, Any] = {}
    for model, event_type in zip(EVENT_MODELS, EVENT_TYPES, strict=True):
        messages[model.__name__] = _message(
            event_type,
            ref(model),
            key=_customer_key(),
            headers=_headers(
                {
                    REPLAYED_FROM_HEADER: "On a replayed dead letter only: the dead letter it "
                    "repairs, `events-dlq:<partition>:<offset>`."
                }
            ),
            summary=f"A `{event_type}` event.",
        )
    notices: tuple[type[BaseModel], ...] = (CartAbandoned, SessionResumedElsewhere)
    for notice in notices:
        messages[notice.__name__] = _message(
            str(notice.model_fields["type"].default),
            ref(notice),
            key=_session_key(),
            summary=(notice.__doc__ or "").strip().splitlines()[0],
        )
    messages["SessionState"] = _message(
        "session-state",
        ref(SessionState),
        key=_session_key(),
        headers=_headers({SEQ_HEADER: "The commit's sequence (`<ms>-<n>`), as in `seq`."}),
        summary="One key's state as a commit left it.",
    )
    messages["SessionTombstone"] = _message(
        "session-tombstone",
        None,
        key=_session_key(),
        headers=_headers(
            {
                REASON_HEADER: "Why the key ended: `expired`, `erased` or `ended`.",
                VERSION_HEADER: "The last version the key had (decimal): its next session "
                "goes on from there.",
                POSITIONS_HEADER: "The source positions the tombstone reflects (JSON: topic "
                "-> an applied offset per partition).",
                SEQ_HEADER: "The commit's sequence (`<ms>-<n>`).",
            },
            required=[REASON_HEADER, VERSION_HEADER, POSITIONS_HEADER, SEQ_HEADER],
        ),
        summary="A key's state ended (a record with no value; compaction removes the key).",
    )
    messages["ChangelogWatermark"] = _message(
        "watermark",
        ref(Watermark),
        key={"type": "string", "const": WATERMARK_KEY},
        headers=_headers(
            {CONTROL_HEADER: "Always `watermark`: not a key's state; consumers skip it."},
            required=[CONTROL_HEADER],
        ),
        summary="A partition's watermark: every earlier record of it reflects these "
        "positions. Published on the partition it speaks for, whatever its key hashes to.",
    )
    messages["Forward"] = _message(
        "forward",
        ref(Forward),
        key=_session_key("The key the forward is for: it lands on that key's partition."),
        headers=_headers(
            {
                FORWARD_ORIGIN_HEADER: "The partition whose commit wrote it (decimal).",
                FORWARD_SEQ_HEADER: "Its id in that partition's forwards stream "
                "(`<ms>-<seq>`); with the origin, names the record across re-sends.",
                FORWARD_SPACE_HEADER: "The key prefix (deployment) whose relay sent it.",
            },
            required=[FORWARD_ORIGIN_HEADER, FORWARD_SEQ_HEADER, FORWARD_SPACE_HEADER],
        ),
        summary="One partition's work handed to another (a merge across partitions).",
    )
    messages["Erasure"] = _message(
        "erasure",
        ref(ErasureRecord),
        key={"type": "string", "pattern": f"^{ID_PATTERN}$", "description": "The customer id."},
        summary="An erasure: whose records, and up to where in each source partition.",
    )
    messages["Repair"] = _message(
        "repair",
        ref(RepairRecord),
        key={
            "type": "string",
            "description": "The dead letter's source record, `topic:partition@offset`.",
        },
        summary="What an operator did with one dead letter (latest per key wins).",
    )
    messages["DeadLetter"] = {
        **_message(
            "dead-letter",
            None,
            key={
                "description": "The rejected record's key, verbatim (any bytes, or none).",
            },
            headers=_headers(
                {
                    DLQ_REASON_HEADER: "Why it was rejected (the worker's reasons are listed "
                    "in `enum`).",
                    DLQ_DETAIL_HEADER: "A human-readable detail (may be empty).",
                    DLQ_TOPIC_HEADER: "The topic the record was read from.",
                    DLQ_PARTITION_HEADER: "Its partition (decimal).",
                    DLQ_OFFSET_HEADER: "Its offset (decimal).",
                },
                required=[
                    DLQ_REASON_HEADER,
                    DLQ_DETAIL_HEADER,
                    DLQ_TOPIC_HEADER,
                    DLQ_PARTITION_HEADER,
                    DLQ_OFFSET_HEADER,
                ],
                enums={DLQ_REASON_HEADER: sorted(r.value for r in Reason)},
            ),
            summary="A rejected source record, its key and value bytes as they came.",
        ),
        "contentType": "application/octet-stream",
        "payload": {
            "description": "The rejected record's value bytes, verbatim (often not JSON: "
            "that may be why it was rejected)."
        },
    }
    # A record too large to copy within the producer's limit is dead-lettered as where
    # to read it instead (docs/security.md, Dead letters).
    messages["DeadLetterReference"] = _message(
        "dead-letter-reference",
        ref(DeadLetterReference),
        key={"description": "The rejected record's key, verbatim, when it is short enough."},
        headers=_headers(
            {
                DLQ_REASON_HEADER: "Why it was rejected.",
                DLQ_DETAIL_HEADER: "A human-readable detail (may be empty).",
                DLQ_TOPIC_HEADER: "The topic the record was read from.",
                DLQ_PARTITION_HEADER: "Its partition (decimal).",
                DLQ_OFFSET_HEADER: "Its offset (decimal).",
                DLQ_KIND_HEADER: "`reference`: the value says where the record is.",
                DLQ_SIZE_HEADER: "The record's value size in bytes (decimal).",
            },
            required=[
                DLQ_REASON_HEADER,
                DLQ_TOPIC_HEADER,
                DLQ_PARTITION_HEADER,
                DLQ_OFFSET_HEADER,
                DLQ_KIND_HEADER,
            ],
            enums={DLQ_KIND_HEADER: [REFERENCE_KIND]},
        ),
        summary="A rejected source record too large to copy: where to read it back.",
    )

    channels: dict[str, Any] = {}
    for cid, topic in CHANNELS.items():
        channels[cid] = _channel(topic, _messages_of(topic))

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:continuity:topics",
        "info": {
            "title": "Continuity topics",
            "version": DOCUMENT_VERSION,
            "description": (
                "Every Kafka topic of Continuity: the source events every channel "
                "publishes, what the workers write back (dead letters, notifications, "
                "the session changelog, forwards between partitions) and the operators' "
                "ledgers (erasures, dead-letter repairs). Generated from the pydantic "
                "models in `schemas/` by `make schemas`; the prose is docs/wire-contract.md. "
                "Kafka header values are UTF-8 text."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "Any Kafka-protocol broker (`KAFKA_BOOTSTRAP`).",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": channels,
        "operations": _operations(channels),
        "components": {"schemas": schemas, "messages": messages},
    }


def message_ids(topic: str) -> list[str]:
    """The component message ids a topic's records may be (for tests and tools)."""
    return _messages_of(topic)


def _messages_of(topic: str) -> list[str]:
    if topic in SOURCE_TOPICS:
        return [
            m.__name__
            for m, t in zip(EVENT_MODELS, EVENT_TYPES, strict=True)
            if topic_for(t) == topic
        ]
    return {
        DEAD_LETTERS: ["DeadLetter", "DeadLetterReference"],
        NOTIFICATIONS: ["CartAbandoned", "SessionResumedElsewhere"],
        ERASURES: ["Erasure"],
        DLQ_REPAIRS: ["Repair"],
        SESSION_CHANGELOG: ["SessionState", "SessionTombstone", "ChangelogWatermark"],
        SESSION_FORWARDS: ["Forward"],
    }[topic]


_DESCRIPTIONS = {
    CART_EVENTS: "Cart changes, logins (`session.identified`) and undone merges, from every "
    "channel. Keyed by customer: events of one customer stay in order.",
    BROWSE_EVENTS: "Product views and searches, from every channel. Keyed by customer.",
    CHECKOUT_EVENTS: "Checkouts and POS handoff claims. Keyed by customer.",
    DEAD_LETTERS: "Source records the worker rejected, with why and where they came from in "
    "headers (at least once: deduplicate on the source topic, partition and offset). "
    "`continuity dlq` lists, repairs and replays them.",
    NOTIFICATIONS: "Outbound notifications, keyed by session key; at least once, with a "
    "stable `notification_id` to deduplicate on.",
    ERASURES: "Every erasure, keyed by customer id, kept for good: a rebuild restores them "
    "before it folds.",
    DLQ_REPAIRS: "The dead-letter repair ledger: what became of each dead letter (replayed or "
    "dropped), keyed by its source record; the latest record of a key is its state.",
    SESSION_CHANGELOG: "Every committed state of every session key, with tombstones when a "
    "session ends or is erased, and one watermark per partition. At least once, ordered per "
    "key: keep the highest `seq` per key. The feed for downstream systems, and what "
    "`continuity rebuild` restores Redis from.",
    SESSION_FORWARDS: "Internal to the workers: one partition's commit hands work to "
    "another's (a login merging a guest of another partition). Folded with the source topics.",
}


def _partitioning(topic: str) -> dict[str, Any]:
    if topic in CO_PARTITIONED:
        return {
            "partitions": "CONTINUITY_TOPIC_PARTITIONS (default 8), the same on every one of "
            "coPartitionedWith; the workers refuse topics whose counts differ",
            "coPartitionedWith": [t for t in CO_PARTITIONED if t != topic],
            "partitioner": "Kafka's default (murmur2 of the key): a key's partition number "
            "is the same on each co-partitioned topic, and names its Redis slot "
            "(cont:{p<partition>}:...)",
        }
    if topic in (ERASURES, DLQ_REPAIRS):
        return {"partitions": "1 (one order for every record)"}
    return {"partitions": "the source topics' count when created by the workers (any count works)"}


def _channel(topic: str, message_names: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, value in topic_configs(topic).items():
        config[name] = value.split(",") if name == "cleanup.policy" else int(value)
    binding: dict[str, Any] = {"topic": topic, "bindingVersion": KAFKA_BINDING}
    if topic in (ERASURES, DLQ_REPAIRS):
        binding["partitions"] = 1
    binding["topicConfiguration"] = config
    return {
        "address": topic,
        "title": topic,
        "description": _DESCRIPTIONS[topic],
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in message_names},
        "bindings": {"kafka": binding},
        "x-partitioning": _partitioning(topic),
    }


# Who sends to and who receives from each channel (the documented producers and
# consumers; downstream systems receive the outbound ones).
_SENDERS = {
    "cartEvents": "Frontends, POS, the gateway (`POST /v1/events`) and `continuity produce`.",
    "browseEvents": "Frontends, POS, the gateway and `continuity produce`.",
    "checkoutEvents": "Frontends, POS, the gateway (handoff claims too).",
    "deadLetters": "The worker, for every record it rejects.",
    "sessionNotifications": "The worker's notification relay.",
    "sessionErasures": "`continuity erase` and the gateway's erase route.",
    "deadLetterRepairs": "`continuity dlq replay` and `continuity dlq drop`.",
    "sessionChangelog": "The worker's changelog relay, one per partition at a time.",
    "sessionForwards": "The worker's forward relay (forward mode).",
}
_RECEIVERS = {
    "cartEvents": "The worker folds it into Redis.",
    "browseEvents": "The worker folds it into Redis.",
    "checkoutEvents": "The worker folds it into Redis.",
    "deadLetters": "`continuity dlq` (operators).",
    "sessionNotifications": "Downstream systems (messaging, CRM).",
    "sessionErasures": "The worker and `continuity rebuild`.",
    "deadLetterRepairs": "`continuity dlq`.",
    "sessionChangelog": "Downstream systems (warehouse, CDP, search) and `continuity rebuild`.",
    "sessionForwards": "The worker folds it with the source topics.",
}


def _operations(channels: dict[str, Any]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for cid, channel in channels.items():
        msgs = [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in channel["messages"]]
        stem = cid[0].upper() + cid[1:]
        ops[f"send{stem}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": _SENDERS[cid],
            "messages": msgs,
        }
        ops[f"receive{stem}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": _RECEIVERS[cid],
            "messages": msgs,
        }
    return ops


def _customer_key() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": f"^{ID_PATTERN}$",
        "description": "The customer key: `customer_id` when the event has one, else "
        "`anonymous_id`. Decides the partition, the same on every co-partitioned topic.",
    }


def _session_key(
    description: str = "The session key: a customer id, or a guest's anonymous id.",
) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{ID_PATTERN}$", "description": description}


def _headers(
    described: dict[str, str],
    required: list[str] | None = None,
    enums: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, text in described.items():
        props[name] = {"type": "string", "description": text}
        if enums and name in enums:
            props[name]["enum"] = enums[name]
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _message(
    name: str,
    payload_ref: str | None,
    *,
    key: dict[str, Any],
    summary: str,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "title": name, "summary": summary}
    if payload_ref is None:
        out["payload"] = {"type": "null", "description": "No value: a tombstone."}
    else:
        out["payload"] = {"$ref": payload_ref}
    if headers is not None:
        out["headers"] = headers
    out["bindings"] = {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING}}
    return out
