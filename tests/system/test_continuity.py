"""A customer's session follows them across channels, through the real broker, worker and Redis.

Proves: a cart started on mobile is resumable on the desktop and checked out
at a POS; a guest cart merges on login, also when the login races with guest
events from another device; an item added while a checkout completes stays in
the new cart; an event delivered twice applies once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.kafka.publish import Publisher
from streams.store.state import RedisState
from tests.support.clock import at as clock_at
from tests.support.events import added, event
from tests.support.stack import publish, wait_until, wait_version


def cart_of(session: object) -> dict[str, int]:
    return {line.sku: line.quantity for line in session.cart}  # type: ignore[attr-defined]


async def test_cart_moves_from_mobile_to_desktop_to_store(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c = ids("ana")
    await publish(
        publisher,
        [
            event(
                "cart.item_added",
                added("JKT-1", 1, "149.90"),
                customer=c,
                channel="mobile_app",
                device_id="phone-1",
                at=clock_at(0),
            ),
        ],
    )
    on_desktop = await wait_version(shared_worker, c, 1)
    assert cart_of(on_desktop) == {"JKT-1": 1}, "the desktop sees the cart the phone started"

    await publish(
        publisher,
        [
            event(
                "cart.item_added",
                added("SCK-2", 2, "14.95"),
                customer=c,
                channel="web",
                device_id="laptop-1",
                at=clock_at(5),
            ),
        ],
    )
    at_store = await wait_version(shared_worker, c, 2)
    assert cart_of(at_store) == {"JKT-1": 1, "SCK-2": 2}
    assert str(at_store.subtotal) == "179.80"
    assert at_store.item_count == 3

    await publish(
        publisher,
        [
            event(
                "checkout.started",
                customer=c,
                channel="pos",
                store_id="store-12",
                at=clock_at(60),
            ),
            event(
                "checkout.completed",
                {"order_id": f"ord-{c}"},
                customer=c,
                channel="pos",
                store_id="store-12",
                at=clock_at(62),
            ),
        ],
    )
    done = await wait_version(shared_worker, c, 4)
    assert done.cart == []
    assert done.checkout.status == "completed"
    assert done.checkout.order_id == f"ord-{c}"
    assert done.orders == [f"ord-{c}"]
    assert [ch.value for ch in done.channels] == ["mobile_app", "web", "pos"]
    assert done.last_store_id == "store-12"
    assert done.version == 4


async def test_guest_cart_merges_into_customer_on_login(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c, a = ids("bo"), ids("guest-bo")
    await publish(
        publisher,
        [
            event("cart.item_added", added("CAP-1", 1), customer=c, channel="web"),
            event("cart.item_added", added("CAP-1", 2), anon=a, channel="mobile_app"),
            event("cart.item_added", added("TEE-1", 1), anon=a, channel="mobile_app"),
        ],
    )
    await wait_version(shared_worker, c, 1)
    await wait_version(shared_worker, a, 2)

    await publish(publisher, [event("session.identified", customer=c, anon=a, channel="web")])
    # The merge takes the larger version (the guest's 2) plus one; the login event adds one.
    merged = await wait_version(shared_worker, c, 4)
    assert cart_of(merged) == {"CAP-1": 3, "TEE-1": 1}, "same sku combines quantities"
    assert a in merged.anonymous_ids
    assert await shared_worker.resolve(a) == c, "the guest id now points at the customer"

    await publish(
        publisher,
        [
            event(
                "cart.item_added", added("BTL-1", 1), anon=a, channel="kiosk", device_id="kiosk-9"
            ),
        ],
    )
    later = await wait_version(shared_worker, c, 5)
    assert cart_of(later) == {"CAP-1": 3, "TEE-1": 1, "BTL-1": 1}, "later guest events land here"
    assert await shared_worker.redis.exists(shared_worker.session_key(a)) == 0


async def test_login_racing_guest_events_from_another_device_loses_nothing(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c, a = ids("cy"), ids("guest-cy")
    await publish(publisher, [event("cart.item_added", added("A-1", 1), anon=a, channel="web")])
    await wait_version(shared_worker, a, 1)
    # The login (keyed by the customer) and a guest add from a tablet (keyed by the
    # guest) go to different partitions: the worker may see them in either order.
    await asyncio.gather(
        publish(publisher, [event("session.identified", customer=c, anon=a, channel="web")]),
        publish(
            publisher,
            [
                event(
                    "cart.item_added",
                    added("B-2", 1),
                    anon=a,
                    channel="mobile_app",
                    device_id="tablet-2",
                ),
            ],
        ),
    )

    async def both_in_customer_cart() -> bool:
        s = await shared_worker.get(c)
        return s is not None and cart_of(s) == {"A-1": 1, "B-2": 1}

    await wait_until(both_in_customer_cart)
    session = await shared_worker.get(c)
    assert session is not None
    assert session.version == 4, "guest add + merge + login event + the racing add"


async def test_item_added_while_checkout_completes_stays_in_new_cart(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c = ids("di")
    # Published together on purpose: the two topics may be seen in either order.
    await publish(
        publisher,
        [
            event("cart.item_added", added("A-1", 2), customer=c, at=clock_at(0)),
            event("checkout.started", customer=c, at=clock_at(1)),
        ],
    )
    await wait_version(shared_worker, c, 2)
    await asyncio.gather(
        publish(
            publisher,
            [
                event(
                    "cart.item_added",
                    added("B-1", 1),
                    customer=c,
                    channel="mobile_app",
                    at=clock_at(2),
                ),
            ],
        ),
        publish(
            publisher,
            [
                event("checkout.completed", {"order_id": "o-1"}, customer=c, at=clock_at(3)),
            ],
        ),
    )
    final = await wait_version(shared_worker, c, 4)
    assert cart_of(final) == {"B-1": 1}, "the paid items leave; the new one stays"
    assert final.checkout.status == "completed"


async def test_same_event_id_twice_applies_once(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    c = ids("ed")
    dup = event("cart.item_added", added("A-1", 1), customer=c, event_id=ids("evt-1"))
    await publish(publisher, [dup, dup])
    await publish(publisher, [event("browse.search", {"query": "boots"}, customer=c)])
    session = await wait_version(shared_worker, c, 2)
    assert cart_of(session) == {"A-1": 1}
    assert session.version == 2, "the duplicate neither changed the cart nor the version"
