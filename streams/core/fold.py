"""The fold: session state + one event -> outcome. Pure: no I/O, no clock.

Semantics (documented in the README's "Session semantics"):

* ``version`` counts applied events: every accepted event raises it by one.
* ``updated_at`` is the newest ``occurred_at`` applied, never the wall clock,
  so replaying the same events rebuilds the same bytes.
* An ``event_id`` already among the last ``Limits.dedup_window`` applied ids
  is a duplicate and changes nothing; a repeated ``order_id`` likewise.
* A cart holds one currency; an add in another currency is rejected.
* ``checkout.handoff_claimed`` (a POS took the session over) changes only
  what every applied event changes: version, ``last_channel``, ``last_store_id``.
* ``checkout.started`` snapshots the cart; ``checkout.completed`` removes the
  snapshotted quantities, so an item added on another channel while the
  customer pays stays in the new cart, whichever of the two events the worker
  sees first. Events on different topics have no order in Kafka, so a line the
  snapshot missed (or a completion with no start) is judged by ``occurred_at``:
  changed before the checkout began means bought, after means kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from schemas.events import (
    MAX_LINE_QUANTITY,
    AnyEvent,
    BrowseProductViewed,
    BrowseSearch,
    CartCleared,
    CartItemAdded,
    CartItemRemoved,
    CartQuantitySet,
    Channel,
    CheckoutCompletedEvent,
    CheckoutHandoffClaimed,
    CheckoutStarted,
    SessionIdentified,
    SessionUnmerged,
)
from schemas.session import CartLine, Checkout, Session, Touch, ViewedProduct
from streams.core.expiry import DEFAULT_GUEST_TTL, DEFAULT_SESSION_TTL


class MergePolicy(StrEnum):
    """How a guest cart meets the customer's at login (``CONTINUITY_MERGE_POLICY``)."""

    # One line per sku with the quantities added up (capped), the rest of the
    # line from whichever side changed it last.
    COMBINE = "combine"
    # The customer's saved cart stays as it is; the guest's lines are dropped,
    # unless the customer's cart is empty, then the guest's cart is taken.
    KEEP_CUSTOMER = "keep_customer"
    # The cart of the side active most recently is kept whole, the other dropped.
    KEEP_NEWEST = "keep_newest"
    # One line per sku with the higher of the two quantities (commercetools' default).
    HIGHER_QUANTITY = "higher_quantity"
    # The customer's cart stays; the guest's lines are kept apart (``Session.set_aside``)
    # for the customer to take over, nothing dropped.
    KEEP_SEPARATE = "keep_separate"


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one session small, and the merge policy; the fold's definition."""

    max_cart_lines: int = 100
    recently_viewed: int = 20
    recent_searches: int = 10
    recent_orders: int = 10
    anonymous_ids: int = 20
    # Event ids remembered per session, so a producer's retried duplicate is dropped;
    # exactly-once against redelivery rests on the applied offsets, not on this.
    dedup_window: int = 256
    merges: int = 5
    merge_policy: MergePolicy = MergePolicy.COMBINE
    # The shared-device guard (streams/core/shared_device.py): a device linked to more
    # than this many customers within the window (seconds) is nobody's.
    shared_device_customers: int = 1
    shared_device_window: int = 30 * 86400
    # Idle seconds (event time) after which a guest's or a customer's session has
    # ended (streams/core/expiry.py); the next event starts a fresh one.
    guest_ttl: int = DEFAULT_GUEST_TTL
    session_ttl: int = DEFAULT_SESSION_TTL
    # Seconds ``occurred_at`` may lie after / before its record's Kafka timestamp before
    # the planner brings it to that bound (streams/core/event_time.py); None: unbounded.
    # The worker's settings bound both (CONTINUITY_EVENT_TIME_MAX_AHEAD / _BEHIND).
    event_time_max_ahead: int | None = None
    event_time_max_behind: int | None = None


DEFAULT_LIMITS = Limits()


def remembered(event_ids: list[str], limits: Limits) -> list[str]:
    """The newest ``limits.dedup_window`` of ``event_ids`` (none for a window of 0)."""
    # A slice from -0 would keep everything, the opposite of a window of 0.
    return event_ids[-limits.dedup_window :] if limits.dedup_window > 0 else []


class Reason(StrEnum):
    """Why an event was dead-lettered. Part of the documented interface."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_EVENT = "invalid_event"
    CURRENCY_MISMATCH = "currency_mismatch"
    LINE_NOT_IN_CART = "line_not_in_cart"
    QUANTITY_LIMIT = "quantity_limit"
    CART_FULL = "cart_full"
    NOTHING_TO_UNMERGE = "nothing_to_unmerge"
    MERGE_CHECKED_OUT = "merge_checked_out"


@dataclass(frozen=True)
class Applied:
    session: Session


@dataclass(frozen=True)
class Duplicate:
    why: str


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str


Outcome = Applied | Duplicate | Rejected


def new_session(key: str, customer_id: str | None) -> Session:
    """An empty session stored under ``key``."""
    return Session(key=key, customer_id=customer_id)


# An event whose id the session remembers (part of the metric/dead-letter vocabulary).
SEEN = Duplicate("event_id already applied")


def fold(session: Session, event: AnyEvent, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Apply ``event`` to ``session`` and say what happened. Never raises on valid events."""
    if event.event_id in session.recent_event_ids:
        return SEEN
    changed = _apply_type(session, event, limits)
    if not isinstance(changed, Session):
        return changed
    path = cart_path(session, changed, event)
    if path != changed.cart_path:
        changed = changed.model_copy(update={"cart_path": path})
    return Applied(_touch(changed, event, limits))


