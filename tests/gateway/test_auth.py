"""Gateway tokens (``streams/gateway/auth.py``), pure.

Proves: every role's token round-trips to the same principal; an expired,
forged, re-signed, unsigned, wrongly scoped or malformed token is refused
with ``invalid_token`` or ``token_expired`` and never with another
exception; claims that could smuggle a key pattern are refused; weak
secrets are refused before anything is signed.
"""

from __future__ import annotations

import base64
import time

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.gateway.auth import (
    AUDIENCE,
    LEEWAY_SECONDS,
    Principal,
    Role,
    TokenError,
    bearer_token,
    check_secret,
    issue,
    verify,
)

SECRET = "unit-test-secret-0123456789abcdefghij"
OTHER_SECRET = "another-secret-0123456789abcdefghijkl"
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}\Z")


def signed(claims: dict[str, object], algorithm: str = "HS256", secret: str = SECRET) -> str:
    base: dict[str, object] = {"aud": AUDIENCE, "exp": int(time.time()) + 60}
    return jwt.encode({**base, **claims}, secret, algorithm=algorithm)


def refused(token: str) -> str:
    with pytest.raises(TokenError) as info:
        verify(SECRET, token)
    return info.value.code


@pytest.mark.parametrize(
    ("role", "claims", "expected"),
    [
        (Role.CUSTOMER, {"subject": "c-1"}, Principal(Role.CUSTOMER, "c-1")),
        (
            Role.CUSTOMER,
            {"subject": "c-1", "anon": "anon-7"},
            Principal(Role.CUSTOMER, "c-1", anon="anon-7"),
        ),
        (Role.CUSTOMER, {"subject": "anon-9f"}, Principal(Role.CUSTOMER, "anon-9f")),
        (Role.POS, {"store": "s-1"}, Principal(Role.POS, store="s-1")),
        (Role.POS, {"store": "s-1", "subject": "till-4"}, Principal(Role.POS, "till-4", "s-1")),
        (Role.SERVICE, {}, Principal(Role.SERVICE)),
        (Role.SERVICE, {"subject": "crm"}, Principal(Role.SERVICE, "crm")),
    ],
)
def test_tokens_round_trip(role: Role, claims: dict[str, str], expected: Principal) -> None:
    assert verify(SECRET, issue(SECRET, role, **claims)) == expected  # type: ignore[arg-type]


@given(ids, ids)
def test_any_contract_id_round_trips(customer: str, anon: str) -> None:
    token = issue(SECRET, Role.CUSTOMER, subject=customer, anon=anon)
    assert verify(SECRET, token) == Principal(Role.CUSTOMER, customer, anon=anon)


def test_expired_tokens_are_refused_as_expired() -> None:
    old = issue(SECRET, Role.SERVICE, ttl=60, now=time.time() - 3600)
    assert refused(old) == "token_expired"
    just_expired = issue(SECRET, Role.SERVICE, ttl=0, now=time.time() - LEEWAY_SECONDS - 5)
    assert refused(just_expired) == "token_expired"
    within_leeway = issue(SECRET, Role.SERVICE, ttl=0, now=time.time() - 1)
    assert verify(SECRET, within_leeway).role is Role.SERVICE, "small clock skew is tolerated"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert refused(issue(OTHER_SECRET, Role.SERVICE)) == "invalid_token"


def test_algorithm_tricks_are_refused() -> None:
    # The same secret, another HMAC: still refused (only HS256 is accepted).
    long_secret = SECRET * 2
    hs512 = signed({"role": "service"}, algorithm="HS512", secret=long_secret)
    with pytest.raises(TokenError):
        verify(long_secret, hs512)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = (
        base64.urlsafe_b64encode(
            orjson.dumps({"role": "service", "aud": AUDIENCE, "exp": int(time.time()) + 60})
        )
        .rstrip(b"=")
        .decode()
    )
    assert refused(f"{header}.{body}.") == "invalid_token", "alg none is never accepted"


_DROP = object()


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "service", "exp": _DROP},  # no expiry
        {"role": "service", "aud": _DROP},  # no audience
        {"role": "service", "aud": "someone-else"},
        {"role": _DROP},
        {"role": "admin"},
        {"role": "customer"},  # customer without sub
        {"role": "pos"},  # pos without store
        {"role": "service", "anon": "a-1"},  # anon is for customers only
        {"role": "customer", "sub": "c-1}*"},  # a key pattern in an id
        {"role": "customer", "sub": "../c-2"},
        {"role": "customer", "sub": "c 1"},
        {"role": "customer", "sub": "x" * 129},
        {"role": "pos", "store": "s/1"},
        {"role": "customer", "sub": 12},
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, object]) -> None:
    payload: dict[str, object] = {"aud": AUDIENCE, "exp": int(time.time()) + 60, **claims}
    token = jwt.encode({k: v for k, v in payload.items() if v is not _DROP}, SECRET)
    assert refused(token) == "invalid_token"


@given(st.text(max_size=300))
def test_garbage_never_verifies_and_never_raises_anything_else(garbage: str) -> None:
    with pytest.raises(TokenError):
        verify(SECRET, garbage)


def test_issue_refuses_out_of_scope_claims() -> None:
    with pytest.raises(ValueError, match="sub"):
        issue(SECRET, Role.CUSTOMER)
    with pytest.raises(ValueError, match="store"):
        issue(SECRET, Role.POS)
    with pytest.raises(ValueError, match="anon"):
        issue(SECRET, Role.POS, store="s-1", anon="a-1")
    with pytest.raises(ValueError, match="String should match pattern"):
        issue(SECRET, Role.CUSTOMER, subject="bad id")


def test_weak_or_missing_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="not set"):
        check_secret(None)
    with pytest.raises(ValueError, match="not set"):
        check_secret("")
    with pytest.raises(ValueError, match="at least 32"):
        check_secret("short")
    with pytest.raises(ValueError, match="at least 32"):
        issue("short", Role.SERVICE)
    assert check_secret(SECRET) == SECRET


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_header_parsing(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected
