"""The plain aiokafka clients of the tools, built in one place. Thin edge.

Every consumer, producer and admin client outside the Faust app is built
here, so the settings that must hold for all of them are written once: the
bootstrap address, the security arguments (``kafka_client_kwargs`` of
``streams/kafka/security.py``, passed in as ``kafka``), a client id that
names the job in the broker's logs, and the few defaults our broker needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

CLIENT_ID_PREFIX = "continuity"


def client_id(job: str) -> str:
    """The client id of a job's clients, e.g. ``continuity-rebuild``."""
    return f"{CLIENT_ID_PREFIX}-{job}"


def consumer(
    bootstrap: str, job: str, *, kafka: Mapping[str, Any] | None = None, **options: Any
) -> AIOKafkaConsumer:
    """A consumer that belongs to no group and commits nothing (assign partitions to it).

    No group, so running workers are never rebalanced by a tool; ``earliest``,
    so a seek outside the log lands on its start rather than its end.
    ``options``: further ``AIOKafkaConsumer`` arguments.
    """
    settings: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **options,
    }
    return AIOKafkaConsumer(**_common(bootstrap, job, kafka), **settings)


def producer(
    bootstrap: str, job: str, *, kafka: Mapping[str, Any] | None = None, **options: Any
) -> AIOKafkaProducer:
    """A producer waiting for every in-sync replica (acks=all), without idempotence.

    The embedded broker refuses InitProducerId, so no idempotent producer; the
    fold deduplicates by ``event_id`` anyway. ``options``: further arguments
    (``linger_ms``, ...).
    """
    settings: dict[str, Any] = {"acks": "all", "enable_idempotence": False, **options}
    return AIOKafkaProducer(**_common(bootstrap, job, kafka), **settings)


def admin(
    bootstrap: str, job: str, *, kafka: Mapping[str, Any] | None = None
) -> AIOKafkaAdminClient:
    """An admin client (topic creation and listing)."""
    return AIOKafkaAdminClient(**_common(bootstrap, job, kafka))


def _common(bootstrap: str, job: str, kafka: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap, "client_id": client_id(job), **(kafka or {})}
