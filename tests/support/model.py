"""An independent model of carts: what a session's cart must be, written without ``streams``.

The fault and end-to-end oracles used to be the system's own planner, so a
fold bug would be mirrored on both sides. This model knows the contract's
cart rules from the documentation alone (docs/wire-contract.md) and shares
no code with the fold: a test that claims "the cart is right" compares with
it; a test that claims "equal to a replay" keeps the planner-based oracle.

It covers what the fault workloads send: adds (quantities add up, at most 999
a line), quantity changes (0 removes), removals, clears, a guest's sign-in
(``combine``: the guest's lines join the customer's, quantities added) and a
completed checkout (the cart empties). Every applied event counts once in
``applied`` and raises ``version`` by one; a sign-in that merges a guest is a
change of its own and raises it once more, from the larger of the two
sessions' versions (versions under a key never go backwards, and the guest's
followers move to the customer's key). An event id seen before is a duplicate
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


W = TypeVar("W", bound=_Versioned)

MAX_LINE_QUANTITY = 999


@dataclass
class Cart:
    """One customer's (or guest's) cart as the contract defines it."""

    lines: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    # The session's version: ``applied`` until a sign-in merged a guest into it.
    version: int = 0
    merged: bool = False


@dataclass
class Model:
    """Carts by session key, folded event by event in publish order."""

    carts: dict[str, Cart] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    merged_into: dict[str, str] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event dict as the wire carries it."""
        if event["event_id"] in self.seen:
            return
        self.seen.add(event["event_id"])
        key = event.get("customer_id") or event["anonymous_id"]
        key = self.merged_into.get(key, key)
        cart = self.carts.setdefault(key, Cart())
        kind, p = event["type"], event.get("payload", {})
        if kind == "cart.item_added":
            quantity = cart.lines.get(p["sku"], 0) + p["quantity"]
            if quantity > MAX_LINE_QUANTITY:
                return  # rejected: dead-lettered, not applied
            cart.lines[p["sku"]] = quantity
        elif kind == "cart.quantity_set":
            if p["sku"] not in cart.lines and p["quantity"] > 0:
                return  # rejected: a line must be added with a price first
            cart.lines[p["sku"]] = p["quantity"]
            if p["quantity"] == 0:
                del cart.lines[p["sku"]]
        elif kind == "cart.item_removed":
            cart.lines.pop(p["sku"], None)
        elif kind in ("cart.cleared", "checkout.completed"):
            cart.lines.clear()
        elif (
            kind == "session.identified"
            and event.get("anonymous_id")
            and self.merged_into.get(event["anonymous_id"]) != key
        ):
            guest = self.carts.pop(event["anonymous_id"], Cart())
            for sku, quantity in guest.lines.items():
                cart.lines[sku] = min(cart.lines.get(sku, 0) + quantity, MAX_LINE_QUANTITY)
            self.merged_into[event["anonymous_id"]] = key
            cart.merged = True
            cart.version = max(cart.version, guest.version) + 1
        cart.applied += 1
        cart.version += 1


def model(events: Iterable[dict[str, Any]]) -> dict[str, Cart]:
    """Every session's cart after ``events``, in publish order."""
    m = Model()
    for e in events:
        m.apply(e)
    return m.carts


def cart_of(session: Any) -> dict[str, int]:
    """A stored session's cart as ``sku -> quantity`` (any object with ``cart`` lines)."""
    return {line.sku: line.quantity for line in session.cart}


def disagreements(expected: dict[str, Cart], stored: dict[str, Any]) -> list[str]:
    """Keys whose stored cart or version differs from the model's."""
    wrong = []
    for key, want in expected.items():
        have = stored.get(key)
        counted = have is not None and have.version == want.version
        if have is None or cart_of(have) != want.lines or not counted:
            wrong.append(key)
    return wrong


def count(
    expected: Mapping[str, W], stored: Mapping[str, Any], same: Callable[[str, W, Any], bool]
) -> tuple[int, int, int]:
    """(lost, doubled, wrong): per expected key, a stored version short of the expected
    one (or nothing stored), beyond it, or equal but not ``same``. The one counting rule
    of the fault suite's oracle (``fault_report.compare``) and of the model (``tally``)."""
    lost = doubled = wrong = 0
    for key, want in expected.items():
        have = stored.get(key)
        if have is None or have.version < want.version:
            lost += 1
        elif have.version > want.version:
            doubled += 1
        elif not same(key, want, have):
            wrong += 1
    return lost, doubled, wrong


def tally(expected: dict[str, Cart], stored: dict[str, Any]) -> tuple[int, int, int]:
    """(lost, doubled, wrong) by the model alone: a version short of the model's (or no
    session), beyond it, or equal with another cart."""
    return count(expected, stored, lambda _, want, have: cart_of(have) == want.lines)
