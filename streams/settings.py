"""Configuration from the environment, with documented defaults (docs/configuration.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from streams.core.dead_letter import DEFAULT_MAX_BYTES as DEFAULT_DLQ_MAX_BYTES
from streams.core.expiry import DAY, DEFAULT_GUEST_TTL, DEFAULT_SESSION_TTL
from streams.core.fold import Limits, MergePolicy
from streams.core.journey import JourneyLimits
from streams.store.keys import Space
from streams.store.state import Effects

# A directory of one file per setting, named like its variable (a Kubernetes
# secret volume): secrets need not pass through the environment.
SECRETS_DIR_ENV = "CONTINUITY_SECRETS_DIR"
SECRETS_DIR_DOC = (
    "a directory of files named like the variables above (`REDIS_URL`, "
    "`CONTINUITY_AUTH_SECRET`, `CONTINUITY_KAFKA_SASL_PASSWORD`, any other); each file's "
    "content is that setting; a variable set in the environment wins; an error if the "
    "directory does not exist"
)

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
        description="comma-separated brokers",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices("REDIS_URL", "CONTINUITY_REDIS_URL"),
        description=(
            "Redis URL; may hold a password, never logged. Through Sentinel: "
            "`redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]` "
            "(`rediss+sentinel://` for TLS, `?sentinel_password=` for the sentinels' own "
            'password; deploy/README.md "Redis"). A Redis Cluster (worker and gateway; '
            "workers with `CONTINUITY_CROSS_PARTITION=forward`): "
            "`redis+cluster://[:password@]host:port[,host:port...]` (startup nodes; "
            "`rediss+cluster://` for TLS). `rediss://` for TLS; query parameters "
            "`ssl_ca_certs`, `ssl_cert_reqs` (`required`, `optional`, `none`), "
            "`ssl_check_hostname`, `ssl_certfile`, `ssl_keyfile`, `ssl_password` (mutual TLS)"
        ),
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description=(
            "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, for every Kafka client "
            "(worker, gateway, tools)"
        ),
    )
    kafka_sasl_mechanism: KafkaSaslMechanism = Field(
        default="PLAIN", description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (SASL_* only)"
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name; required with SASL_*"
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description=(
            "SASL password; required with SASL_*; never logged; best as a file in "
            "`CONTINUITY_SECRETS_DIR`"
        ),
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description=(
            "PEM of the CAs that sign the brokers' certificates (SSL, SASL_SSL); the broker's"
            " host name is always checked"
        ),
        json_schema_extra={"shown_default": "system trust store"},
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for mutual TLS"
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="its private key (needs the certificate)"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="password of an encrypted client key; never logged"
    )
    app_id: str = Field(default="continuity", description="Faust app id = consumer group")
    topic_partitions: int = Field(
        default=8,
        ge=1,
        description=(
            "partitions of the source topics: the worker creates them with this many and "
            "refuses topics with another count, since the Redis layout places every key by "
            "its Kafka partition (`cont:{p<partition>}:...`). Every process sharing a Redis "
            "must agree. A capacity decision: more partitions than Redis primaries you will "
            "ever run; changing it means a rebuild"
        ),
    )
    topic_retention_ms: int = Field(
        default=7 * DAY * 1000,  # a week, Kafka's default (streams/kafka/topics.py)
        ge=-1,
        description=(
            "`retention.ms` of the source topics and the dead letters when a process creates "
            "them (7 days; `-1`: forever); an existing topic keeps its own, and the embedded "
            "broker does not enforce it. Production topics come from `deploy/topics.sh` "
            "(`RETENTION_MS`, the same default)"
        ),
    )
    redis_prefix: str = Field(
        default="cont", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="key prefix of the state"
    )
    merge_policy: MergePolicy = Field(
        default=MergePolicy.COMBINE,
        description=(
            "how a guest cart meets the customer's at login: `combine`, `higher_quantity`, "
            "`keep_customer`, `keep_newest`, `keep_separate` (Session state: Identity)"
        ),
    )
    cross_partition: Literal["direct", "forward"] = Field(
        default="forward",
        description=(
            "how a login merges a guest homed on another partition: `forward` (each "
            "partition's commit changes its own keys, the rest goes through "
            "`session-forwards`; one Redis primary or a Redis Cluster alike) or `direct` "
            "(one commit changes both partitions' keys, a login merged without a hop "
            "through Kafka; one Redis primary only: a worker given a `redis+cluster://` "
            "URL refuses to start in `direct`; docs/merge-across-partitions.md)"
        ),
    )
    dedup_window: int = Field(
        default=256,
        ge=0,
        le=4096,
        description=(
            "event ids remembered per session, so an event a producer sent twice is applied "
            "once (part of the fold); exactly-once against redelivery rests on the applied "
            "offsets, not on this: the fault tests run the workers with `0` to prove it"
        ),
    )
    shared_device_customers: int = Field(
        default=1,
        ge=1,
        description=(
            "a device signed in on by more customers than this within the window is shared "
            "(Session state: Identity); part of the fold"
        ),
    )
    shared_device_window: int = Field(
        default=30 * 86400, ge=60, description="the shared-device window (s)"
    )
    dead_letter_max_bytes: int = Field(
        default=DEFAULT_DLQ_MAX_BYTES,
        ge=16 * 1024,
        description=(
            "the largest dead letter the worker sends as a copy of its record (key, value "
            "and headers); a larger one goes to `events-dlq` as a reference to the record's "
            "position (Security: Dead letters). Keep it at or below `events-dlq`'s "
            "`max.message.bytes`; the producer's own limit (1,000,000) caps it"
        ),
    )
    event_time_max_ahead: int = Field(
        default=300,
        ge=0,
        description=(
            "seconds an event's `occurred_at` may lie after its Kafka record's timestamp; "
            "a later claim is set to that bound before the fold (a future-dated event would "
            'keep its session alive, win every "newer wins" merge and escape the '
            "shared-device window). Client clock skew; part of the fold (Security: Time)"
        ),
    )
    event_time_max_behind: int = Field(
        default=7 * DAY,
        ge=0,
        description=(
            "seconds an event's `occurred_at` may lie before its Kafka record's timestamp "
            "(an offline till's or app's queue); an earlier claim is set to that bound "
            "(a back-dated sign-in would hide the device's other sign-ins from the "
            "shared-device guard). A repaired dead letter keeps its time; part of the fold"
        ),
    )
    guest_ttl: int = Field(
        default=DEFAULT_GUEST_TTL,
        ge=60,
        description=(
            "seconds (event time) a guest session may stay idle before it ends: the next "
            "event starts a fresh session, versions going on; part of the fold "
            "(Session semantics: Expiry)"
        ),
    )
    session_ttl: int = Field(
        default=DEFAULT_SESSION_TTL,
        ge=60,
        description=(
            "seconds (event time) a customer's session, saved cart included, may stay idle "
            "before it ends (90 days, as commercetools keeps carts); part of the fold"
        ),
    )
    expiry_grace: int = Field(
        default=7 * 86400,
        ge=0,
        description=(
            "seconds Redis keeps an ended session's keys past its end (or past the commit "
            "that wrote them, if later): the lateness an event may have and still find "
            "what the fold would"
        ),
    )
    abandon_after: float = Field(
        default=1800.0,
        ge=0,
        description=(
            "seconds a cart with items may sit idle (on the commit clock, not the events') "
            "before `cart.abandoned`; `0` = never (`continuity dev`: 20)"
        ),
    )
    abandon_sweep_interval: float = Field(
        default=5.0, gt=0, description="how often (s) each worker's relay looks for abandoned carts"
    )
    notification_claim_after: float = Field(
        default=30.0,
        gt=0,
        description=(
            "seconds a notification read by one worker's relay may stay unacknowledged before "
            "another relay takes it over, its reader presumed dead; a relay retries its own "
            "failed publishes at once (with backoff), not after this"
        ),
    )
    journey_max_entries: int = Field(
        default=200,
        ge=1,
        description=(
            "journey entries kept per session (the newest); also the largest journey `limit`"
        ),
    )
    worker_stale_after: float = Field(
        default=15.0,
        gt=0,
        description=(
            "seconds without a worker heartbeat after which a gateway answers "
            "`X-Continuity-Workers: none`"
        ),
    )
    changelog: bool = Field(
        default=True,
        description=(
            "publish every committed session state to the compacted `session-changelog` "
            "topic (the feed for downstream systems, and what `continuity rebuild` restores "
            "from); one worker's relay at a time publishes it"
        ),
    )
    changelog_linger: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description=(
            "seconds the changelog relay lets a busy partition's commits gather after a "
            "round, so one round (cursor read, advance, watermark) carries several commits: "
            "the changelog may lag Redis this much more; 0 publishes each commit at once"
        ),
    )
    session_compression: bool = Field(
        default=True,
        description=(
            "store sessions zlib-compressed in Redis (a typical session about 1.3 KB instead "
            "of 5.3 KB; `make bench` measured no throughput cost); readers accept both forms,"
            " so it can be switched either way on a live system"
        ),
    )
    journey_max_age: int = Field(
        default=90 * 86400,
        ge=60,
        description="journey entries older than this (s, 90 days) are dropped",
    )
    # Also the most records one fetch returns: the worker folds each fetch as it
    # arrives (streams/worker/batch_delivery.py), so there is no timer to fill a batch.
    batch_max: int = Field(
        default=500,
        ge=1,
        description=(
            "largest batch folded at once, and the most records one fetch returns (each fetch"
            " is folded as it arrives; there is no timer to fill a batch)"
        ),
    )
    metrics_host: str = Field(default="0.0.0.0", description="address `/metrics` binds")
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="worker `/metrics` port",
        json_schema_extra={"shown_default": "`0` (off)"},
    )
    position_check_interval: float = Field(
        default=2.0,
        gt=0,
        description=(
            "how often (s) a worker compares Redis's applied offsets of its partitions with "
            "what it knows applied, so a rolled-back Redis is folded again on partitions "
            "without new events too (every batch checks its own)"
        ),
    )
    metrics_interval: float = Field(
        default=5.0, gt=0, description="refresh (s) of the lag and sessions-active gauges"
    )
    session_timeout: float = Field(
        default=10.0, gt=0, description="Kafka group session timeout (s)"
    )
    heartbeat_interval: float = Field(default=1.0, gt=0, description="Kafka heartbeat (s)")
    rebalance_timeout: float = Field(default=3.0, gt=0, description="Kafka rebalance timeout (s)")
    commit_interval: float = Field(
        default=1.0, gt=0, description="Kafka offset commit interval (s)"
    )
    producer_request_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "longest a worker's publish (notification, dead letter) waits for the broker "
            "before it fails, is logged and retried (s)"
        ),
    )
    fetch_max_wait_ms: int = Field(
        default=10,
        ge=0,
        le=5000,
        description=(
            "longest a worker's fetch waits for data; the embedded broker holds every fetch "
            "this long (produce -> consume p50 132 ms at 500, 2.8 ms at 10), Apache Kafka "
            "answers as soon as data arrives, so there it only bounds idle polls: 100-500 "
            "suits a cluster"
        ),
    )
    retry_max_delay: float = Field(
        default=5.0, gt=0, description="cap of the Redis retry backoff (s)"
    )
    redis_retry_budget: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Redis outage or refused writes (READONLY, OOM; s) after which the worker's "
            "`/readyz` answers 503 (folding keeps waiting)"
        ),
    )
    log_level: str = Field(
        default="info",
        pattern=r"^(debug|info|warning|error)$",
        description="`debug`, `info`, `warning`, `error`",
    )
    log_format: str = Field(
        default="text",
        pattern=r"^(text|json)$",
        description="`json`: one JSON object per log line (see Logs)",
    )
    gc_freeze: bool = Field(
        default=True,
        description=(
            "once a worker or gateway is up, freeze the objects alive then (imports, clients, "
            "the app) out of Python's cyclic garbage collector, so a full collection no longer "
            "walks them: a worker's full collection took ~47 ms with the GIL held at 1,000 "
            "events/s, ~2 ms frozen (`streams/heap.py`)"
        ),
    )
    gc_young_threshold: int = Field(
        default=10_000,
        ge=0,
        description=(
            "allocations between two collections of the young generation (Python's default "
            "is 700): a batch's objects are nearly all freed by reference counting before a "
            "collection would walk them; 0 keeps Python's default"
        ),
    )

    # The gateway (``continuity gateway``, docs/gateway-api.md).
    gateway_host: str = Field(default="127.0.0.1", description="address the gateway binds")
    gateway_port: int = Field(default=8080, ge=0, le=65535, description="gateway HTTP port")
    gateway_metrics_host: str = Field(
        default="127.0.0.1",
        description="address the gateway's `/metrics` listener binds (never the API's port)",
    )
    gateway_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "port of the gateway's `/metrics` listener (process metrics and the business KPIs);"
            " keep it off the public ingress"
        ),
        json_schema_extra={"shown_default": "`0` (off)"},
    )
    auth_secret: SecretStr | None = Field(
        default=None,
        description=(
            "HS256 key of tokens without a `kid` header, 32+ characters, neither an example "
            "key nor predictable; never logged; the gateway refuses to start without it or "
            "`CONTINUITY_AUTH_KEYS`"
        ),
    )
    auth_keys: SecretStr | None = Field(
        default=None,
        description=(
            "more accepted keys, `kid=key` entries separated by commas or white space: a "
            "token with a `kid` header is checked with the key of that name (key rotation); "
            "each key checked like `CONTINUITY_AUTH_SECRET`"
        ),
    )
    auth_signing_kid: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description=(
            "kid of the `CONTINUITY_AUTH_KEYS` key `continuity token` signs with "
            "(`--kid` wins); unset: `CONTINUITY_AUTH_SECRET`, no `kid` header"
        ),
    )
    token_ttl: int = Field(
        default=3600, ge=1, description="lifetime (s) of tokens `continuity token` issues"
    )
    token_max_ttl_customer: int = Field(
        default=86_400,
        ge=1,
        description="longest lifetime (`exp - iat`, s) of a customer token the gateway accepts",
    )
    token_max_ttl_pos: int = Field(
        default=57_600,
        ge=1,
        description="longest lifetime (`exp - iat`, s) of a pos token the gateway accepts",
    )
    token_max_ttl_service: int = Field(
        default=43_200,
        ge=1,
        description="longest lifetime (`exp - iat`, s) of a service token the gateway accepts",
    )
    gateway_max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="largest ingest body (256 KiB)"
    )
    gateway_max_events: int = Field(default=500, ge=1, description="most events per ingest request")
    gateway_max_wait: float = Field(
        default=10.0, ge=0, description="cap and default (s) of a read's `wait`"
    )
    gateway_produce_timeout: float = Field(
        default=10.0, gt=0, description="longest wait (s) for Kafka to acknowledge an ingest"
    )
    gateway_body_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "longest (s) a request body may take to arrive once its handler reads it; a slower"
            " (or never-ending) body is answered `408 body_timeout` and its connection closed"
        ),
    )
    as_of_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "longest (s) a gateway refolds a session for `?as_of=` before a `503 as_of_timeout`"
        ),
    )
    sse_heartbeat: float = Field(
        default=15.0, gt=0, description="seconds between keep-alive comments on a stream"
    )
    sse_send_timeout: float = Field(
        default=10.0, gt=0, description="a stream write slower than this (s) drops the client"
    )
    sse_max_connections: int = Field(
        default=1000, ge=1, description="open streams per gateway process"
    )
    sse_max_streams_per_token: int = Field(
        default=16,
        ge=1,
        description=(
            "open streams per customer or pos token (its role, store and `sub`) on one gateway"
            " process; past it `429 too_many_token_streams` (service tokens: only the"
            " gateway's limit)"
        ),
    )
    handoff_ttl: int = Field(
        default=300, ge=1, le=86400, description="lifetime (s) of a POS handoff code"
    )
    handoff_min_replicas: int = Field(
        default=0,
        ge=0,
        description=(
            "Redis replicas a handoff claim must reach (`WAIT`) before the POS gets the cart;"
            " set 1 with Sentinel so a failover never makes a claimed code claimable again; a"
            " claim not confirmed in time is undone and answered `503 handoff_unconfirmed`"
        ),
    )
    handoff_replica_timeout_ms: int = Field(
        default=500, ge=1, description="how long a claim waits for those replicas (ms)"
    )
    handoff_max_failures: int = Field(
        default=5, ge=1, description="failed claims per pos token before that token is locked out"
    )
    handoff_store_max_failures: int = Field(
        default=20,
        ge=1,
        description=(
            "failed claims per store (all its tokens), and per client address where a trusted"
            " proxy names one, before that store or address is locked out"
        ),
    )
    handoff_failure_window: int = Field(
        default=300, ge=1, description="window (s) of those counts, and so the longest lockout"
    )
    handoff_max_pending: int = Field(
        default=3,
        ge=1,
        description=(
            "pending handoff codes per session; issuing one more revokes the oldest (its claim"
            " is then `410 handoff_expired`)"
        ),
    )
    handoff_create_rate_limit: str = Field(
        default="5/minute;30/hour",
        description="handoff codes a customer token may issue (`limits` syntax, empty = off)",
    )
    service_handoff_create_rate_limit: str = Field(
        default="100/second", description="handoff codes a service token may issue"
    )
    trusted_proxies: str = Field(
        default="",
        description=(
            "comma-separated addresses or CIDR networks of the proxies in front of the gateway"
            " whose `X-Forwarded-For` is believed; only then is a client address counted for"
            " the handoff lockout (empty: never, the store and the token are)"
        ),
    )
    ingest_rate_limit: str = Field(
        default="50/second;2000/minute",
        description=(
            "events a customer or pos token may post (`limits` syntax, every window applies, "
            "empty = off)"
        ),
    )
    service_ingest_rate_limit: str = Field(
        default="5000/second", description="events a service token may post"
    )
    handoff_claim_rate_limit: str = Field(
        default="30/minute",
        description="claims a pos token may attempt, on top of the failed-claim lockout",
    )
    gateway_demo: bool = Field(
        default=False,
        description="serve the demo page at `/` (development only; `continuity dev` sets it)",
    )
    producer_idempotence: bool = Field(
        default=False,
        description=(
            "idempotent gateway producer; off because the embedded broker refuses it, "
            "production turns it on"
        ),
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
        from streams.store.client import (
            is_cluster_url,
            is_sentinel_url,
            parse_cluster_url,
            parse_sentinel_url,
        )

        # A ValueError names what is wrong, never the password.
        raw = url.get_secret_value()
        if is_sentinel_url(raw):
            parse_sentinel_url(raw)
        elif is_cluster_url(raw):
            parse_cluster_url(raw)
        return url

    @field_validator(
        "ingest_rate_limit",
        "service_ingest_rate_limit",
        "handoff_claim_rate_limit",
        "handoff_create_rate_limit",
        "service_handoff_create_rate_limit",
    )
    @classmethod
    def _rate_limit(cls, spec: str) -> str:
        from limits import parse_many

        if spec.strip():
            parse_many(spec)  # ValueError names what is wrong
        return spec

    @model_validator(mode="after")
    def _event_time_within_the_device_window(self) -> Settings:
        # A back-dated sign-in is brought to at most event_time_max_behind before its
        # record; shorter than the shared-device window, that still meets the device's
        # recent sign-ins (docs/security.md, Time). As long or longer, it may not.
        if self.event_time_max_behind >= self.shared_device_window:
            raise ValueError(
                f"CONTINUITY_EVENT_TIME_MAX_BEHIND ({self.event_time_max_behind} s) must be "
                f"shorter than CONTINUITY_SHARED_DEVICE_WINDOW ({self.shared_device_window} s)"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, spec: str) -> str:
        from streams.gateway.handoff import parse_networks

        parse_networks(spec)  # ValueError names the entry that is no address or network
        return spec

    def fold_limits(self) -> Limits:
        """The fold's definition as configured (bounds at their defaults, the merge policy,
        the shared-device guard)."""
        return Limits(
            dedup_window=self.dedup_window,
            merge_policy=self.merge_policy,
            shared_device_customers=self.shared_device_customers,
            shared_device_window=self.shared_device_window,
            guest_ttl=self.guest_ttl,
            session_ttl=self.session_ttl,
            event_time_max_ahead=self.event_time_max_ahead,
            event_time_max_behind=self.event_time_max_behind,
        )

    def effects(self, notify: bool = True) -> Effects:
        """What commits write besides the state: timers, journey bounds, notifications."""
        return Effects(
            abandon_after=self.abandon_after or None,
            journey=JourneyLimits(self.journey_max_entries, self.journey_max_age),
            notify=notify,
            compress=self.session_compression,
            expiry_grace=self.expiry_grace,
            changelog=self.changelog,
        )

    def token_max_lifetimes(self) -> dict[str, int]:
        """The longest ``exp - iat`` (s) the gateway accepts, by token role."""
        return {
            "customer": self.token_max_ttl_customer,
            "pos": self.token_max_ttl_pos,
            "service": self.token_max_ttl_service,
        }

    def space(self) -> Space:
        """Where the state's keys live: the prefix and the partition count placing them."""
        return Space(self.redis_prefix, self.topic_partitions)

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
