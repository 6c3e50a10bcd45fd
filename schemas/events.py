"""The wire contract: every event a channel may publish, as pydantic v2 models.

These models are the single source of truth. The JSON Schema files under
``schemas/json/`` are exported from them (``continuity schema export``) and a
test fails when the checked-in files are stale.

Every event is one JSON object with a common envelope and a ``type``-specific
``payload``. Unknown extra fields are ignored so producers can add fields
without breaking older workers; missing or malformed required fields are not.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_extra_types.currency_code import ISO4217

# Ids become part of Redis keys and log lines: a strict alphabet and a length
# bound make key injection (``}``, ``*``, spaces, newlines) impossible. Unanchored,
# so the Redis key layout (``streams/store/keys.py``) can embed it in key patterns.
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}"
Id = Annotated[str, StringConstraints(pattern=rf"^{ID_PATTERN}$")]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]

MAX_LINE_QUANTITY = 999


# ``(?!\n)`` before ``$``: Python's ``$`` (and so Python JSON Schema validators)
# also matches before a final newline, ECMA-262's does not; with it, "5\n" is
# refused in both dialects, so every validator of the exported schema agrees.
MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,4})?(?!\n)$"
_MONEY = re.compile(MONEY_PATTERN)


def _decimal_from_string(value: Any) -> Any:
    # Floats lose cents on the way (19.99 is not representable), so the
    # contract demands a decimal string and refuses JSON numbers outright.
    # The string itself must match the exported pattern: Decimal() alone would
    # also take "1e3", "-0", "1_000", " 5 " and "NaN", which the JSON Schema
    # refuses, and a producer validating against the schema must get the same
    # answer as the worker.
    if not isinstance(value, str) or _MONEY.fullmatch(value) is None:
        raise ValueError(
            'unit_price must be a decimal string such as "19.99": digits, '
            "at most 8 before an optional point and 4 after it"
        )
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    Field(ge=0, max_digits=12, decimal_places=4),
    # What producers must send, stated plainly for non-Python readers of the contract.
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["19.99"]}),
]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_LINE_QUANTITY)]


class Channel(StrEnum):
    """Where the customer acted."""

    WEB = "web"
    MOBILE_APP = "mobile_app"
    POS = "pos"
    CALL_CENTER = "call_center"
    KIOSK = "kiosk"
    SOCIAL = "social"
    VOICE = "voice"


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ItemAdded(_Payload):
    sku: Sku
    quantity: Quantity
    unit_price: Money
    currency: ISO4217
    name: ShortText | None = None


class ItemRemoved(_Payload):
    sku: Sku


class QuantitySet(_Payload):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=0, le=MAX_LINE_QUANTITY)]


class Empty(_Payload):
    pass


class ProductViewed(_Payload):
    sku: Sku
    name: ShortText | None = None
    category: ShortText | None = None


class SearchMade(_Payload):
    query: ShortText


class CheckoutCompleted(_Payload):
    order_id: Id


class Unmerged(_Payload):
    anonymous_id: Id = Field(description="The guest id whose merge into the customer to undo.")


class HandoffClaimed(_Payload):
    terminal_id: Id | None = None


class _Envelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Id = Field(description="Unique per event; the idempotency key.")
    occurred_at: AwareDatetime = Field(description="RFC 3339 time with offset.")
    channel: Channel
    customer_id: Id | None = None
    anonymous_id: Id | None = None
    device_id: Id | None = None
    store_id: Id | None = None
    associate_id: Id | None = Field(
        default=None,
        description="The store or call-center associate who helped (assisted sales); "
        "kept on the cart lines they add or change.",
    )

    @model_validator(mode="after")
    def _has_identity(self) -> _Envelope:
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("an event needs customer_id, anonymous_id or both")
        return self

    @property
    def routing_key(self) -> str:
        """The Kafka message key: the customer when known, else the guest."""
        return self.customer_id or self.anonymous_id or ""


class CartItemAdded(_Envelope):
    type: Literal["cart.item_added"]
    payload: ItemAdded


class CartItemRemoved(_Envelope):
    type: Literal["cart.item_removed"]
    payload: ItemRemoved


class CartQuantitySet(_Envelope):
    type: Literal["cart.quantity_set"]
    payload: QuantitySet


class CartCleared(_Envelope):
    type: Literal["cart.cleared"]
    payload: Empty = Empty()


class BrowseProductViewed(_Envelope):
    type: Literal["browse.product_viewed"]
    payload: ProductViewed


class BrowseSearch(_Envelope):
    type: Literal["browse.search"]
    payload: SearchMade


class CheckoutStarted(_Envelope):
    type: Literal["checkout.started"]
    payload: Empty = Empty()


class CheckoutCompletedEvent(_Envelope):
    type: Literal["checkout.completed"]
    payload: CheckoutCompleted


class CheckoutHandoffClaimed(_Envelope):
    """A store's POS claimed the customer's handoff code and took over the session.

    Published by the gateway (``POST /v1/handoffs/{code}/claim``) on the
    checkout topic: channel ``pos``, ``store_id`` the claiming store.
    """

    type: Literal["checkout.handoff_claimed"]
    payload: HandoffClaimed = HandoffClaimed()

    @model_validator(mode="after")
    def _at_a_store(self) -> CheckoutHandoffClaimed:
        if self.channel is not Channel.POS or self.store_id is None:
            raise ValueError('checkout.handoff_claimed needs channel "pos" and a store_id')
        return self


class SessionIdentified(_Envelope):
    """The customer logged in: the guest ``anonymous_id`` is now ``customer_id``."""

    type: Literal["session.identified"]
    payload: Empty = Empty()

    @model_validator(mode="after")
    def _has_both_ids(self) -> SessionIdentified:
        if self.customer_id is None or self.anonymous_id is None:
            raise ValueError("session.identified needs both customer_id and anonymous_id")
        return self


class SessionUnmerged(_Envelope):
    """An operator undid a login merge before checkout (``continuity unmerge``).

    The guest's lines leave the customer's cart and become the guest's session
    again, and the guest id no longer points at the customer. Only a
    ``service`` token may publish it.
    """

    type: Literal["session.unmerged"]
    payload: Unmerged

    @model_validator(mode="after")
    def _names_the_customer(self) -> SessionUnmerged:
        if self.customer_id is None:
            raise ValueError("session.unmerged needs the customer_id")
        return self


EVENT_MODELS: tuple[type[_Envelope], ...] = (
    CartItemAdded,
    CartItemRemoved,
    CartQuantitySet,
    CartCleared,
    BrowseProductViewed,
    BrowseSearch,
    CheckoutStarted,
    CheckoutCompletedEvent,
    CheckoutHandoffClaimed,
    SessionIdentified,
    SessionUnmerged,
)

Event = Annotated[
    CartItemAdded
    | CartItemRemoved
    | CartQuantitySet
    | CartCleared
    | BrowseProductViewed
    | BrowseSearch
    | CheckoutStarted
    | CheckoutCompletedEvent
    | CheckoutHandoffClaimed
    | SessionIdentified
    | SessionUnmerged,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in EVENT_MODELS
)

AnyEvent = _Envelope

_TYPE_OF: dict[type, str] = dict(zip(EVENT_MODELS, EVENT_TYPES, strict=True))


def type_of(event: AnyEvent) -> str:
    """The wire ``type`` of a decoded event (``AnyEvent`` does not declare the field)."""
    return _TYPE_OF[type(event)]
