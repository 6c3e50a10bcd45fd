"""Building contract-valid events for tests.

``event`` is for tests against running processes: a unique id and a time
relative to now (``tests/support/clock.py``), so no test is a date bomb.
``tests/support/pure.py``'s ``ev`` is the same builder made deterministic, for pure tests.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.clock import at as clock_at


def event(
    type_: str,
    payload: dict[str, Any] | None = None,
    *,
    customer: str | None = None,
    anon: str | None = None,
    channel: str = "web",
    at: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One contract-valid event dict."""
    ev: dict[str, Any] = {
        "event_id": event_id or uuid.uuid4().hex,
        "type": type_,
        "occurred_at": at or clock_at(),
        "channel": channel,
        "payload": payload or {},
        **extra,
    }
    if customer is not None:
        ev["customer_id"] = customer
    if anon is not None:
        ev["anonymous_id"] = anon
    return ev


def added(
    sku: str, quantity: int = 1, price: str = "10.00", currency: str = "EUR"
) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_price": price, "currency": currency}
