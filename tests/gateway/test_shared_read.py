"""The reads one key's streams share (``streams/gateway/shared_read.py``). No processes.

Proves: followers woken by the same announcement share one read; a follower
that wakes late reuses it unless something newer was announced; a read that
started before an announcement never serves a follower woken by it; a
follower leaving does not cancel a read others wait for, and the read of one
that left is done again; a failed read fails its joiners and is not cached;
of two reads ending out of order, the one started later is kept. A state a
notice carried is made into a result once and serves every follower woken by
that notice or earlier, never a later one, and never replaces a result kept
from a later count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from streams.gateway.shared_read import SharedRead


@dataclass
class _Key:
    """A key's announcement count and a Redis stand-in whose reads end when told to."""

    announced: int = 0
    reads: list[asyncio.Future[str]] = field(default_factory=list)
    value: str = "v0"

    def now(self) -> int:
        return self.announced

    async def read(self) -> str:
        # The state as of the read's start, returned when the test lets the read end.
        seen = self.value
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.reads.append(gate)
        await gate
        return seen


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_followers_woken_by_one_notice_share_one_read() -> None:
    key, shared = _Key(announced=1, value="v1"), SharedRead[str]()
    followers = [asyncio.create_task(shared.get(1, key.now, key.read)) for _ in range(10)]
    await _settle()
    assert len(key.reads) == 1
    key.reads[0].set_result("")
    assert await asyncio.gather(*followers) == ["v1"] * 10


async def test_a_late_follower_reuses_the_read_unless_something_newer_was_announced() -> None:
    key, shared = _Key(announced=1, value="v1"), SharedRead[str]()
    first = asyncio.create_task(shared.get(1, key.now, key.read))
    await _settle()
    key.reads[0].set_result("")
    assert await first == "v1"
    assert await shared.get(1, key.now, key.read) == "v1", "nothing newer: the cached read"
    assert len(key.reads) == 1
    key.announced, key.value = 2, "v2"
    late = asyncio.create_task(shared.get(2, key.now, key.read))
    await _settle()
    assert len(key.reads) == 2, "announcement 2 came after the cached read started"
    key.reads[1].set_result("")
    assert await late == "v2"


async def test_a_read_started_before_a_notice_does_not_serve_its_followers() -> None:
    key, shared = _Key(announced=1, value="v1"), SharedRead[str]()
    early = asyncio.create_task(shared.get(1, key.now, key.read))
    await _settle()
    # A commit lands and is announced while the first read is in flight.
    key.announced, key.value = 2, "v2"
    woken = asyncio.create_task(shared.get(2, key.now, key.read))
    await _settle()
    assert len(key.reads) == 2, "the follower woken by announcement 2 joined an older read"
    key.reads[1].set_result("")
    key.reads[0].set_result("")
    assert (await early, await woken) == ("v1", "v2")
    assert await shared.get(2, key.now, key.read) == "v2", "the later start is the one kept"


async def test_a_joiner_leaving_does_not_cancel_the_read() -> None:
    key, shared = _Key(announced=1, value="v1"), SharedRead[str]()
    leader = asyncio.create_task(shared.get(1, key.now, key.read))
    joiner = asyncio.create_task(shared.get(1, key.now, key.read))
    await _settle()
    joiner.cancel()
    await _settle()
    key.reads[0].set_result("")
    assert await leader == "v1"
    with pytest.raises(asyncio.CancelledError):
        await joiner


async def test_the_read_of_a_follower_that_left_is_done_again_by_its_joiners() -> None:
    key, shared = _Key(announced=1, value="v1"), SharedRead[str]()
    leader = asyncio.create_task(shared.get(1, key.now, key.read))
    joiners = [asyncio.create_task(shared.get(1, key.now, key.read)) for _ in range(3)]
    await _settle()
    leader.cancel()
    await _settle()
    assert len(key.reads) == 2, "one joiner read again, the others joined it"
    key.reads[1].set_result("")
    assert await asyncio.gather(*joiners) == ["v1"] * 3


async def test_a_failed_read_fails_its_joiners_and_is_not_kept() -> None:
    key, shared = _Key(announced=1), SharedRead[str]()
    followers = [asyncio.create_task(shared.get(1, key.now, key.read)) for _ in range(3)]
    await _settle()
    key.reads[0].set_exception(ConnectionError("down"))
    results = await asyncio.gather(*followers, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    again = asyncio.create_task(shared.get(1, key.now, key.read))
    await _settle()
    assert len(key.reads) == 2
    key.reads[1].set_result("")
    assert await again == "v0"


async def test_a_carried_state_is_made_once_and_serves_up_to_its_count() -> None:
    key, shared = _Key(announced=2, value="read"), SharedRead[str]()
    made: list[int] = []

    def make() -> str:
        made.append(2)
        return "carried-2"

    assert [shared.settle(2, make) for _ in range(3)] == ["carried-2"] * 3
    assert made == [2], "made once, whatever the number of followers"
    assert await shared.get(1, key.now, key.read) == "carried-2"
    assert await shared.get(2, key.now, key.read) == "carried-2"
    assert key.reads == []
    key.announced = 3  # something newer, not carried: a follower woken by it reads
    later = asyncio.create_task(shared.get(3, key.now, key.read))
    await _settle()
    assert len(key.reads) == 1
    key.reads[0].set_result("")
    assert await later == "read"


async def test_a_carried_state_never_replaces_a_result_of_a_later_count() -> None:
    key, shared = _Key(announced=5, value="read-5"), SharedRead[str]()
    first = asyncio.create_task(shared.get(5, key.now, key.read))
    await _settle()
    key.reads[0].set_result("")
    assert await first == "read-5"
    assert shared.settle(4, lambda: "carried-4") == "read-5"
    assert shared.settle(6, lambda: "carried-6") == "carried-6"
