"""Checking Kafka records against the AsyncAPI document (schemas/json/asyncapi.json).

A record conforms to a channel when one of the channel's messages accepts its key
(the Kafka binding's key schema), its headers (values as UTF-8 text) and its value
(JSON parsed, a tombstone as null; a message of another content type takes any bytes),
each checked with ``jsonschema`` against the document's own schemas.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from streams.ops.schema_export import ASYNCAPI_FILE, SCHEMA_DIR

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_URI = "urn:continuity:asyncapi"
VALIDATE_SCRIPT = Path(__file__).with_name("asyncapi_validate.mjs")


def load() -> dict[str, Any]:
    """The checked-in AsyncAPI document."""
    doc: dict[str, Any] = json.loads((SCHEMA_DIR / ASYNCAPI_FILE).read_text())
    return doc


@cache
def _registry() -> Registry:
    return Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(load(), default_specification=DRAFT7)
    )


def _validator(pointer: str) -> Draft7Validator:
    return Draft7Validator({"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=_registry())


def channel_of(doc: dict[str, Any], topic: str) -> str:
    """The channel id whose address is ``topic``."""
    for cid, channel in doc["channels"].items():
        if channel["address"] == topic:
            return str(cid)
    raise KeyError(topic)


def problems(doc: dict[str, Any], topic: str, record: Any) -> list[str]:
    """Why no message of ``topic``'s channel accepts ``record`` (empty: one does)."""
    channel = doc["channels"][channel_of(doc, topic)]
    found: list[str] = []
    for name in channel["messages"]:
        pointer = f"/components/messages/{name}"
        message = doc["components"]["messages"][name]
        why = _message_problems(pointer, message, record)
        if not why:
            return []
        found.append(f"{name}: " + "; ".join(why))
    return found


def _message_problems(pointer: str, message: dict[str, Any], record: Any) -> list[str]:
    why: list[str] = []
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    for err in _validator(f"{pointer}/bindings/kafka/key").iter_errors(key):
        why.append(f"key {key!r}: {err.message}")
    if "headers" in message:
        headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
        for err in _validator(f"{pointer}/headers").iter_errors(headers):
            why.append(f"headers: {err.message}")
    if message.get("contentType", "application/json") == "application/json":
        try:
            value = None if record.value is None else json.loads(record.value)
        except ValueError as exc:
            return [*why, f"value is not JSON: {exc}"]
        for err in _validator(f"{pointer}/payload").iter_errors(value):
            where = "/".join(str(p) for p in err.absolute_path)
            why.append(f"payload {where}: {err.message[:200]}")
    return why


def node_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run @asyncapi/parser on ``path`` (skips without node; fails without the install)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the AsyncAPI parser cannot run")
    if not (ROOT / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("@asyncapi/parser is not installed: run `make setup` (npm ci)")
    return subprocess.run(
        [node, str(VALIDATE_SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
