"""POS handoff rules without I/O: codes, their input forms, the lockout, the claim event's fold."""

from __future__ import annotations

import itertools
import re

import orjson
import pytest

from schemas.topics import CHECKOUT_EVENTS, topic_for
from streams.core.decode import decode
from streams.core.fold import Applied, Rejected, fold, new_session
from streams.core.placement import partition_of
from streams.gateway.handoff import (
    ALPHABET,
    CODE_LENGTH,
    DRAWS_PER_PARTITION,
    ClaimLimit,
    NoCodeDrawn,
    client_address,
    code_in_partition,
    display,
    new_code,
    normalize_code,
    parse_networks,
    qr_payload,
)
from streams.store import keys
from streams.store.keys import Space
from tests.support.pure import add, ev, model

CROCKFORD = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")


def test_codes_are_eight_crockford_characters_forty_bits() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 32
    assert not set("ILOU") & set(ALPHABET)
    codes = {new_code() for _ in range(200)}
    assert all(CROCKFORD.match(c) for c in codes)
    assert len(codes) == 200, "drawn from secrets, not repeated"
    assert CODE_LENGTH * 5 == 40


def test_a_code_is_drawn_with_the_given_randomness() -> None:
    counter = itertools.count()
    assert new_code(lambda n: next(counter) % n) == "01234567"


@pytest.mark.parametrize("partitions", [1, 3, 8, 64])
def test_a_code_is_drawn_in_its_sessions_partition_and_shares_its_slot(partitions: int) -> None:
    space = Space("cont", partitions)
    codes = set()
    for n in range(300):
        session_key = f"c-{n}" if n % 2 else f"anon-{n:05d}"
        code = code_in_partition(space.partition(session_key), partitions)
        assert CROCKFORD.match(code)
        assert partition_of(code, partitions) == partition_of(session_key, partitions)
        tag = space.at(session_key)
        for name in (keys.handoff(space, code), keys.handoff_seen(space, code)):
            assert name.startswith(tag + ":"), (name, session_key)
            assert keys.family_of(name, space) is not None
        assert keys.handoff_by(space, session_key).startswith(tag + ":")
        codes.add(code)
    assert len(codes) == 300, "still drawn from secrets, not repeated"


def test_drawing_in_a_partition_is_bounded_and_says_why() -> None:
    partitions = 8
    stuck = new_code(lambda n: 0)  # a randomness that only ever says 0
    elsewhere = (partition_of(stuck, partitions) + 1) % partitions
    assert code_in_partition(partition_of(stuck, partitions), partitions, lambda n: 0) == stuck
    calls = 0

    def zero(n: int) -> int:
        nonlocal calls
        calls += 1
        return 0

    with pytest.raises(NoCodeDrawn, match=f"partition {elsewhere} of {partitions}"):
        code_in_partition(elsewhere, partitions, zero)
    assert calls == DRAWS_PER_PARTITION * partitions * CODE_LENGTH


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("7K3MQ9TX", "7K3MQ9TX"),
        ("7k3m-q9tx", "7K3MQ9TX"),
        (" 7K3M Q9TX ", "7K3MQ9TX"),
        ("continuity:handoff:7K3MQ9TX", "7K3MQ9TX"),
        ("ILO0ABCD", "1100ABCD"),
    ],
)
def test_typed_and_scanned_forms_normalize_to_the_code(typed: str, code: str) -> None:
    assert normalize_code(typed) == code


@pytest.mark.parametrize(
    "typed", ["", "7K3MQ9T", "7K3MQ9TXX", "7K3MQ9TU", "7K3M/Q9T", "*" * 8, "A" * 1000, "7K3MQ9T\n"]
)
def test_anything_else_is_no_code(typed: str) -> None:
    assert normalize_code(typed) is None


def test_display_and_qr_forms() -> None:
    assert display("7K3MQ9TX") == "7K3M-Q9TX"
    assert qr_payload("7K3MQ9TX") == "continuity:handoff:7K3MQ9TX"
    assert normalize_code(qr_payload("7K3MQ9TX")) == "7K3MQ9TX"
    assert normalize_code(display("7K3MQ9TX")) == "7K3MQ9TX"


def test_a_lockout_lasts_the_window_left() -> None:
    limit = ClaimLimit(max_failures=5, store_max_failures=20, window=300)
    assert limit.retry_after(100_000) == 100
    assert limit.retry_after(42_001) == 43
    assert limit.retry_after(1) == 1, "never Retry-After: 0"
    assert limit.retry_after(-1) == 300, "a counter without expiry counts as a full window"


PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1,2001:db8::/32")


@pytest.mark.parametrize(
    ("remote", "forwarded", "address"),
    [
        # A peer that is no trusted proxy is the client itself; what it forwards is ignored.
        ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),
        # A trusted proxy's header is read from the right, past trusted hops.
        ("10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["1.1.1.1, 203.0.113.9, 10.9.9.9"], "203.0.113.9"),
        ("192.0.2.1", ["1.1.1.1", "203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["2001:db8::1, 2001:0db9::5"], "2001:db9::5"),
        ("10.1.2.3", ["::ffff:203.0.113.9"], "203.0.113.9"),
        # What a client wrote on the left cannot pass a hop that is no address.
        ("10.1.2.3", ["203.0.113.9, garbage"], None),
        # Only trusted hops, or no header: no client address to count.
        ("10.1.2.3", ["10.0.0.7"], None),
        ("10.1.2.3", [], None),
        (None, ["203.0.113.9"], None),
    ],
)
def test_the_client_address_comes_from_trusted_proxies_only(
    remote: str | None, forwarded: list[str], address: str | None
) -> None:
    assert client_address(remote, forwarded, PROXIES) == address


def test_without_trusted_proxies_no_address_is_counted() -> None:
    assert client_address("198.51.100.4", [], []) is None
    assert client_address("10.1.2.3", ["203.0.113.9"], []) is None
    assert parse_networks("") == []
    with pytest.raises(ValueError, match=r"proxy\.example"):
        parse_networks("10.0.0.0/8, proxy.example")


def claimed(**extra: object) -> dict[str, object]:
    return ev(
        "checkout.handoff_claimed",
        {"terminal_id": "till-3"},
        customer="c-1",
        channel="pos",
        at="2026-11-24T10:05:00Z",
        event_id="claim-1",
        **extra,
    )


def test_the_claim_event_is_applied_and_records_the_store() -> None:
    session = new_session("c-1", "c-1")
    added = fold(session, model(ev("cart.item_added", add("A", 2), customer="c-1")))
    assert isinstance(added, Applied)
    outcome = fold(added.session, model(claimed(store_id="store-12")))
    assert isinstance(outcome, Applied)
    s = outcome.session
    assert (s.version, s.last_channel, s.last_store_id) == (2, "pos", "store-12")
    assert s.cart == added.session.cart, "the claim changes no line"
    assert s.channels == ["web", "pos"]
    assert topic_for("checkout.handoff_claimed") == CHECKOUT_EVENTS


@pytest.mark.parametrize(
    "broken",
    [
        claimed(),  # no store_id
        {**claimed(store_id="store-12"), "channel": "web"},
        {**claimed(store_id="store-12"), "payload": {"terminal_id": "no spaces"}},
    ],
)
def test_a_claim_needs_a_pos_channel_and_a_store(broken: dict[str, object]) -> None:
    outcome = decode(orjson.dumps(broken))
    assert isinstance(outcome, Rejected)
    assert outcome.reason.value == "invalid_event"
