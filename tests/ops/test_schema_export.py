"""JSON Schema files are exported from the models, and a stale copy is caught. Pure."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import EVENT_TYPES, MONEY_PATTERN
from streams.ops.schema_export import export, rendered, stale


def test_checked_in_schema_files_match_the_models() -> None:
    assert stale() == [], "run `make schemas` and commit schemas/json/"


def test_every_event_type_has_a_schema_and_stale_copies_are_named(tmp_path: Path) -> None:
    names = set(rendered())
    assert {f"{t}.schema.json" for t in EVENT_TYPES} <= names
    assert {"event.schema.json", "session.schema.json"} <= names
    assert set(stale(tmp_path)) == names, "missing files count as stale"
    export(tmp_path)
    assert stale(tmp_path) == []
    path = tmp_path / "cart.item_added.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"].pop("event_id")
    path.write_text(json.dumps(schema))
    assert stale(tmp_path) == ["cart.item_added.schema.json"]


def test_prices_are_strings_in_the_exported_contract() -> None:
    schema = json.loads(rendered()["cart.item_added.schema.json"])
    price = schema["$defs"]["ItemAdded"]["properties"]["unit_price"]
    price.pop("title", None)
    assert price == {"type": "string", "pattern": MONEY_PATTERN, "examples": ["19.99"]}
    served = json.loads(rendered()["session.schema.json"])["$defs"]["CartLine"]["properties"]
    assert served["unit_price"]["type"] == "string", "the session serves prices as strings"
