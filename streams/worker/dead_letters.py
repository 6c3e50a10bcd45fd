"""Sending dead letters to ``events-dlq``: never dropped, never stuck in silence. Thin edge.

The worker dead-letters a batch's rejected records before the commit that marks
them applied, and holds the partition until the broker has them
(``streams/worker/processor.py``). So a dead letter the broker can never take
would stall its partition forever. Two rules keep that from happening:

* A record too large to copy within ``max_bytes`` (``CONTINUITY_DEAD_LETTER_MAX_BYTES``,
  capped by the producer's own request limit) is sent as a reference
  (``streams/core/dead_letter.py``, ``schemas/dead_letter.py``); a copy the
  producer or the broker still refuses as too large (a broker limit below the
  setting) is sent again at once as a reference.
* Any other failure is retried with capped backoff, as before, but never
  silently: every failed send counts in ``continuity_dead_letter_send_failures_total``
  (by error and whether Kafka calls it retriable), and one that is not
  retriable (authorisation, an unknown topic...) is logged as an error naming
  what to fix, since waiting alone will not fix it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from streams.core.dead_letter import DeadLetter, dead_letter
from streams.core.facts import RecordId, record_id
from streams.core.plan import RecordOutcome
from streams.logs import batch_fields, record_fields
from streams.worker import metrics

log = logging.getLogger(__name__)

# Queues one dead letter on the producer; the awaitable resolves once the broker has it.
Send = Callable[[DeadLetter], Awaitable[Awaitable[Any]]]

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def too_large(exc: BaseException) -> bool:
    """Whether the producer or the broker refused a record for its size."""
    return isinstance(exc, _TOO_LARGE)


def retriable(exc: BaseException) -> bool:
    """Whether Kafka says trying again may succeed (a connection, a leader moving)."""
    return bool(getattr(exc, "retriable", False)) or isinstance(exc, OSError | TimeoutError)


class DeadLetterSender:
    """Sends a batch's dead letters and returns only once the broker has every one."""

    def __init__(self, send: Send, max_bytes: int, max_delay: float = 5.0) -> None:
        self.send = send
        self.max_bytes = max_bytes
        self.max_delay = max_delay

    async def __call__(self, outcomes: Sequence[RecordOutcome]) -> None:
        """Deliver a dead letter for each outcome (a copy or a reference), retrying for
        as long as it takes; what each failure was is counted and logged."""
        refused: dict[RecordId, str] = {}
        pending = list(outcomes)
        delay = 0.1
        while pending:
            letters = [
                dead_letter(o, self.max_bytes, refused=refused.get(record_id(o.record)))
                for o in pending
            ]
            results = await self._send_all(letters)
            failed: list[RecordOutcome] = []
            retry_now = True
            for outcome, letter, result in zip(pending, letters, results, strict=True):
                if not isinstance(result, BaseException):
                    if letter.reference:
                        _referenced(outcome, letter)
                    continue
                failed.append(outcome)
                if too_large(result) and not letter.reference:
                    refused[record_id(outcome.record)] = (
                        f"refused as too large ({type(result).__name__})"
                    )
                    _failed(outcome, result, "sending it again as a reference", logging.WARNING)
                    continue
                retry_now = False
                if retriable(result):
                    _failed(outcome, result, f"retrying in {delay:.1f}s", logging.WARNING)
                else:
                    _failed(
                        outcome,
                        result,
                        f"not retriable: its partition waits until {_hint(result)}; "
                        f"retrying in {delay:.1f}s",
                        logging.ERROR,
                    )
            pending = failed
            if pending and not retry_now:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)

    async def _send_all(self, letters: Sequence[DeadLetter]) -> list[Any]:
        """Queue every letter in order, then wait for the broker: a result per letter."""
        queued: list[Awaitable[Any] | BaseException] = []
        for letter in letters:
            try:
                queued.append(await self.send(letter))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused before it was queued (its size, a closed producer)
                queued.append(exc)
        results: list[Any] = []
        for item in queued:
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                results.append(await item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                results.append(exc)
        return results


def _hint(exc: BaseException) -> str:
    name = type(exc).__name__
    if "Authorization" in name:
        return "the worker's principal may write to events-dlq (ACLs)"
    if "UnknownTopic" in name or "InvalidTopic" in name:
        return "events-dlq exists (deploy/topics.sh)"
    if too_large(exc):
        return "events-dlq takes records of a few KiB (max.message.bytes)"
    return "the cause is fixed"


def _failed(outcome: RecordOutcome, exc: BaseException, then: str, level: int) -> None:
    kind = "retriable" if retriable(exc) else "not_retriable"
    metrics.DEAD_LETTER_SEND_FAILURES.labels(type(exc).__name__, kind).inc()
    rec = outcome.record
    log.log(
        level,
        "dead-letter send for %s[%d]@%d failed (%r); %s",
        rec.topic,
        rec.partition,
        rec.offset,
        exc,
        then,
        extra=batch_fields([rec]),
    )


def _referenced(outcome: RecordOutcome, letter: DeadLetter) -> None:
    rec = outcome.record
    reason = outcome.reason.value if outcome.reason else "unknown"
    metrics.DEAD_LETTER_REFERENCES.labels(rec.topic, reason).inc()
    log.warning(
        "dead-lettered %s[%d]@%d as a reference (%d bytes): read the record at its "
        "position while %s's retention keeps it (continuity dlq show)",
        rec.topic,
        rec.partition,
        rec.offset,
        len(rec.value or b""),
        rec.topic,
        extra=record_fields(rec, None, reason=reason),
    )
