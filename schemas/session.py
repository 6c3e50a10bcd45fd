"""The per-customer session state: what every channel resumes from.

Stored in Redis as JSON (see ``streams/store/state.py`` for the layout) and
served as is to operators and, later, to frontends. ``recent_event_ids`` is
internal bookkeeping for idempotence and is left out of the public view.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Channel

CheckoutStatus = Literal["none", "started", "completed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Touch(_Frozen):
    """Who added or changed a cart line: the line's provenance."""

    channel: Channel
    at: datetime
    device_id: str | None = None
    store_id: str | None = None
    associate_id: str | None = Field(
        default=None, description="The associate who helped: credit an assisted sale to them."
    )


class CartLine(_Frozen):
    """One sku in the cart."""

    sku: str
    name: str | None = None
    quantity: int
    unit_price: Decimal
    currency: str
    channel: Channel = Field(description="The channel that last touched this line.")
    updated_at: datetime
    price_changed_from: Decimal | None = Field(
        default=None,
        description="The unit price before the last change of price (one sku has one price "
        "across channels: the latest wins); frontends tell the customer.",
    )
    price_changed_at: datetime | None = Field(
        default=None, description="When the unit price last changed."
    )
    added_by: Touch | None = Field(
        default=None, description="Where and by whom the line was first added (kept by merges)."
    )
    changed_by: Touch | None = Field(
        default=None, description="Where and by whom the line was last changed."
    )


class MergedLine(_Frozen):
    """One sku of a login merge: what each side had and what the cart kept."""

    sku: str
    guest_quantity: int = 0
    customer_quantity: int = 0
    quantity: int = Field(description="The merged cart's quantity; 0 if the line was dropped.")


class MergeRecord(_Frozen):
    """A login merge, kept so support can see what came from where."""

    at: datetime = Field(description="occurred_at of the login that merged.")
    anonymous_id: str
    policy: str
    lines: list[MergedLine] = Field(default_factory=list)
    undone_at: datetime | None = Field(
        default=None, description="When an operator undid this merge (continuity unmerge)."
    )


class ViewedProduct(_Frozen):
    """A recently viewed product, newest first in the session."""

    sku: str
    name: str | None = None
    category: str | None = None
    channel: Channel
    viewed_at: datetime


class Checkout(_Frozen):
    """Checkout progress of the current cart."""

    status: CheckoutStatus = "none"
    order_id: str | None = None
    channel: Channel | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    based_on_version: int | None = Field(
        default=None, description="Session version the checkout started from."
    )
    items: dict[str, int] = Field(
        default_factory=dict,
        description="Cart quantities when the checkout started; a completion removes these.",
    )


class Session(_Frozen):
    """One customer's (or guest's) session across every channel."""

    key: str = Field(description="The customer_id, or the anonymous_id for a guest.")
    customer_id: str | None = None
    anonymous_ids: list[str] = Field(default_factory=list)
    cart: list[CartLine] = Field(default_factory=list)
    currency: str | None = None
    item_count: int = 0
    subtotal: Decimal = Decimal("0")
    recently_viewed: list[ViewedProduct] = Field(default_factory=list)
    recent_searches: list[str] = Field(default_factory=list)
    checkout: Checkout = Field(default_factory=Checkout)
    orders: list[str] = Field(default_factory=list, description="Recent order ids, newest first.")
    channels: list[Channel] = Field(default_factory=list)
    last_channel: Channel | None = None
    last_device_id: str | None = None
    last_store_id: str | None = None
    cart_path: list[Channel] = Field(
        default_factory=list,
        description="The channels that changed the current cart or checked it out, in order of "
        "first touch; empty with the cart. The channel path of the conversion KPIs.",
    )
    set_aside: list[CartLine] = Field(
        default_factory=list,
        description="Guest lines a keep_separate login merge kept apart from the cart (not in "
        "the subtotal); adding the sku takes it over.",
    )
    merges: list[MergeRecord] = Field(
        default_factory=list, description="The latest login merges with carts, newest first."
    )
    first_touch_at: datetime | None = Field(
        default=None,
        description="The first event since the last completed checkout: where the time from "
        "first touch to checkout starts.",
    )
    version: int = 0
    updated_at: datetime | None = None
    recent_event_ids: list[str] = Field(default_factory=list)

    def public(self) -> dict[str, object]:
        """The JSON-ready view served to operators and frontends."""
        return self.model_dump(mode="json", exclude={"recent_event_ids"})
