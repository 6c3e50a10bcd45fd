"""Prometheus metrics of the gateway (``GET /metrics``).

Labels are bounded: route templates (``/v1/sessions/{id}``, never the id),
status classes, fixed reason codes, the channels of the wire contract. No
customer id ever becomes a label.

The ``continuity_kpi_*`` gauges are not this process's own counts: they are
the omnichannel KPIs as Redis holds them for the whole system, read at
scrape time (``streams/gateway/kpis.py``), so every gateway reports the same
values (aggregate them with ``max``, never ``sum``).
"""

from __future__ import annotations

from collections.abc import Iterator
from threading import Lock
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.events import Channel

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
    "1 while the shared Redis pub/sub connection is subscribed to every partition and reading.",
)
PUBSUB_RECONNECTS = Counter(
    "continuity_gateway_pubsub_reconnects_total",
    "Reconnections of the shared pub/sub connection (every local subscriber re-reads).",
)
PUBSUB_CHANNELS = Gauge(
    "continuity_gateway_pubsub_channels",
    "Sessions followed on this gateway (their notices come on one sharded channel per partition).",
)
SSE_SUBSCRIBERS = Gauge(
    "continuity_sse_subscribers",
    "Event streams open on this gateway.",
)
SSE_MESSAGES = Counter(
    "continuity_sse_messages_total",
    "Events (session states and merge notices) written to streams.",
)
FRESHNESS = Histogram(
    "continuity_freshness_seconds",
    "Kafka record timestamp of the oldest event a written session state carries news of "
    "-> that state written to a stream (KIP-613's end-to-end latency, at the subscriber).",
    buckets=(0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SSE_READS = Counter(
    "continuity_sse_reads_total",
    "Redis reads of sessions for streams: a stream's first, and one per followed key after a "
    "notice that carries no state (a merge, an erasure, a reconnect), shared by its streams.",
)
SSE_RESUMES = Counter(
    "continuity_sse_resumes_total",
    "Streams opened with a Last-Event-ID (a reconnect).",
)
SSE_DROPS = Counter(
    "continuity_sse_drops_total",
    "Streams ended by the gateway: slow (a write timed out), closed (the client was gone) or "
    "token_expired (the stream's token passed its exp).",
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
    "refused (a claim refused by the failed-claim lockout), unconfirmed (a claim no Redis "
    "replica confirmed in time, undone: CONTINUITY_HANDOFF_MIN_REPLICAS), revoked (a pending "
    "code revoked by a newer one past CONTINUITY_HANDOFF_MAX_PENDING).",
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
    "Requests refused by a per-token rate limit, by limit: ingest, ingest-service, claim, "
    "handoff, handoff-service, streams (CONTINUITY_SSE_MAX_STREAMS_PER_TOKEN open).",
    ["limit"],
)
RATE_LIMIT_ERRORS = Counter(
    "continuity_gateway_rate_limit_errors_total",
    "Rate-limit checks that could not reach Redis (ingest goes on unlimited meanwhile).",
)
KPI_REFRESH_ERRORS = Counter(
    "continuity_gateway_kpi_refresh_errors_total",
    "Scrapes whose KPI read from Redis failed or timed out (the continuity_kpi_* gauges "
    "kept their previous values).",
)


class KpiCollector(Collector):
    """The ``continuity_kpi_*`` gauges, from the last KPI report read from Redis.

    A ratio whose denominator is 0 has no sample (rather than a made-up 0 or a
    NaN). Before the first successful read there are no samples at all.
    """

    def __init__(self) -> None:
        self._lock = Lock()
        self._report: dict[str, Any] | None = None
        self._at = 0.0

    def update(self, report: dict[str, Any], at: float) -> None:
        """Keep ``report`` (``streams.kpi_report.report``), read at Unix time ``at``."""
        with self._lock:
            self._report, self._at = report, at

    def collect(self) -> Iterator[Metric]:
        """The gauge families of the last report."""
        with self._lock:
            report, at = self._report, self._at
        if report is None:
            return
        yield _gauge(
            "continuity_kpi_refreshed_timestamp_seconds",
            "Unix time of the last successful KPI read from Redis.",
            at,
        )
        sessions = report["sessions"]
        yield _gauge(
            "continuity_kpi_multichannel_share",
            f"Share of the sessions changed in the last {sessions['window']} that span two or "
            "more channels (HyperLogLog estimates).",
            sessions["multichannel_share"],
        )
        carts = GaugeMetricFamily(
            "continuity_kpi_carts",
            "Carts by the channel they started on and outcome (started, converted, abandoned), "
            "since the state began.",
            labels=["start_channel", "outcome"],
        )
        conversion = GaugeMetricFamily(
            "continuity_kpi_conversion_rate",
            "Carts converted / carts started, by the channel the cart started on.",
            labels=["start_channel"],
        )
        abandonment = GaugeMetricFamily(
            "continuity_kpi_abandonment_rate",
            "Carts abandoned / carts started, by the channel the cart started on.",
            labels=["start_channel"],
        )
        for channel in Channel:
            row = report["carts"]["by_start_channel"][channel.value]
            for outcome in ("started", "converted", "abandoned"):
                carts.add_metric([channel.value, outcome], row[outcome])
            if row["conversion_rate"] is not None:
                conversion.add_metric([channel.value], row["conversion_rate"])
            if row["abandonment_rate"] is not None:
                abandonment.add_metric([channel.value], row["abandonment_rate"])
        yield from (carts, conversion, abandonment)
        overall = report["carts"]["overall"]
        yield _gauge(
            "continuity_kpi_overall_conversion_rate",
            "Carts converted / carts started, every channel.",
            overall["conversion_rate"],
        )
        yield _gauge(
            "continuity_kpi_overall_abandonment_rate",
            "Carts abandoned / carts started, every channel.",
            overall["abandonment_rate"],
        )
        resumes = GaugeMetricFamily(
            "continuity_kpi_resumes",
            "Carts picked up on another channel than the one that last changed them, by pair, "
            "since the state began.",
            labels=["from_channel", "to_channel"],
        )
        for pair in report["resumes"]["by_pair"]:
            resumes.add_metric([pair["from_channel"], pair["to_channel"]], pair["count"])
        yield resumes
        ttc = report["first_touch_to_checkout"]
        yield _gauge(
            "continuity_kpi_first_touch_to_checkout_median_seconds",
            "Median time from the first event of a purchase journey to its completed checkout "
            "(interpolated within the histogram bucket, as histogram_quantile does).",
            ttc["median_seconds"],
        )
        yield _gauge(
            "continuity_kpi_first_touch_to_checkout_mean_seconds",
            "Mean time from the first event of a purchase journey to its completed checkout.",
            ttc["mean_seconds"],
        )


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family


KPI_GAUGES = KpiCollector()
REGISTRY.register(KPI_GAUGES)
