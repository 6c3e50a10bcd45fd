"""The AsyncAPI document of the topics: what it states, and that the AsyncAPI parser
accepts it. Pure, apart from the parser (node; skipped where node is absent).

Its staleness is caught with the JSON Schema files' (tests/ops/test_schema_export.py);
tests/system/test_asyncapi_traffic.py checks real records against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

import schemas.topics as topics
from schemas.events import EVENT_TYPES
from schemas.records import ERASURE_ADAPTER, REPAIR_ADAPTER
from streams.core.dlq_repair import Repair, State
from streams.core.erasure import Erasure
from streams.kafka.topics import topic_configs
from streams.ops.asyncapi import CO_PARTITIONED, document
from streams.ops.schema_export import ASYNCAPI_FILE, SCHEMA_DIR
from tests.support.asyncapi import channel_of, node_validate

TOPICS = {
    value
    for name, value in vars(topics).items()
    if name.isupper() and isinstance(value, str) and not name.endswith("_HEADER")
}


def test_every_topic_is_a_channel_with_its_configuration() -> None:
    doc = document()
    assert {c["address"] for c in doc["channels"].values()} == TOPICS
    for topic in TOPICS:
        kafka = doc["channels"][channel_of(doc, topic)]["bindings"]["kafka"]
        stated = {
            k: ",".join(v) if isinstance(v, list) else str(v)
            for k, v in kafka["topicConfiguration"].items()
        }
        assert stated == topic_configs(topic), topic
    for topic in CO_PARTITIONED:
        part = doc["channels"][channel_of(doc, topic)]["x-partitioning"]
        assert set(part["coPartitionedWith"]) == set(CO_PARTITIONED) - {topic}


def test_every_event_type_is_a_message_on_its_topic() -> None:
    doc = document()
    names = {
        doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]: topic
        for topic in topics.SOURCE_TOPICS
        for ref in doc["channels"][channel_of(doc, topic)]["messages"].values()
    }
    assert names == {t: topics.topic_for(t) for t in EVENT_TYPES}


def test_the_ledger_models_describe_what_the_core_writes() -> None:
    """The erasure and repair records are written by the core's dataclasses; the models
    the document gives as their payloads must accept exactly that form."""
    erasure = Erasure("c-1", ("c-1", "g-1"), 1_700_000_000_000, {"cart-events:3": 9}, {"g-1": 4})
    assert ERASURE_ADAPTER.validate_json(erasure.dumps()).model_dump() == orjson.loads(
        erasure.dumps()
    )
    for repair in (
        Repair("cart-events:1@2", "0:5", State.DROPPED, 1, note="bad"),
        Repair("cart-events:1@3", "0:6", State.REPLAYED, 2, "e-1", "cart-events:1@9"),
    ):
        assert REPAIR_ADAPTER.validate_json(repair.dumps()).model_dump() == orjson.loads(
            repair.dumps()
        )


def test_the_asyncapi_parser_accepts_the_document() -> None:
    done = node_validate(SCHEMA_DIR / ASYNCAPI_FILE)
    assert done.returncode == 0, done.stdout + done.stderr
    errors = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [e for e in errors if e["severity"] <= 1] == [], "errors and warnings both count"


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: a cleanup policy Kafka does not know is refused."""
    doc = document()
    kafka = doc["channels"][channel_of(doc, topics.CART_EVENTS)]["bindings"]["kafka"]
    kafka["topicConfiguration"]["cleanup.policy"] = ["squash"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    done = node_validate(path)
    assert done.returncode == 1
    assert "cleanup.policy" in done.stdout
