"""Create the event topics with one partition count, or refuse a layout that breaks it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import NewTopic

from schemas.topics import DEAD_LETTERS, DLQ_REPAIRS, ERASURES, NOTIFICATIONS, SOURCE_TOPICS
from streams.kafka import clients

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class TopicLayoutError(RuntimeError):
    """The event topics exist with partition counts that do not match."""


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    replication: int = 1,
    *,
    kafka: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create missing topics; return ``topic -> partitions``.

    Events of one customer are keyed by customer and must land on the same
    partition number of every topic, so the source topics must agree on their
    partition count; this raises ``TopicLayoutError`` when they do not.
    ``kafka``: the security arguments (``streams.kafka_security.kafka_client_kwargs``).
    """
    admin = clients.admin(bootstrap, "topics", kafka=kafka)
    await admin.start()
    try:
        wanted = [*SOURCE_TOPICS, DEAD_LETTERS, ERASURES, NOTIFICATIONS, DLQ_REPAIRS]
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            response = await admin.create_topics(
                [_new_topic(t, partitions, replication) for t in missing]
            )
            for topic, code, message in _errors(response):
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicLayoutError(f"cannot create {topic}: {message} (code {code})")
            log.info("created topics %s with %d partitions", ", ".join(missing), partitions)
        layout = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(wanted)}
    finally:
        await admin.close()
    counts = {layout.get(t, 0) for t in SOURCE_TOPICS}
    if len(counts) != 1:
        raise TopicLayoutError(
            "event topics must share one partition count, found "
            + ", ".join(f"{t}={layout.get(t)}" for t in SOURCE_TOPICS)
        )
    return layout


def _new_topic(topic: str, partitions: int, replication: int) -> NewTopic:
    if topic in (ERASURES, DLQ_REPAIRS):
        # Keyed by customer (by dead letter), latest wins, kept for good (deploy/topics.sh).
        return NewTopic(topic, 1, replication, topic_configs={"cleanup.policy": "compact"})
    return NewTopic(topic, partitions, replication)


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    return [(e[0], e[1], e[2] if len(e) > 2 else None) for e in errors]
