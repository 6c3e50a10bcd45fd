"""The gateway's answers as models: what ``GET /openapi.json`` documents for every route.

The request side is the wire contract itself (``schemas.events``); these models
describe the JSON bodies the handlers answer with. The document is generated
from them (``streams/gateway/openapi.py``), and Schemathesis checks a live
gateway's answers against it (``tests/gateway/test_e2e_openapi.py``), so a
handler that drifts from its model fails a test instead of surprising a client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    # Answers may grow fields; a client must ignore what it does not know.
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Answer):
    """Every error answer: a stable code and a sentence for people."""

    error: str = Field(description="the error code (docs/gateway-api.md, Errors)")
    message: str = Field(description="what went wrong, for people; never parse it")
    parameter: str | None = Field(None, description="the query parameter at fault (400)")
    limit: int | str | None = Field(None, description="the limit that was exceeded (413, 429)")
    retry_after: int | None = Field(None, description="seconds to wait before retrying (429)")


class EventResult(_Answer):
    """One event of an ingest request: accepted with its Kafka position, or why not."""

    index: int = Field(description="its place in the request, from 0")
    event_id: str | None = Field(None, description="its event_id, when it had a readable one")
    status: Literal["accepted", "rejected"]
    position: str | None = Field(None, description="topic:partition:offset (accepted)")
    reason: str | None = Field(None, description="why it was rejected")
    detail: str | None = Field(None, description="the validation error, for people")


class IngestAnswer(_Answer):
    """``POST /v1/events`` when at least one event was accepted (202)."""

    accepted: int
    rejected: int
    after: str | None = Field(
        None, description="read with ?after= this to see every accepted event applied"
    )
    results: list[EventResult]


class IngestRefusal(ErrorBody):
    """``POST /v1/events`` when no event was accepted (403, 422): an error with results."""

    accepted: int
    rejected: int
    results: list[EventResult]


class HandoffCreated(_Answer):
    """``POST /v1/sessions/{id}/handoff`` (201): a one-time code for a POS."""

    code: str = Field(description="8 characters of Crockford base32")
    display: str = Field(description="the code grouped for reading aloud, 7K3M-Q9TX")
    qr: str = Field(description="what a frontend renders as the QR image")
    expires_in: int = Field(description="seconds")
    expires_at: str = Field(description="RFC 3339, UTC")
    claim: str = Field(description="the claim route's path")
    key: str = Field(description="the session key handed off")


class ClaimRequest(BaseModel):
    """The optional body of a claim."""

    model_config = ConfigDict(extra="forbid")

    terminal_id: str | None = Field(None, description="the till's id, for the journey")


class HandoffClaimAnswer(_Answer):
    """``POST /v1/handoffs/{code}/claim`` (200): the session, now this store's."""

    claimed: Literal[True]
    key: str
    customer_id: str | None
    store_id: str
    terminal_id: str | None
    after: str = Field(description="the claim event's position, for ?after=")
    session: dict[str, Any] | None = Field(description="the session at the claim")


class JourneyEntry(_Answer):
    """One applied event, as the journey keeps it."""

    at: str
    channel: str
    type: str
    event_id: str


class Journey(_Answer):
    """``GET /v1/sessions/{id}/journey`` (200), newest first."""

    key: str
    total: int
    limit: int
    entries: list[JourneyEntry]


class Erased(_Answer):
    """``DELETE /v1/sessions/{id}`` (200): what the erasure deleted."""

    customer_id: str
    erased_ids: list[str]
    erased_at_ms: int
    sessions_deleted: int
    aliases_deleted: int
    handoff_codes_deleted: int


class Kpis(_Answer):
    """``GET /v1/kpis`` (200): the omnichannel KPIs (docs/gateway-api.md, KPIs)."""

    generated_at: str
    sessions: dict[str, Any]
    resumes: dict[str, Any]
    carts: dict[str, Any]
    paths: list[dict[str, Any]]
    checkouts: dict[str, Any]
    first_touch_to_checkout: dict[str, Any]


class Health(_Answer):
    """``GET /healthz`` (200)."""

    status: Literal["ok"]


class Readiness(_Answer):
    """``GET /readyz`` (200): each dependency's check; a 503 is an error body with them."""

    status: Literal["ready"]
    checks: dict[str, Literal["up", "down"]]


class Index(_Answer):
    """``GET /``: the service and its routes."""

    service: str
    routes: dict[str, str]


class Merged(BaseModel):
    """The ``merged`` event of a stream: the guest signed in; follow the customer."""

    key: str
    merged_into: str


ANSWERS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    EventResult,
    IngestAnswer,
    IngestRefusal,
    HandoffCreated,
    ClaimRequest,
    HandoffClaimAnswer,
    JourneyEntry,
    Journey,
    Erased,
    Kpis,
    Health,
    Readiness,
    Index,
    Merged,
)
