"""Publishing events to the right topic with the right key (for tools, demo and tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Self

from streams.core.outgoing import Outgoing, prepare, prepare_dict

# Re-exported: callers publish what they prepare.
from streams.kafka import clients

__all__ = ["Outgoing", "Publisher", "prepare", "prepare_dict"]


class Publisher:
    """A thin aiokafka producer: acks=all, no idempotence (the embedded broker refuses it;
    the fold is idempotent anyway)."""

    def __init__(
        self, bootstrap: str, linger_ms: int = 5, *, kafka: Mapping[str, Any] | None = None
    ) -> None:
        """A producer for ``bootstrap``; ``kafka``: the security arguments (kafka_security)."""
        self._producer = clients.producer(bootstrap, "publish", kafka=kafka, linger_ms=linger_ms)

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