def cart_path(before: Session, after: Session, event: AnyEvent) -> list[Channel]:
    """The channels of the cart's journey once ``event`` turned ``before`` into ``after``.

    A cart's journey starts when an empty cart gets its first line and ends with
    the cart emptied or checked out; the channels that changed it or worked on
    its checkout join in order. Lines left after a completed checkout (added
    while the customer paid) start the next journey, on the channels they came from.
    """
    if not after.cart:
        return []
    if isinstance(event, CheckoutCompletedEvent):
        return list(dict.fromkeys(ln.channel for ln in after.cart))
    if not before.cart:
        return [event.channel]
    touched = after.cart is not before.cart or isinstance(
        event, CheckoutStarted | CheckoutHandoffClaimed
    )
    if touched and event.channel not in before.cart_path:
        return [*before.cart_path, event.channel]
    return before.cart_path


def _apply_type(session: Session, event: AnyEvent, limits: Limits) -> Session | Outcome:
    match event:
        case CartItemAdded():
            return _item_added(session, event, limits)
        case CartItemRemoved():
            return with_cart(session, [ln for ln in session.cart if ln.sku != event.payload.sku])
        case CartQuantitySet():
            return _quantity_set(session, event)
        case CartCleared():
            return with_cart(session, [])
        case BrowseProductViewed():
            return _viewed(session, event, limits)
        case BrowseSearch():
            searches = [event.payload.query, *session.recent_searches]
            return session.model_copy(
                update={"recent_searches": searches[: limits.recent_searches]}
            )
        case CheckoutStarted():
            return _checkout_started(session, event)
        case CheckoutCompletedEvent():
            return _checkout_completed(session, event, limits)
        case CheckoutHandoffClaimed():
            # A store took the session over: only what every applied event
            # changes (version, last_channel "pos", last_store_id), in _touch.
            return session
        case SessionIdentified() | SessionUnmerged():
            # The merge (streams/core/merge.py) and its undoing (streams/core/unmerge.py) happen
            # in the planner, before the fold; the event then counts as an ordinary one.
            return session
    raise TypeError(f"fold has no rule for {type(event).__name__}")


def _item_added(session: Session, event: CartItemAdded, limits: Limits) -> Session | Outcome:
    p = event.payload
    if any(line.sku == p.sku for line in session.set_aside):
        # Taken over from the lines a keep_separate merge set aside.
        aside = [line for line in session.set_aside if line.sku != p.sku]
        session = session.model_copy(update={"set_aside": aside})
    if session.currency is not None and session.currency != p.currency:
        return Rejected(
            Reason.CURRENCY_MISMATCH,
            f"cart is in {session.currency}, event adds {p.sku} in {p.currency}",
        )
    cart = list(session.cart)
    for i, line in enumerate(cart):
        if line.sku == p.sku:
            quantity = line.quantity + p.quantity
            if quantity > MAX_LINE_QUANTITY:
                return Rejected(
                    Reason.QUANTITY_LIMIT, f"{p.sku} would reach {quantity} > {MAX_LINE_QUANTITY}"
                )
            cart[i] = repriced(line, p.unit_price, event.occurred_at).model_copy(
                update={
                    "quantity": quantity,
                    "name": p.name or line.name,
                    "channel": event.channel,
                    "updated_at": event.occurred_at,
                    "changed_by": touch(event),
                }
            )
            return with_cart(session, cart)
    if len(cart) >= limits.max_cart_lines:
        return Rejected(Reason.CART_FULL, f"cart already holds {len(cart)} lines")
    by = touch(event)
    cart.append(
        CartLine(
            sku=p.sku,
            name=p.name,
            quantity=p.quantity,
            unit_price=p.unit_price,
            currency=p.currency,
            channel=event.channel,
            updated_at=event.occurred_at,
            added_by=by,
            changed_by=by,
        )
    )
    return with_cart(session, cart)


def touch(event: AnyEvent) -> Touch:
    """Where, when and by whom ``event`` touched a cart line."""
    return Touch(
        channel=event.channel,
        at=event.occurred_at,
        device_id=event.device_id,
        store_id=event.store_id,
        associate_id=event.associate_id,
    )


def repriced(line: CartLine, price: Decimal, at: datetime) -> CartLine:
    """``line`` at ``price``: the latest price wins, and a change is flagged on the line."""
    if price == line.unit_price:
        return line
    return line.model_copy(
        update={"unit_price": price, "price_changed_from": line.unit_price, "price_changed_at": at}
    )


def _quantity_set(session: Session, event: CartQuantitySet) -> Session | Outcome:
    p = event.payload
    if p.quantity == 0:
        return with_cart(session, [ln for ln in session.cart if ln.sku != p.sku])
    cart = list(session.cart)
    for i, line in enumerate(cart):
        if line.sku == p.sku:
            cart[i] = line.model_copy(
                update={
                    "quantity": p.quantity,
                    "channel": event.channel,
                    "updated_at": event.occurred_at,
                    "changed_by": touch(event),
                }
            )
            return with_cart(session, cart)
    return Rejected(Reason.LINE_NOT_IN_CART, f"{p.sku} is not in the cart; add it with a price")


def _viewed(session: Session, event: BrowseProductViewed, limits: Limits) -> Session:
    p = event.payload
    item = ViewedProduct(
        sku=p.sku,
        name=p.name,
        category=p.category,
        channel=event.channel,
        viewed_at=event.occurred_at,
    )
    rest = [v for v in session.recently_viewed if v.sku != p.sku]
    return session.model_copy(update={"recently_viewed": [item, *rest][: limits.recently_viewed]})


def _checkout_started(session: Session, event: CheckoutStarted) -> Session:
    checkout = Checkout(
        status="started",
        channel=event.channel,
        started_at=event.occurred_at,
        based_on_version=session.version,
        items={line.sku: line.quantity for line in session.cart},
    )
    return session.model_copy(update={"checkout": checkout})


def _checkout_completed(
    session: Session, event: CheckoutCompletedEvent, limits: Limits
) -> Session | Outcome:
    order_id = event.payload.order_id
    if order_id in session.orders:
        return Duplicate(f"order {order_id} already completed")
    started = session.checkout.status == "started"
    cart = []
    for line in session.cart:
        left = line.quantity - _bought(session.checkout, line, started, event)
        if left > 0:
            cart.append(
                line if left == line.quantity else line.model_copy(update={"quantity": left})
            )
    checkout = Checkout(
        status="completed",
        order_id=order_id,
        channel=event.channel,
        started_at=session.checkout.started_at if started else None,
        completed_at=event.occurred_at,
        based_on_version=session.checkout.based_on_version if started else session.version,
    )
    orders = [order_id, *session.orders][: limits.recent_orders]
    return with_cart(session, cart).model_copy(update={"checkout": checkout, "orders": orders})


def _bought(checkout: Checkout, line: CartLine, started: bool, event: AnyEvent) -> int:
    """How much of ``line`` the completed order took.

    The start's snapshot decides for the skus it saw. A line it did not see, or
    a completion with no start, is judged by time: last changed before the
    checkout began (its event was merely delivered late from another topic)
    means bought; changed after means added while the customer paid.
    """
    if started and line.sku in checkout.items:
        return checkout.items[line.sku]
    cutoff = checkout.started_at if started and checkout.started_at else event.occurred_at
    return line.quantity if line.updated_at <= cutoff else 0


def with_cart(session: Session, cart: list[CartLine]) -> Session:
    """Replace the cart and recompute what derives from it (Decimal arithmetic)."""
    subtotal = sum((ln.unit_price * ln.quantity for ln in cart), Decimal("0"))
    return session.model_copy(
        update={
            "cart": cart,
            "currency": cart[0].currency if cart else None,
            "item_count": sum(ln.quantity for ln in cart),
            "subtotal": subtotal,
        }
    )


def _touch(session: Session, event: AnyEvent, limits: Limits) -> Session:
    """What every applied event changes, whatever its type."""
    channels = session.channels
    if event.channel not in channels:
        channels = [*channels, event.channel]
    anonymous_ids = session.anonymous_ids
    if event.anonymous_id is not None and event.anonymous_id not in anonymous_ids:
        anonymous_ids = [*anonymous_ids, event.anonymous_id][-limits.anonymous_ids :]
    updated_at: datetime | None = session.updated_at
    if updated_at is None or event.occurred_at > updated_at:
        updated_at = event.occurred_at
    # A completed checkout ends the purchase journey; the next event starts one.
    first_touch: datetime | None = None
    if not isinstance(event, CheckoutCompletedEvent):
        first_touch = session.first_touch_at
        if first_touch is None or event.occurred_at < first_touch:
            first_touch = event.occurred_at
    return session.model_copy(
        update={
            "channels": channels,
            "anonymous_ids": anonymous_ids,
            "last_channel": event.channel,
            "last_device_id": event.device_id or session.last_device_id,
            "last_store_id": event.store_id or session.last_store_id,
            "version": session.version + 1,
            "updated_at": updated_at,
            "first_touch_at": first_touch,
            "recent_event_ids": remembered([*session.recent_event_ids, event.event_id], limits),
        }
    )
