"""The ``session-forwards`` topic (part of the wire contract, internal to the workers).

When a login's guest and customer live on different partitions, no one commit
can change both (a Redis Cluster script touches one slot, and each partition's
keys share one). The worker of one partition then hands the rest of the work to
the other partition's worker as a forward: a record its commit wrote to its own
outbox in the same atomic step as its state, which a relay publishes keyed by
the destination key, so it lands on that key's partition (the topic is
co-partitioned with the source topics). The destination applies it once: its
offsets go in the same commit as its state, and the relay's re-sends after a
crash are recognised by the headers ``continuity.forward.origin`` (the
partition that wrote it) and ``continuity.forward.seq`` (its outbox entry id,
growing per origin).

The kinds (``docs/merge-across-partitions.md`` tells the whole story):

* ``login``: customer side -> guest side. A sign-in of a guest of another
  partition: the guest side takes the guest's session apart (or keeps it, on a
  shared device) and points the guest's alias at the customer.
* ``merge``: guest side -> customer side, the answer to ``login``: the guest's
  session as it left, its journey, and the sign-in itself, which the customer
  side folds after the merge. The customer's events held meanwhile follow.
* ``event``: a guest's event whose alias points at a customer of another
  partition; the customer side folds it, or sends it back (``alias_end``) if
  the customer's session the alias pointed at has ended.
* ``alias_end``: customer side -> guest side: the alias no longer leads to a
  live session (it ended, was erased, or the sign-in came after an erasure);
  the guest side drops it, keeps ``floor`` as the guest's version floor, and
  applies ``event`` if one came back with it.
* ``unmerge``: customer side -> guest side: an undone merge gives the guest
  its lines back (``lines``) and its id its own session.
* ``ask`` and ``floor``: a shared device's guest whose alias leads to a
  customer of another partition starts a session of its own: its versions go
  on from the customer's (``floor``), which the guest side asks for; its
  session waits for the answer. If the customer's session has ended by the
  event's time, the answer is ``alias_end`` with the event instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.session import CartLine, Session

Kind = Literal["login", "merge", "event", "alias_end", "unmerge", "ask", "floor"]


class Origin(BaseModel):
    """The source record an event came in on: an erasure is judged on it, wherever
    the event is applied in the end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    timestamp_ms: int | None = Field(
        default=None,
        description="The source record's Kafka timestamp (ms): the freshness of the event's "
        "commit is measured from it, wherever the event is applied in the end.",
    )

    @property
    def tp(self) -> str:
        """The field naming the origin's partition in an offsets hash."""
        return f"{self.topic}:{self.partition}"

    @property
    def id(self) -> str:
        """``topic:partition:offset``: names the login a customer's session waits for."""
        return f"{self.tp}:{self.offset}"


class JourneyItem(BaseModel):
    """One journey entry moving with a merged guest: its score (ms) and stored member."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    score_ms: int
    member: str


class Forward(BaseModel):
    """One record of ``session-forwards``, keyed by ``key`` (the key it is for)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    key: str = Field(description="The session key (or guest id) this is for; its partition.")
    origin: Origin
    event: str | None = Field(
        default=None, description="The source record's value (the event JSON), verbatim."
    )
    replayed_from: str | None = None
    customer_id: str | None = Field(
        default=None, description="login, merge: the customer signed in to."
    )
    guest_id: str | None = Field(
        default=None, description="merge, alias_end, unmerge: the guest id concerned."
    )
    guest: Session | None = Field(default=None, description="merge: the guest's session.")
    ended_version: int = Field(
        default=0, description="merge: the version an ended guest session reached."
    )
    linked: bool = Field(
        default=False, description="merge: the guest's alias already pointed at the customer."
    )
    journey: list[JourneyItem] = Field(default_factory=list)
    seen: bool = Field(
        default=False, description="event: a session of the guest's partition applied it already."
    )
    floor: int = Field(default=0, description="alias_end, unmerge: the guest's version floor.")
    erased_at_ms: int | None = Field(
        default=None, description="login, alias_end: the customer's erasure, if it covers this."
    )
    lines: list[CartLine] = Field(default_factory=list, description="unmerge: lines given back.")
