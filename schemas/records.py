"""The operators' topics' records (part of the wire contract).

``session-erasures`` (compacted, one partition, keyed by customer id) holds every
erasure, so a rebuild restores them before it folds (``streams/core/erasure.py``
writes them). ``events-dlq-repairs`` (compacted, one partition, keyed by the dead
letter's source record) holds what an operator did with each dead letter
(``streams/core/dlq_repair.py`` writes them). ``events-dlq`` keeps the rejected
record's key and value bytes as they came; its headers say why and from where.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.events import Id


class ErasureRecord(BaseModel):
    """One erasure: whose records, and up to where in each source partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: Id = Field(description="The erased customer (also the record's key).")
    ids: list[Id] = Field(
        description="The customer id first, then every guest id ever linked to it."
    )
    erased_at_ms: int = Field(description="When the erasure was made (Unix ms).")
    upto: dict[str, int] = Field(
        description="`topic:partition` -> the log end when erased: records before it are "
        "erased, records at or after it are not."
    )
    floors: dict[str, int] = Field(
        default_factory=dict,
        description="Id -> the version its session had when erased: a later session of "
        "that id goes on from it.",
    )


class RepairRecord(BaseModel):
    """What an operator did with one dead letter (the ledger keeps the latest per key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity: str = Field(
        description="The dead letter's source record, `topic:partition@offset` (the key)."
    )
    dlq: str = Field(description="Where the dead letter is in events-dlq: `partition:offset`.")
    state: Literal["pending", "replayed", "dropped"]
    at_ms: int = Field(description="When the operator acted (Unix ms).")
    event_id: str | None = Field(default=None, description="The repaired event's id.")
    published_to: str | None = Field(
        default=None, description="replayed: `topic:partition@offset` of the replayed record."
    )
    note: str = Field(default="", description="The operator's note.")


ERASURE_ADAPTER: TypeAdapter[ErasureRecord] = TypeAdapter(ErasureRecord)
REPAIR_ADAPTER: TypeAdapter[RepairRecord] = TypeAdapter(RepairRecord)
