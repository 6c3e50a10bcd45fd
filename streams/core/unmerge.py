"""Undoing a login merge before checkout (``session.unmerged``). Pure.

A merge that brought a guest cart is recorded on the customer's session
(``Session.merges``: per sku what the guest and the customer had and what
the cart kept). Undoing the newest such merge of a guest id, if no checkout
began since:

* each line gives back what the merge added to it (the kept quantity minus
  the customer's own); a line left with nothing goes;
* the guest gets its lines back, at its own quantities, with the line's
  current name, price and provenance, as a guest session of its own;
* the record is marked undone, so the same merge is never undone twice.

Under ``keep_separate`` the guest's lines were set aside, not merged: they
go back from ``set_aside``. Lines a policy dropped at the merge
(``keep_customer``, ``keep_newest``) are not restored: the record says what
they were, not their prices. Changes made after the merge stay with the
customer, on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.session import CartLine, MergeRecord, Session
from streams.core.fold import MergePolicy, Reason, Rejected, with_cart


@dataclass(frozen=True)
class Split:
    """The customer's session without the guest's lines, and the guest's lines."""

    customer: Session
    guest_lines: list[CartLine]


def split(session: Session, anonymous_id: str, at: datetime) -> Split | Rejected:
    """Undo the newest merge of ``anonymous_id`` into ``session`` (at ``at``)."""
    index = next(
        (
            i
            for i, r in enumerate(session.merges)
            if r.anonymous_id == anonymous_id and r.undone_at is None
        ),
        None,
    )
    if index is None:
        return Rejected(
            Reason.NOTHING_TO_UNMERGE, f"no merge of {anonymous_id} into this session to undo"
        )
    record = session.merges[index]
    if _checked_out_since(session, record):
        return Rejected(
            Reason.MERGE_CHECKED_OUT, "a checkout began after the merge: too late to undo it"
        )
    cart: list[CartLine] = []
    returned: list[CartLine] = []
    # A keep_separate merge left the cart alone and set the guest's lines aside.
    separate = record.policy == MergePolicy.KEEP_SEPARATE.value
    merged = {line.sku: line for line in record.lines}
    for line in session.cart:
        m = merged.get(line.sku)
        if m is None:
            cart.append(line)
            continue
        added = max(0, m.quantity - m.customer_quantity)
        if m.guest_quantity > 0 and m.quantity > 0 and not separate:
            returned.append(line.model_copy(update={"quantity": m.guest_quantity}))
        left = line.quantity - added
        if left > 0:
            cart.append(
                line if left == line.quantity else line.model_copy(update={"quantity": left})
            )
    merges = list(session.merges)
    merges[index] = record.model_copy(update={"undone_at": at})
    ids = [a for a in session.anonymous_ids if a != anonymous_id]
    # What a keep_separate merge set aside goes back to the guest.
    theirs = {m.sku for m in record.lines if m.guest_quantity > 0} if separate else set()
    returned.extend(line for line in session.set_aside if line.sku in theirs)
    aside = [line for line in session.set_aside if line.sku not in theirs]
    customer = with_cart(session, cart).model_copy(
        update={"merges": merges, "anonymous_ids": ids, "set_aside": aside}
    )
    return Split(customer, returned)


def _checked_out_since(session: Session, record: MergeRecord) -> bool:
    checkout = session.checkout
    began = checkout.started_at if checkout.status == "started" else checkout.completed_at
    return began is not None and began >= record.at
