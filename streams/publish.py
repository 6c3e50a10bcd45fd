"""Publishing events to the right topic with the right key (for tools, demo and tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import orjson
from aiokafka import AIOKafkaProducer

from schemas.topics import topic_for
from streams.decode import decode
from streams.fold import Rejected


@dataclass(frozen=True)
class Outgoing:
    """A Kafka record ready to send."""

    topic: str
    key: bytes
    value: bytes


def prepare(value: bytes) -> Outgoing | Rejected:
    """Validate one event and address it: topic by type, key = customer key."""
    event = decode(value)
    if isinstance(event, Rejected):
        return event
    return Outgoing(topic_for(event.type), event.routing_key.encode(), value)  # type: ignore[attr-defined]


def prepare_dict(event: dict[str, Any]) -> Outgoing:
    """Address an event given as a dict; raises ``ValueError`` if it breaks the contract."""
    out = prepare(orjson.dumps(event))
    if isinstance(out, Rejected):
        raise ValueError(f"{out.reason.value}: {out.detail}")
    return out


class Publisher:
    """A thin aiokafka producer: acks=all, no idempotence (the embedded broker refuses it;
    the fold is idempotent anyway)."""

    def __init__(
        self, bootstrap: str, linger_ms: int = 5, *, kafka: Mapping[str, Any] | None = None
    ) -> None:
        """A producer for ``bootstrap``; ``kafka``: the security arguments (kafka_security)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=linger_ms,
            enable_idempotence=False,
            **(kafka or {}),
        )

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, out: Outgoing) -> asyncio.Future[Any]:
        """Queue one record; the returned future resolves when the broker has it."""
        fut: asyncio.Future[Any] = await self._producer.send(out.topic, out.value, key=out.key)
        return fut

    async def send_all(self, records: Iterable[Outgoing]) -> list[Any]:
        """Send records in order; wait until the broker acknowledged every one.

        Returns the ``RecordMetadata`` of each record (topic, partition, offset).
        """
        futures = [await self.send(r) for r in records]
        return list(await asyncio.gather(*futures))

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (for tests and repairs); waits for the broker."""
        await self._producer.send_and_wait(topic, value, key=key)
