"""Identity merge: a guest session meets the customer's on login. Pure.

Rules (the README's "Identity" section):

* Lines of the same sku combine quantities (capped at the line maximum), or
  keep the higher one under ``higher_quantity``; the more recently touched line
  gives price, name, channel and ``changed_by``, the first added ``added_by``.
* A merge that brings a guest cart is recorded (``Session.merges``): per sku,
  what the guest and the customer had and what the cart kept.
* A cart holds one currency. When both carts are non-empty in different
  currencies, the more recently updated cart wins and the other's lines are
  returned as ``dropped`` so the caller can report them.
* Recently viewed products are merged newest first, searches and orders are
  unioned, channels and anonymous ids are unioned in first-seen order.
* The merged ``version`` is the larger of the two so versions under the
  customer key never go backwards; applying the login event adds one.
* Applied event ids are unioned so a guest event re-delivered after the merge
  is still recognised as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from schemas.events import MAX_LINE_QUANTITY, Channel
from schemas.session import CartLine, MergedLine, MergeRecord, Session, Touch
from streams.core.fold import Limits, MergePolicy, new_session, remembered, repriced, with_cart

T = TypeVar("T")
_EPOCH = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


@dataclass(frozen=True)
class Merged:
    session: Session
    dropped: tuple[CartLine, ...] = ()


def merge_guest(
    customer: Session | None,
    guest: Session | None,
    customer_id: str,
    anonymous_id: str,
    limits: Limits,
    at: datetime | None = None,
) -> Merged:
    """Fold the guest session of ``anonymous_id`` into the session of ``customer_id``.

    ``at``: when the login happened; a merge that brings a guest cart is recorded
    on the session (``Session.merges``) with it.
    """
    base = customer or new_session(customer_id, customer_id)
    if guest is None:
        ids = _union(base.anonymous_ids, [anonymous_id])[-limits.anonymous_ids :]
        return Merged(base.model_copy(update={"anonymous_ids": ids}))
    guest_newer = _stamp(guest) > _stamp(base)
    cart, dropped = merge_carts(base.cart, guest.cart, guest_newer, limits)
    aside = base.set_aside
    if limits.merge_policy is MergePolicy.KEEP_SEPARATE and base.cart and dropped:
        # Kept apart, not lost: the newest guest lines first, bounded like a cart.
        taken = {line.sku for line in dropped}
        aside = [*dropped, *(ln for ln in base.set_aside if ln.sku not in taken)]
        aside, dropped = aside[: limits.max_cart_lines], aside[limits.max_cart_lines :]
    newest = guest if guest_newer else base
    viewed = sorted(
        {
            v.sku: v
            for v in sorted(
                [*base.recently_viewed, *guest.recently_viewed], key=lambda v: v.viewed_at
            )
        }.values(),
        key=lambda v: v.viewed_at,
        reverse=True,
    )
    merged = with_cart(base, cart).model_copy(
        update={
            "customer_id": customer_id,
            "cart_path": _kept_path(cart, base, guest),
            "set_aside": aside,
            "first_touch_at": min(
                (t for t in (base.first_touch_at, guest.first_touch_at) if t is not None),
                default=None,
            ),
            "anonymous_ids": _union(base.anonymous_ids, guest.anonymous_ids, [anonymous_id])[
                -limits.anonymous_ids :
            ],
            "recently_viewed": viewed[: limits.recently_viewed],
            "recent_searches": _union(base.recent_searches, guest.recent_searches)[
                : limits.recent_searches
            ],
            "checkout": base.checkout if base.checkout.status != "none" else guest.checkout,
            "orders": _union(base.orders, guest.orders)[: limits.recent_orders],
            "channels": _union(base.channels, guest.channels),
            "last_channel": newest.last_channel,
            "last_device_id": newest.last_device_id,
            "last_store_id": newest.last_store_id,
            "merges": _recorded(base, guest, cart, anonymous_id, limits, at),
            "version": max(base.version, guest.version),
            "updated_at": max(_stamp(base), _stamp(guest))
            if (base.updated_at or guest.updated_at)
            else None,
            "recent_event_ids": remembered(
                _union(base.recent_event_ids, guest.recent_event_ids), limits
            ),
        }
    )
    return Merged(merged, tuple(dropped))


def merge_carts(
    mine: list[CartLine], theirs: list[CartLine], theirs_newer: bool, limits: Limits
) -> tuple[list[CartLine], list[CartLine]]:
    """The customer's cart (``mine``) merged with the guest's under ``limits.merge_policy``:
    (the cart, the guest or customer lines it could not keep)."""
    if not mine or not theirs:
        return list(mine or theirs), []
    if limits.merge_policy in (MergePolicy.KEEP_CUSTOMER, MergePolicy.KEEP_SEPARATE):
        return list(mine), list(theirs)
    # Two currencies cannot share a cart: the newer side wins, whatever the policy.
    if limits.merge_policy is MergePolicy.KEEP_NEWEST or mine[0].currency != theirs[0].currency:
        return (list(theirs), list(mine)) if theirs_newer else (list(mine), list(theirs))
    return _combine(mine, theirs, limits)


def _combine(
    mine: list[CartLine], theirs: list[CartLine], limits: Limits
) -> tuple[list[CartLine], list[CartLine]]:
    cart = list(mine)
    dropped: list[CartLine] = []
    index = {line.sku: i for i, line in enumerate(cart)}
    for line in theirs:
        i = index.get(line.sku)
        if i is None:
            if len(cart) >= limits.max_cart_lines:
                dropped.append(line)
                continue
            index[line.sku] = len(cart)
            cart.append(line)
            continue
        other = cart[i]
        newer, older = (line, other) if line.updated_at > other.updated_at else (other, line)
        if limits.merge_policy is MergePolicy.HIGHER_QUANTITY:
            quantity = max(line.quantity, other.quantity)
        else:
            quantity = min(MAX_LINE_QUANTITY, line.quantity + other.quantity)
        # The sku had two prices on two channels: the newer wins, flagged.
        merged = repriced(older, newer.unit_price, newer.updated_at)
        cart[i] = newer.model_copy(
            update={
                "quantity": quantity,
                "added_by": _first_added(line, other),
                "price_changed_from": merged.price_changed_from or newer.price_changed_from,
                "price_changed_at": merged.price_changed_at or newer.price_changed_at,
            }
        )
    return cart, dropped


def _kept_path(cart: list[CartLine], base: Session, guest: Session) -> list[Channel]:
    """The merged cart's journey: the journeys of the sides whose lines it kept, customer first."""
    kept = {line.sku for line in cart}
    return _union(*(s.cart_path for s in (base, guest) if any(ln.sku in kept for ln in s.cart)))


