"""What a worker checks before it starts folding: its topics on Kafka, and a Redis Cluster
only in forward mode, with one clear answer for each way that fails (no traceback for a
broker that is down or a login refused)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from schemas.topics import SOURCE_TOPICS
from streams.kafka.security import KafkaSecurityError, describe, kafka_client_kwargs
from streams.kafka.topics import TopicLayoutError, ensure_topics, partition_mismatch
from streams.settings import Settings
from streams.store.client import is_cluster_url

# Exit codes: configuration the worker cannot work with, or a Kafka it cannot reach.
CONFIGURATION, UNREACHABLE = 2, 1


@dataclass
class Refused(Exception):
    """The worker must not start: ``code`` is its exit status, ``message`` says why."""

    code: int
    message: str


@dataclass
class Ready:
    """The worker may start; ``notes`` are (level, message) lines to report first."""

    notes: list[tuple[int, str]] = field(default_factory=list)


async def check_kafka(settings: Settings) -> Ready:
    """Create or verify the topics; raise ``Refused`` when the worker cannot start."""
    try:
        kafka = kafka_client_kwargs(settings)
        layout = await ensure_topics(
            settings.kafka_bootstrap,
            settings.topic_partitions,
            kafka=kafka,
            retention_ms=settings.topic_retention_ms,
        )
    except (TopicLayoutError, KafkaSecurityError) as exc:
        raise Refused(CONFIGURATION, str(exc)) from exc
    except Exception as exc:
        # Unreachable brokers, refused TLS or SASL: one clear line, not a traceback.
        hint = ""
        if "SASL" in settings.kafka_security_protocol and not isinstance(
            exc, (KafkaError, OSError)
        ):
            # aiokafka's SCRAM client fails on a refusal with a bare KeyError/ValueError.
            hint = "; the SASL login was refused: check the user name and password"
        raise Refused(
            UNREACHABLE,
            f"cannot connect to Kafka at {settings.kafka_bootstrap} "
            f"({describe(settings)}): {exc!r}{hint}",
        ) from exc
    found = layout.get(SOURCE_TOPICS[0])
    if found != settings.topic_partitions:
        raise Refused(CONFIGURATION, partition_mismatch(found, settings.topic_partitions))
    ready = Ready()
    ready.notes.append(
        (
            logging.INFO,
            f"group {settings.app_id!r} on {settings.kafka_bootstrap} ({describe(settings)}), "
            "metrics, /healthz, /readyz "
            f"{'on :' + str(settings.metrics_port) if settings.metrics_port else 'off'}",
        )
    )
    return ready


def check_redis(settings: Settings) -> None:
    """Refuse a Redis Cluster URL unless the worker runs in ``forward`` mode.

    In ``direct`` mode a login across partitions is one commit over both
    partitions' keys, which a cluster refuses (two slots). Refused at start
    rather than switched silently: the mode is a deployment decision with its
    own consequences (``docs/merge-across-partitions.md``).
    """
    if is_cluster_url(settings.redis_dsn()) and settings.cross_partition != "forward":
        raise Refused(
            CONFIGURATION,
            "REDIS_URL names a Redis Cluster: set CONTINUITY_CROSS_PARTITION=forward "
            "(a commit in direct mode changes keys of two partitions, which a cluster "
            "refuses; docs/merge-across-partitions.md)",
        )
