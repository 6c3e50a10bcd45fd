"""Publishing accepted events to Kafka and waiting for the broker's acknowledgement.

``acks=all``: an event is reported accepted only once every in-sync replica
has it. Records of one request are handed to the producer in order, so events
of one customer (one key, one partition) keep their order.

Idempotence (``CONTINUITY_PRODUCER_IDEMPOTENCE``) is off by default because
the embedded development broker refuses ``InitProducerId``; production turns
it on, so producer retries cannot write a record twice. Either way a
duplicate changes nothing in the session: the fold skips repeated event ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError

from streams.gateway.ingest import Accepted
from streams.gateway.params import Position
from streams.kafka import clients


class KafkaUnavailable(Exception):
    """The broker did not acknowledge in time; nothing may be reported accepted."""


class EventProducer:
    """One aiokafka producer shared by every request of a gateway process."""

    def __init__(
        self,
        bootstrap: str,
        *,
        idempotence: bool,
        timeout: float,
        kafka: Mapping[str, Any] | None = None,
    ) -> None:
        """A producer for ``bootstrap``; ``kafka``: the security arguments (kafka_security)."""
        self._timeout = timeout
        self._producer = clients.producer(
            bootstrap,
            "gateway",
            kafka=kafka,
            enable_idempotence=idempotence,
            linger_ms=2,
            request_timeout_ms=int(timeout * 1000),
        )

    async def start(self) -> None:
        """Connect (raises ``KafkaError`` if no broker answers)."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        await self._producer.stop()

    async def send(self, records: Sequence[Accepted]) -> dict[int, Position]:
        """Publish ``records``; map each one's index to its position, or raise ``KafkaUnavailable``.

        On a failure some records may have been written anyway: the caller
        answers 503 and the client retries the whole request, which the event
        ids make safe.
        """
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self._timeout):
                for r in records:
                    fut = await self._producer.send(
                        r.topic, r.value, key=r.key, headers=list(r.headers) or None
                    )
                    # Retrieved even if this request gives up on it (timeout, client gone).
                    fut.add_done_callback(_retrieve)
                    futures.append(fut)
                if futures:
                    # wait(), not gather(): a timeout must not cancel the records.
                    await asyncio.wait(futures)
            done = [fut.result() for fut in futures]
        except (KafkaError, TimeoutError, OSError) as exc:
            raise KafkaUnavailable(repr(exc)) from None
        return {
            r.index: Position(md.topic, md.partition, md.offset)
            for r, md in zip(records, done, strict=True)
        }

    async def ping(self) -> None:
        """One metadata round trip to a broker (readiness); raises on failure."""
        async with asyncio.timeout(min(self._timeout, 3.0)):
            await self._producer.client.fetch_all_metadata()


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a record's failure as seen, so asyncio does not log it as unhandled."""
    if not fut.cancelled():
        fut.exception()
