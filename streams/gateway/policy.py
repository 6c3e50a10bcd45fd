"""Who may read which session and publish which event. Pure (no I/O).

Reads are judged on the session key an id *resolves* to (a merged guest's
id resolves to its customer), never on the id in the URL alone, so an alias
cannot be used to reach another customer's session. Events are judged on the
ids they carry, after they passed the wire contract.

=========  =====================================  ================================================
role       may read                               may publish
=========  =====================================  ================================================
customer   the session whose key is its ``sub``   events with ``customer_id == sub`` (carrying an
                                                  ``anonymous_id`` only when it is ``sub`` or the
                                                  token's ``anon``), or with no ``customer_id``
                                                  and ``anonymous_id == sub``; never channel
                                                  ``pos``, a ``store_id`` or an ``associate_id``,
                                                  never ``checkout.completed`` or
                                                  ``checkout.handoff_claimed``; nothing once its
                                                  ``sub`` (a guest) was merged into a customer
pos        any session                            events with ``channel == "pos"`` and
                                                  ``store_id`` equal to the token's ``store``,
                                                  never linking a guest to a customer, never
                                                  ``checkout.handoff_claimed`` (the claim route
                                                  publishes it, after the shopper's code)
service    any session                            any event
=========  =====================================  ================================================

Only ``service`` may publish ``session.unmerged`` (an operator's undo of a merge).

Who may assert what, field by field: a store (``store_id``), an associate
(``associate_id``) and the ``pos`` channel come from a till, a ``pos`` token
whose ``store`` is that store, or from the platform (``service``); a device
has no say in them. A completed order (``checkout.completed``) comes from the
order system (``service``) or, for an in-store order of its own store, from
the till that checked it out (``pos``): a till checks out resumed carts. A
customer may assert ``device_id`` and ``unit_price``; prices in a cart are
advisory (docs/security.md, Who may say what).

A session's journey (``GET /v1/sessions/{id}/journey``) is read under the
same rule as the session (``may_read``). The KPI report (``GET /v1/kpis``)
spans every customer, so only ``service`` tokens read it (``may_read_kpis``).

Why the ``anon`` rule: an event carrying both ids merges the guest session
into the customer's and points the guest id at the customer for good. If a
customer token could name any guest id, knowing someone's device id would be
enough to take over their guest cart; so linking a guest needs a token issued
for that sign-in (claim ``anon``), or a ``service`` token.

Why guest tokens stop writing at sign-in: the worker routes a merged guest's
events along its alias into the customer's session. A guest token (a customer
token whose ``sub`` is an ``anonymous_id``) is refused reading that session
(``sign_in_required``); its writes are refused the same way
(``may_write_as``), or a device left signed out could still clear, add to or
check out the customer's cart for the token's lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import (
    AnyEvent,
    Channel,
    CheckoutCompletedEvent,
    CheckoutHandoffClaimed,
    SessionUnmerged,
)
from streams.gateway.auth import Principal, Role

# The codes a ``Denied`` carries (re-exported: the rules name them here).
from streams.gateway.errors import FORBIDDEN as FORBIDDEN
from streams.gateway.errors import SIGN_IN_REQUIRED as SIGN_IN_REQUIRED


@dataclass(frozen=True)
class Denied:
    """Why a valid token may not do something. ``code`` is part of the interface."""

    code: str
    message: str


def may_read(principal: Principal, requested: str, key: str) -> Denied | None:
    """May ``principal`` read the session ``requested`` resolves to (``key``)?"""
    if principal.role is not Role.CUSTOMER:
        return None
    if key == principal.subject:
        return None
    if requested == principal.subject:
        # The guest this token was issued for has since signed in: the cart now
        # belongs to a customer account, which a guest token cannot read.
        return Denied(
            SIGN_IN_REQUIRED,
            "this guest session was merged into a customer account; sign in to read it",
        )
    return Denied(FORBIDDEN, "a customer token may read only its own session")


def may_write_as(principal: Principal, merged_into: str | None) -> Denied | None:
    """May ``principal`` still publish under its ``sub``, which Redis says is now an
    alias of ``merged_into`` (``None``: not merged)?"""
    if principal.role is not Role.CUSTOMER or merged_into is None:
        return None
    if merged_into == principal.subject:
        return None
    return Denied(
        SIGN_IN_REQUIRED,
        "this guest session was merged into a customer account; sign in to change it",
    )


def may_ingest(principal: Principal, event: AnyEvent) -> Denied | None:
    """May ``principal`` publish ``event`` (already valid under the wire contract)?"""
    if principal.role is Role.SERVICE:
        return None
    if isinstance(event, SessionUnmerged):
        return Denied(FORBIDDEN, "only a service token may undo a merge (session.unmerged)")
    if isinstance(event, CheckoutHandoffClaimed):
        # A till posting the claim itself would take a session over without the
        # shopper's code; POST /v1/handoffs/{code}/claim publishes it.
        return Denied(
            FORBIDDEN,
            "checkout.handoff_claimed is published by the claim route "
            "(POST /v1/handoffs/{code}/claim), never posted",
        )
    if principal.role is Role.POS:
        if event.channel is not Channel.POS:
            return Denied(FORBIDDEN, 'a pos token may publish only events with channel "pos"')
        if event.store_id != principal.store:
            return Denied(FORBIDDEN, "a pos token may publish only events of its own store_id")
        if _links(event):
            # Any id typed at a till would otherwise pull that session into another.
            return Denied(
                FORBIDDEN,
                "a pos token may not link a guest to a customer; use the customer's "
                "sign-in or a handoff code",
            )
        return None
    return _customer_may_ingest(principal, event)


def _links(event: AnyEvent) -> bool:
    return (
        event.customer_id is not None
        and event.anonymous_id is not None
        and event.anonymous_id != event.customer_id
    )


def _customer_may_ingest(principal: Principal, event: AnyEvent) -> Denied | None:
    asserted = _store_fields(event)
    if asserted is not None:
        return Denied(
            FORBIDDEN,
            f"a customer token may not assert {asserted}: only a store's pos token "
            "(or a service token) does",
        )
    if isinstance(event, CheckoutCompletedEvent):
        return Denied(
            FORBIDDEN,
            "a customer token may not complete a checkout: the order system (a service "
            "token) or the store's till (a pos token) does",
        )
    sub = principal.subject
    if event.customer_id is None:
        if event.anonymous_id == sub:
            return None
        return Denied(FORBIDDEN, "a customer token may publish only events with its own id")
    if event.customer_id != sub:
        return Denied(FORBIDDEN, "a customer token may publish only events with its own id")
    if event.anonymous_id in (None, sub, principal.anon):
        return None
    return Denied(
        FORBIDDEN,
        "an event carrying an anonymous_id links that guest to the customer; "
        "the token must name the guest (claim anon)",
    )


def _store_fields(event: AnyEvent) -> str | None:
    """The first store-only field ``event`` sets, named as the error says it."""
    if event.channel is Channel.POS:
        return 'channel "pos"'
    if event.store_id is not None:
        return "a store_id"
    if event.associate_id is not None:
        return "an associate_id"
    return None


def may_erase(principal: Principal) -> Denied | None:
    """May ``principal`` erase a customer? Only ``service``: an erasure is for good,
    so the request is verified by the retailer's back office, not by a device."""
    if principal.role is Role.SERVICE:
        return None
    return Denied(FORBIDDEN, "only a service token may erase a customer")


def may_read_kpis(principal: Principal) -> Denied | None:
    """May ``principal`` read the KPI report? Only ``service``: it covers every customer
    and store, which is the back office's view, not a device's or a till's."""
    if principal.role is Role.SERVICE:
        return None
    return Denied(FORBIDDEN, "only a service token may read the KPIs")