def _first_added(a: CartLine, b: CartLine) -> Touch | None:
    """The provenance of whichever line was added first (a merged line keeps it)."""
    touches = [t for t in (a.added_by, b.added_by) if t is not None]
    return min(touches, key=lambda t: t.at) if touches else None


def _recorded(
    base: Session,
    guest: Session,
    cart: list[CartLine],
    anonymous_id: str,
    limits: Limits,
    at: datetime | None,
) -> list[MergeRecord]:
    """The customer's merge records, with this merge first if it brought a guest cart."""
    if not guest.cart or at is None:
        return base.merges
    kept = {line.sku: line.quantity for line in cart}
    mine = {line.sku: line.quantity for line in base.cart}
    theirs = {line.sku: line.quantity for line in guest.cart}
    lines = [
        MergedLine(
            sku=sku,
            guest_quantity=theirs.get(sku, 0),
            customer_quantity=mine.get(sku, 0),
            quantity=kept.get(sku, 0),
        )
        for sku in dict.fromkeys([*mine, *theirs])
    ]
    record = MergeRecord(
        at=at, anonymous_id=anonymous_id, policy=limits.merge_policy.value, lines=lines
    )
    return [record, *base.merges][: limits.merges]


def _stamp(session: Session) -> datetime:
    return session.updated_at or _EPOCH


def _union(*lists: list[T]) -> list[T]:
    seen: dict[T, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)
