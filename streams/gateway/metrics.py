"""Prometheus metrics of the gateway (``GET /metrics``).

Labels are bounded: route templates (``/v1/sessions/{id}``, never the id),
status classes, fixed reason codes. No customer id ever becomes a label.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

HTTP_REQUESTS = Counter(
    "continuity_gateway_http_requests_total",
    "HTTP requests by route template, method and status class (2xx, 4xx, ...).",
    ["route", "method", "status_class"],
)
AUTH_FAILURES = Counter(
    "continuity_gateway_auth_failures_total",
    "Requests refused for their token: missing_token, invalid_token, token_expired "
    "(401) or forbidden, sign_in_required (403).",
    ["code"],
)
READ_WAITS = Counter(
    "continuity_gateway_read_waits_total",
    "Reads that waited (min_version / after), by outcome: satisfied or timeout.",
    ["outcome"],
)
WAITING = Gauge(
    "continuity_gateway_reads_waiting",
    "Reads waiting right now for a version or an applied position.",
)
PUBSUB_UP = Gauge(
    "continuity_gateway_pubsub_up",
    "1 while the shared Redis pub/sub connection is subscribed and reading.",
)
PUBSUB_RECONNECTS = Counter(
    "continuity_gateway_pubsub_reconnects_total",
    "Reconnections of the shared pub/sub connection (every local subscriber re-reads).",
)
PUBSUB_CHANNELS = Gauge(
    "continuity_gateway_pubsub_channels",
    "Session channels this gateway is subscribed to (one per followed session).",
)
SSE_SUBSCRIBERS = Gauge(
    "continuity_sse_subscribers",
    "Event streams open on this gateway.",
)
SSE_MESSAGES = Counter(
    "continuity_sse_messages_total",
    "Events (session states and merge notices) written to streams.",
)
SSE_RESUMES = Counter(
    "continuity_sse_resumes_total",
    "Streams opened with a Last-Event-ID (a reconnect).",
)
SSE_DROPS = Counter(
    "continuity_sse_drops_total",
    "Streams ended by the gateway: slow (a write timed out) or closed (the client was gone).",
    ["reason"],
)
SSE_REFUSED = Counter(
    "continuity_sse_refused_total",
    "Streams refused because CONTINUITY_SSE_MAX_CONNECTIONS were open.",
)
INGEST_EVENTS = Counter(
    "continuity_ingest_events_total",
    "Events posted to POST /v1/events, by outcome (accepted: Kafka acknowledged it; "
    "rejected) and reason of a rejection (wire-contract reasons or forbidden; empty "
    "when accepted).",
    ["outcome", "reason"],
)
INGEST_UNAVAILABLE = Counter(
    "continuity_ingest_kafka_unavailable_total",
    "Ingest requests answered 503 because Kafka did not acknowledge in time.",
)
HANDOFFS = Counter(
    "continuity_handoffs_total",
    "POS handoffs by outcome: created (a code issued), claimed (a POS took the session), "
    "expired_or_unknown (a claim of a code that is unknown, expired or already claimed), "
    "refused (a claim refused by the failed-claim lockout).",
    ["outcome"],
)
ERASURES = Counter(
    "continuity_erasures_total",
    "Erasure requests (DELETE /v1/sessions/{id}) by outcome: erased, unavailable (Kafka or "
    "Redis did not answer; the request can be repeated safely).",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "continuity_gateway_rate_limited_total",
    "Requests refused by a per-token rate limit, by limit: ingest, ingest-service, claim.",
    ["limit"],
)
RATE_LIMIT_ERRORS = Counter(
    "continuity_gateway_rate_limit_errors_total",
    "Rate-limit checks that could not reach Redis (ingest goes on unlimited meanwhile).",
)
