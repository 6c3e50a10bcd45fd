"""Configuration from the environment, with documented defaults (docs/configuration.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from streams.core.fold import Limits, MergePolicy
from streams.core.journey import JourneyLimits
from streams.store.state import Effects

# A directory of one file per setting, named like its variable (a Kubernetes
# secret volume): secrets need not pass through the environment.
SECRETS_DIR_ENV = "CONTINUITY_SECRETS_DIR"

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Every knob of a worker or tool.

    Secrets (the Redis URL with its password, the Kafka SASL password, the token
    key) are ``SecretStr``: masked in reprs and never logged. Each setting is read
    from its environment variable or, when ``CONTINUITY_SECRETS_DIR`` names a
    directory, from a file of that variable's name in it (the variable wins).
    """

    # Inputs stay out of validation errors: some of them are secrets (REDIS_URL).
    model_config = SettingsConfigDict(
        env_prefix="CONTINUITY_", extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "CONTINUITY_KAFKA_BOOTSTRAP"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "CONTINUITY_REDIS_URL"),
        description="Redis URL: redis://, rediss:// (TLS), unix://, or through Sentinel "
        "redis+sentinel://host:port[,host:port...]/<service>[/<db>] (rediss+sentinel:// for "
        "TLS); may carry a password, so it is never logged.",
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description="Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        default="PLAIN",
        description="SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name (SASL_* protocols)."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (SASL_* protocols); never logged."
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CAs that sign the brokers' certificates (SSL, SASL_SSL); "
        "default: the system's trust store.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (SSL, SASL_SSL)."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key; never logged."
    )
    app_id: str = Field(default="continuity", description="Faust app id = consumer group.")
    topic_partitions: int = Field(default=8, ge=1, description="Partitions of each event topic.")
    redis_prefix: str = Field(default="cont", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    merge_policy: MergePolicy = Field(
        default=MergePolicy.COMBINE,
        description="How a guest cart meets the customer's at login: combine (quantities "
        "added up), higher_quantity, keep_customer, keep_newest, keep_separate. Part of the "
        "fold: a rebuild uses it too.",
    )
    shared_device_customers: int = Field(
        default=1,
        ge=1,
        description="A device signed in on by more customers than this within the window is "
        "shared: sign-ins on it never take its guest cart. Part of the fold.",
    )
    shared_device_window: int = Field(
        default=30 * 86400, ge=60, description="The shared-device guard's window (s)."
    )
    abandon_after: float = Field(
        default=1800.0,
        ge=0,
        description="Seconds a cart with items may sit idle before cart.abandoned; 0 = never.",
    )
    abandon_sweep_interval: float = Field(
        default=5.0, gt=0, description="How often each worker looks for abandoned carts (s)."
    )
    journey_max_entries: int = Field(
        default=200, ge=1, description="Journey entries kept per session (newest win)."
    )
    worker_stale_after: float = Field(
        default=15.0,
        gt=0,
        description="A gateway says X-Continuity-Workers: none when no worker heartbeat is "
        "younger than this (s).",
    )
    session_compression: bool = Field(
        default=True,
        description="Store sessions zlib-compressed (about 4x smaller); readers take both forms.",
    )
    journey_max_age: int = Field(
        default=90 * 86400, ge=60, description="Journey entries older than this are dropped (s)."
    )
    # Also the most records one fetch returns: the worker folds each fetch as it
    # arrives (streams/worker/batch_delivery.py), so there is no timer to fill a batch.
    batch_max: int = Field(default=500, ge=1, description="Largest batch folded at once.")
    metrics_host: str = Field(default="0.0.0.0", description="Address the /metrics server binds.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Worker /metrics port; 0=off.")
    position_check_interval: float = Field(
        default=2.0,
        gt=0,
        description="How often each worker compares Redis's applied offsets with what it knows "
        "applied, to find a rolled-back Redis on partitions with no new events (s).",
    )
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

    # The gateway (``continuity gateway``, docs/gateway-api.md).
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
    as_of_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Longest a gateway refolds a session for ?as_of= (reads the topics from "
        "their start) before a 503 as_of_timeout; the CLI has no limit (s).",
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
    handoff_min_replicas: int = Field(
        default=0,
        ge=0,
        description="Redis replicas a handoff claim must reach (WAIT) before it is answered; "
        "1 or more with Sentinel, so a failover never makes a claimed code claimable again.",
    )
    handoff_replica_timeout_ms: int = Field(
        default=500, ge=1, description="How long a claim waits for its replicas (ms)."
    )
    handoff_max_failures: int = Field(
        default=5, ge=1, description="Failed claims per store (or address) before a lockout."
    )
    handoff_failure_window: int = Field(
        default=300, ge=1, description="Window (s) of the failed-claim count, and the lockout."
    )
    ingest_rate_limit: str = Field(
        default="50/second;2000/minute",
        description="Events a customer or pos token may post to /v1/events (limits syntax, "
        "every window applies; empty = no limit). Shared by all gateways through Redis.",
    )
    service_ingest_rate_limit: str = Field(
        default="5000/second",
        description="Events a service token (a channel's backend) may post to /v1/events.",
    )
    handoff_claim_rate_limit: str = Field(
        default="30/minute",
        description="Claims a pos token may attempt, on top of the failed-claim lockout.",
    )
    gateway_demo: bool = Field(
        default=False, description="Serve the demo page at / (development only)."
    )
    producer_idempotence: bool = Field(
        default=False,
        description="Idempotent Kafka producer; the embedded broker refuses it, production "
        "turns it on.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Pydantic's sources in its order, the secrets directory taken from the environment.

        ``secrets_dir`` is otherwise fixed in the class or passed to every
        constructor; reading it here keeps ``Settings()`` the one way to load.
        """
        if (
            isinstance(file_secret_settings, SecretsSettingsSource)
            and file_secret_settings.secrets_dir is None
        ):
            file_secret_settings.secrets_dir = secrets_dir()
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: SecretStr) -> SecretStr:
        from streams.store.client import is_sentinel_url, parse_sentinel_url

        raw = url.get_secret_value()
        if is_sentinel_url(raw):
            parse_sentinel_url(raw)  # ValueError names what is wrong, never the password
        return url

    @field_validator("ingest_rate_limit", "service_ingest_rate_limit", "handoff_claim_rate_limit")
    @classmethod
    def _rate_limit(cls, spec: str) -> str:
        from limits import parse_many

        if spec.strip():
            parse_many(spec)  # ValueError names what is wrong
        return spec

    def fold_limits(self) -> Limits:
        """The fold's definition as configured (bounds at their defaults, the merge policy,
        the shared-device guard)."""
        return Limits(
            merge_policy=self.merge_policy,
            shared_device_customers=self.shared_device_customers,
            shared_device_window=self.shared_device_window,
        )

    def effects(self, notify: bool = True) -> Effects:
        """What commits write besides the state: timers, journey bounds, notifications."""
        return Effects(
            abandon_after=self.abandon_after or None,
            journey=JourneyLimits(self.journey_max_entries, self.journey_max_age),
            notify=notify,
            compress=self.session_compression,
        )

    def redis_dsn(self) -> str:
        """The Redis URL with its secret, for client constructors only."""
        return self.redis_url.get_secret_value()


def secrets_dir() -> Path | None:
    """The directory ``CONTINUITY_SECRETS_DIR`` names, or None; an error if it is no directory.

    Pydantic only warns about a missing secrets directory; a worker that silently
    starts without its credentials would fail later and less clearly.
    """
    raw = os.environ.get(SECRETS_DIR_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise SettingsError(f"{SECRETS_DIR_ENV}={raw!r} is not a directory")
    return path
