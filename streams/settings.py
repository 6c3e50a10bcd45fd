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
    batch_within: float = Field(default=0.05, gt=0, description="Longest wait to fill a batch (s).")
    metrics_host: str = Field(default="0.0.0.0", description="Address the /metrics server binds.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Worker /metrics port; 0=off.")
    session_timeout: float = Field(default=10.0, gt=0, description="Kafka session timeout (s).")
    heartbeat_interval: float = Field(default=1.0, gt=0, description="Kafka heartbeat (s).")
    rebalance_timeout: float = Field(default=3.0, gt=0, description="Kafka rebalance timeout (s).")
    commit_interval: float = Field(default=1.0, gt=0, description="Kafka offset commit every (s).")
    retry_max_delay: float = Field(default=5.0, gt=0, description="Cap of Redis retry backoff (s).")
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")

    def redis_dsn(self) -> str:
        """The Redis URL with its secret, for client constructors only."""
        return self.redis_url.get_secret_value()
