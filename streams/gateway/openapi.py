"""The gateway's OpenAPI 3.1 document, rendered from the route contract. Pure (no I/O).

Schemas come from the models, never written twice: the request body is the wire
contract's event union (``schemas.events``), the session is ``schemas.session``
as it is served (serialised, without the fold's own ``recent_event_ids``), and
the other answers are ``schemas/api.py``. ``GET /openapi.json`` serves it, ``make
schemas`` exports it to ``schemas/openapi.json`` (a staleness test keeps the file
current), and ``tests/gateway/test_e2e_openapi.py`` runs Schemathesis against a
live gateway with it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from schemas.api import ANSWERS, ClaimRequest
from schemas.events import EVENT_ADAPTER
from schemas.session import Session
from streams.gateway.contract import (
    COMMON,
    HEADERS,
    JOURNEY_MAX_DEFAULT,
    ROUTES,
    Answer,
    Param,
    Route,
)

REF = "#/components/schemas/{model}"
MAX_EVENTS_DEFAULT = 500
VERSION = "1"
# The part of the fold's state a reader never gets (Session.public()).
NOT_SERVED = ("recent_event_ids",)


def document(
    max_events: int = MAX_EVENTS_DEFAULT, journey_max: int = JOURNEY_MAX_DEFAULT
) -> dict[str, Any]:
    """The OpenAPI document, with this gateway's limits (``max_events``:
    CONTINUITY_GATEWAY_MAX_EVENTS; ``journey_max``: CONTINUITY_JOURNEY_MAX_ENTRIES)."""
    components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        op = _operation(route, max_events)
        for param in op.get("parameters", ()):
            if route.name == "session_journey" and param["name"] == "limit":
                param["schema"] = {**param["schema"], "maximum": journey_max}
        paths.setdefault(route.path, {})[route.method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Continuity gateway",
            "version": VERSION,
            "summary": "Omnichannel cart and session continuity: read, follow, publish, hand off",
            "description": (
                "Every route but the public ones needs `Authorization: Bearer <JWT>` "
                "(HS256, `aud` continuity, `role` customer, pos or service); each "
                "operation's `x-continuity-roles` says which roles may call it, and "
                "docs/gateway-api.md what each may do. Every error is "
                '`{"error": <code>, "message": <text>}`; each answer lists its codes '
                "in `x-continuity-errors`."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "sessions", "description": "read, follow, erase"},
            {"name": "events", "description": "publish events"},
            {"name": "handoff", "description": "hand a session to a POS"},
            {"name": "kpis", "description": "omnichannel KPIs"},
            {"name": "service", "description": "health, readiness, metrics, this document"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "access_token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "the stream route only (a browser's EventSource "
                    "cannot set headers)",
                },
            },
        },
    }


def _schemas() -> dict[str, Any]:
    """Every model's JSON Schema under components, references between them rewritten."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        ("Event", "validation", EVENT_ADAPTER),
        ("Session", "serialization", TypeAdapter(Session)),
    ]
    inputs += [(m.__name__, _mode(m), TypeAdapter(m)) for m in ANSWERS]
    top, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    out: dict[str, Any] = dict(defs.get("$defs", {}))
    for (name, _), schema in top.items():
        # A model's top is a reference to its definition; a union's is its schema.
        if schema.get("$ref") != REF.format(model=name):
            out[name] = schema
    session = out["Session"]
    for field in NOT_SERVED:
        session.get("properties", {}).pop(field, None)
        if field in session.get("required", []):
            session["required"] = [r for r in session["required"] if r != field]
    return out


def _mode(model: type[BaseModel]) -> JsonSchemaMode:
    return "validation" if model is ClaimRequest else "serialization"


def _operation(route: Route, max_events: int) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "description": route.description,
        "tags": [route.tag],
        "x-continuity-roles": list(route.roles),
        "security": _security(route),
        "responses": {
            str(status): _response(status, answer)
            for status, answer in sorted({**route.answers, **COMMON}.items())
        },
    }
    if route.params:
        op["parameters"] = [_param(p) for p in route.params]
    if route.body == "events":
        event = {"$ref": REF.format(model="Event")}
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            event,
                            {
                                "type": "array",
                                # Each item is judged on its own: one that is no valid
                                # event is rejected in the results, the rest go on (202).
                                "items": {
                                    "anyOf": [
                                        event,
                                        {"description": "anything else: rejected on its own"},
                                    ]
                                },
                                "minItems": 1,
                                "maxItems": max_events,
                            },
                        ]
                    }
                }
            },
        }
    elif route.body == "claim":
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ClaimRequest")}}},
        }
    return op


def _security(route: Route) -> list[dict[str, list[str]]]:
    if not route.roles:
        return []
    schemes: list[dict[str, list[str]]] = [{"bearer": []}]
    if route.name == "session_stream":
        schemes.append({"access_token": []})
    return schemes


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "description": p.description,
        "required": p.required or p.where == "path",
        "schema": p.schema,
    }


def _response(status: int, answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.headers:
        out["headers"] = {
            h: {"description": HEADERS[h], "schema": {"type": "string"}} for h in answer.headers
        }
    if answer.codes:
        out["x-continuity-errors"] = list(answer.codes)
    schema: dict[str, Any] | None
    if isinstance(answer.model, tuple):
        schema = {"anyOf": [{"$ref": REF.format(model=m.__name__)} for m in answer.model]}
    elif answer.model is not None:
        name = answer.model if isinstance(answer.model, str) else answer.model.__name__
        schema = {"$ref": REF.format(model=name)}
    elif answer.codes:
        schema = {"$ref": REF.format(model="ErrorBody")}
    elif answer.media == "application/json":
        schema = {"type": "object"}
    elif answer.events:
        # Each event's data is one JSON document of these schemas, by event name.
        schema = {
            "type": "string",
            "description": "Server-Sent Events; each event's `data` is JSON: "
            + ", ".join(f"`{name}`: {model}" for name, model in answer.events),
            "x-continuity-events": {
                name: {"$ref": REF.format(model=model)} for name, model in answer.events
            },
        }
    else:
        schema = {"type": "string"}
    out["content"] = {answer.media: {"schema": schema}}
    return out
