"""Event times far from the log's are bounded, through the real broker and worker.

A producer claiming an ``occurred_at`` a year ahead, and one two years back, both
reach the worker through the embedded broker: the session, its cart line and its
journey carry the time the worker's defaults allow (the record's Kafka timestamp
plus ``CONTINUITY_EVENT_TIME_MAX_AHEAD``, or minus ``..._MAX_BEHIND``), never the
claim; the pure rules are in ``tests/core/test_event_time.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from streams.kafka.publish import Publisher
from streams.settings import Settings
from streams.store.state import RedisState
from tests.support.events import added, event
from tests.support.stack import publish, wait_version

pytestmark = pytest.mark.clock


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_an_event_dated_far_from_its_record_is_folded_at_the_bound(
    shared_worker: RedisState, publisher: Publisher, ids: Callable[[str], str]
) -> None:
    defaults = Settings()
    ahead = timedelta(seconds=defaults.event_time_max_ahead)
    behind = timedelta(seconds=defaults.event_time_max_behind)
    c = ids("skewed")
    before = datetime.now(UTC) - timedelta(seconds=1)  # the broker's ms vs our clock
    future = event(
        "cart.item_added", added("F-1"), customer=c, at=_iso(before + timedelta(days=365))
    )
    await publish(publisher, [future])
    session = await wait_version(shared_worker, c, 1)
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert session.updated_at is not None
    assert before + ahead <= session.updated_at <= after + ahead, "the record's time + the skew"
    assert session.cart[0].updated_at == session.updated_at

    past = event("cart.item_added", added("P-1"), customer=c, at=_iso(before - timedelta(days=730)))
    await publish(publisher, [past])
    session = await wait_version(shared_worker, c, 2)
    after = datetime.now(UTC) + timedelta(seconds=1)
    line = next(ln for ln in session.cart if ln.sku == "P-1")
    assert before - behind <= line.updated_at <= after - behind, "the record's time - the age"
