"""Outbound notifications on ``session-notifications`` (part of the wire contract).

Keyed by the session key (the customer, or the guest for a guest session), so
one customer's notifications stay in order on one partition. Delivery is
at least once: ``notification_id`` is stable across redeliveries, restarts
and rebuilds, so a consumer deduplicates on it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.events import Channel
from schemas.session import CartLine


class _Notification(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    notification_id: str = Field(description="Stable across redeliveries: deduplicate on it.")
    key: str = Field(description="The session key: customer_id, or anonymous_id for a guest.")
    customer_id: str | None = None
    version: int = Field(description="The session version the notification describes.")


class CartAbandoned(_Notification):
    """A cart with items saw no activity for the configured idle time.

    Sent once per abandonment: the timer is cancelled by any later activity
    or a completed checkout, and a new abandonment needs new activity first.
    """

    type: Literal["cart.abandoned"] = "cart.abandoned"
    abandoned_at: datetime = Field(description="When the idle time ran out (the sweep's clock).")
    idle_seconds: float = Field(description="Seconds since the session's last applied event.")
    last_activity_at: datetime | None = Field(
        description="occurred_at of the session's newest event."
    )
    last_channel: Channel | None = None
    cart_path: list[Channel] = Field(description="The channels the cart went through, in order.")
    cart: list[CartLine]
    currency: str | None = None
    item_count: int
    subtotal: Decimal


class SessionResumedElsewhere(_Notification):
    """A cart last changed on one channel was next touched on another (mobile -> store)."""

    type: Literal["session.resumed_elsewhere"] = "session.resumed_elsewhere"
    from_channel: Channel
    to_channel: Channel
    occurred_at: datetime = Field(description="When the event on the new channel happened.")
    event_id: str = Field(description="The event that touched the cart on the new channel.")
    event_type: str
    store_id: str | None = None
    device_id: str | None = None
    item_count: int
    subtotal: Decimal
    currency: str | None = None


Notification = Annotated[CartAbandoned | SessionResumedElsewhere, Field(discriminator="type")]
NOTIFICATION_ADAPTER: TypeAdapter[CartAbandoned | SessionResumedElsewhere] = TypeAdapter(
    Notification
)
