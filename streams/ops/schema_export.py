"""Export JSON Schema files from the pydantic models (the models are the source of truth)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

import schemas
from schemas.changelog import SESSION_STATE_ADAPTER, WATERMARK_ADAPTER
from schemas.dead_letter import REFERENCE_ADAPTER
from schemas.events import EVENT_ADAPTER, EVENT_MODELS
from schemas.notifications import NOTIFICATION_ADAPTER
from schemas.session import Session
from streams.gateway.openapi import document
from streams.ops import asyncapi

SCHEMA_DIR = Path(schemas.__file__).resolve().parent / "json"
ASYNCAPI_FILE = "asyncapi.json"


def rendered() -> dict[str, str]:
    """File name -> text: the JSON Schema of every event type, the event union, the
    session, the notifications, the changelog and the dead-letter reference; the
    topics' AsyncAPI document and the gateway's OpenAPI document."""
    files: dict[str, str] = {}
    for model in EVENT_MODELS:
        event_type = model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
        files[f"{event_type}.schema.json"] = _dump(model.model_json_schema())
    files["event.schema.json"] = _dump(EVENT_ADAPTER.json_schema())
    # The session is what the API serves, so its schema describes the serialized form
    # (Decimal as a string), not what the model would accept as input.
    files["session.schema.json"] = _dump(TypeAdapter(Session).json_schema(mode="serialization"))
    # What session-notifications carries, as it is written.
    files["notification.schema.json"] = _dump(
        NOTIFICATION_ADAPTER.json_schema(mode="serialization")
    )
    # What session-changelog carries: a key's state, and the watermark control record.
    files["session-changelog.schema.json"] = _dump(
        SESSION_STATE_ADAPTER.json_schema(mode="serialization")
    )
    files["session-changelog-watermark.schema.json"] = _dump(
        WATERMARK_ADAPTER.json_schema(mode="serialization")
    )
    # The value of a dead letter that references its record instead of copying it.
    files["dead-letter-reference.schema.json"] = _dump(
        REFERENCE_ADAPTER.json_schema(mode="serialization")
    )
    # The gateway's routes and answers (OpenAPI 3.1), with the default event limit.
    files["gateway.openapi.json"] = _dump(document())
    # Every topic in one AsyncAPI 3 document: keys, partitioning, retention, headers, and
    # these same models' schemas as its messages' payloads.
    files[ASYNCAPI_FILE] = _dump(asyncapi.document())
    return files


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files missing or different from what the models say."""
    out = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            out.append(name)
    return out


def _dump(schema: dict[str, object]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
