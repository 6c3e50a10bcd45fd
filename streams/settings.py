"""Configuration from the environment, with documented defaults (README: Configuration)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a worker or tool. Secrets (a Redis password) stay in ``REDIS_URL``."""

    model_config = SettingsConfigDict(env_prefix="CONTINUITY_", extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "CONTINUITY_KAFKA_BOOTSTRAP"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "CONTINUITY_REDIS_URL"),
        description="Redis URL; may carry a password, so it is never logged.",
    )
    app_id: str = Field(default="continuity", description="Faust app id = consumer group.")
    topic_partitions: int = Field(default=8, ge=1, description="Partitions of each event topic.")
    redis_prefix: str = Field(default="cont", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    batch_max: int = Field(default=500, ge=1, description="Largest batch folded at once.")
    # Faust's take() yields on a fixed timer, so at low rates this is added to every
    # event's latency; under load the batch fills to batch_max first.
    batch_within: float = Field(default=0.01, gt=0, description="Longest wait to fill a batch (s).")
    metrics_host: str = Field(default="0.0.0.0", description="Address the /metrics server binds.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Worker /metrics port; 0=off.")
    metrics_interval: float = Field(
        default=5.0, gt=0, description="Refresh of the lag and sessions-active gauges (s)."
    )
    session_timeout: float = Field(default=10.0, gt=0, description="Kafka session timeout (s).")
    heartbeat_interval: float = Field(default=1.0, gt=0, description="Kafka heartbeat (s).")
    rebalance_timeout: float = Field(default=3.0, gt=0, description="Kafka rebalance timeout (s).")
    commit_interval: float = Field(default=1.0, gt=0, description="Kafka offset commit every (s).")
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        le=5000,
        description="Longest a worker's fetch waits for data (ms); the embedded broker always "
        "waits this long, so it is latency there; on Kafka it only bounds an idle poll.",
    )
    retry_max_delay: float = Field(default=5.0, gt=0, description="Cap of Redis retry backoff (s).")
    redis_retry_budget: float = Field(
        default=30.0, gt=0, description="Redis outage (s) after which /readyz reports not ready."
    )
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    log_format: str = Field(default="text", pattern=r"^(text|json)$", description="Log lines.")

    # The gateway (``continuity gateway``, README: Gateway API).
    gateway_host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    gateway_port: int = Field(default=8080, ge=0, le=65535, description="Gateway HTTP port.")
    auth_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key of the bearer tokens (32+ characters); never logged. "
        "The gateway refuses to start without one.",
    )
    token_ttl: int = Field(default=3600, ge=1, description="Lifetime of issued tokens (s).")
    gateway_max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest request body the gateway reads."
    )
    gateway_max_events: int = Field(default=500, ge=1, description="Most events per ingest.")
    gateway_max_wait: float = Field(
        default=10.0, ge=0, description="Cap of a read's ``wait`` parameter (s)."
    )
    gateway_produce_timeout: float = Field(
        default=10.0, gt=0, description="Longest wait for Kafka to acknowledge an ingest (s)."
    )
    sse_heartbeat: float = Field(default=15.0, gt=0, description="SSE comment every (s).")
    sse_send_timeout: float = Field(
        default=10.0, gt=0, description="A stream write slower than this drops the client (s)."
    )
    sse_max_connections: int = Field(
        default=1000, ge=1, description="Open event streams per gateway process."
    )
    handoff_ttl: int = Field(
        default=300, ge=1, le=86400, description="Lifetime of a POS handoff code (s)."
    )
    handoff_max_failures: int = Field(
        default=5, ge=1, description="Failed claims per store (or address) before a lockout."
    )
    handoff_failure_window: int = Field(
        default=300, ge=1, description="Window (s) of the failed-claim count, and the lockout."
    )
    gateway_demo: bool = Field(
        default=False, description="Serve the demo page at / (development only)."
    )
    producer_idempotence: bool = Field(
        default=False,
        description="Idempotent Kafka producer; the embedded broker refuses it, production "
        "turns it on.",
    )

    def redis_dsn(self) -> str:
        """The Redis URL with its secret, for client constructors only."""
        return self.redis_url.get_secret_value()
