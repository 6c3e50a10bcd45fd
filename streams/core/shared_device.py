"""The shared-device guard: a device many customers sign in on is nobody's. Pure.

A store iPad or a kiosk keeps one ``anonymous_id`` while shopper after shopper
signs in on it. Without a guard, the next shopper's sign-in pulls the
previous one's guest cart into their account, and anonymous activity after a
sign-in follows the alias into the last customer's session.

Every sign-in records (device, customer, time) (``P:dv:{<anonymous_id>}``,
written by the commit). A device linked to more than
``Limits.shared_device_customers`` distinct customers within
``Limits.shared_device_window`` seconds of the event's ``occurred_at``, before
or after it (the new customer included), is shared:

* a sign-in on it never pulls its guest session into the customer (the guest
  session stays the device's);
* anonymous events on it fold into the device's own guest session, not into
  whoever signed in last.

Events that name a customer are never affected. Times are event times, so a
replay decides as the live run did; they are bounded by their records' Kafka
timestamps first (``streams/core/event_time.py``), so a sign-in dated years
away cannot fall outside every window. An erasure keeps its customer's sign-ins
under an anonymous name (:func:`erased`): the device stays as shared as it
was, so a rebuild routes its guest activity as the live run did (and an event
the erasure deleted from the device's session does not come back elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping

# customer -> newest sign-in on the device, Unix ms
Links = Mapping[str, int]

# Sign-ins kept per device: enough for any window a deployment would choose.
KEPT = 50


def erased(erased_at_ms: int) -> str:
    """The name an erased customer's sign-ins keep (``erase.lua`` writes the same)."""
    return f"erased:{erased_at_ms}"


def is_shared(
    links: Links, at_ms: int, customers: int, window_s: int, signing_in: str | None = None
) -> bool:
    """Whether a device with ``links`` is shared at ``at_ms`` (``signing_in`` counted too).

    Sign-ins within the window on either side of ``at_ms`` count: a sign-in recorded
    with a later time than the event's (an event back-dated, or late from another
    topic) is a customer of the device all the same. Counting only earlier ones let
    a sign-in back-dated before the device's other sign-ins take its guest cart.
    """
    window_ms = window_s * 1000
    recent = {c for c, t in links.items() if abs(t - at_ms) <= window_ms}
    if signing_in is not None:
        recent.add(signing_in)
    return len(recent) > customers


def linked(links: Links, customer: str, at_ms: int) -> dict[str, int]:
    """``links`` after ``customer`` signed in at ``at_ms``, the newest ``KEPT`` kept."""
    out = dict(links)
    out[customer] = max(at_ms, out.get(customer, at_ms))
    if len(out) > KEPT:
        out = dict(sorted(out.items(), key=lambda kv: kv[1])[-KEPT:])
    return out
