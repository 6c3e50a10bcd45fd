"""Gateway tokens (``streams/gateway/auth.py``), pure.

Proves: every role's token round-trips to the same principal; an expired,
forged, re-signed, unsigned, wrongly scoped or malformed token is refused
with ``invalid_token`` or ``token_expired`` and never with another
exception; claims that could smuggle a key pattern are refused; weak
secrets, example keys shipped in the repository and predictable keys are
refused before anything is signed; several keys are accepted by ``kid``;
a token living longer than its role's cap, or without ``iat``, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import subprocess
import time
from pathlib import Path

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.gateway.auth import (
    AUDIENCE,
    DEFAULT_MAX_LIFETIMES,
    KNOWN_EXAMPLE_KEYS,
    LEEWAY_SECONDS,
    MIN_SECRET_BITS,
    MIN_SECRET_LENGTH,
    Keyring,
    Principal,
    Role,
    TokenError,
    bearer_token,
    check_secret,
    estimated_bits,
    issue,
    keyring,
    verify,
)
from streams.settings import Settings

# Drawn per run: a key written in the repository is public (and refused).
SECRET = secrets.token_urlsafe(32)
OTHER_SECRET = secrets.token_urlsafe(32)
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}\Z")


def signed(claims: dict[str, object], algorithm: str = "HS256", secret: str = SECRET) -> str:
    now = int(time.time())
    base: dict[str, object] = {"aud": AUDIENCE, "iat": now, "exp": now + 60}
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
        {"role": "service", "iat": _DROP},  # no issue time: its lifetime is unknown
        {"role": "service", "iat": int(time.time()) + 3600},  # issued in the future
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
    now = int(time.time())
    payload: dict[str, object] = {"aud": AUDIENCE, "iat": now, "exp": now + 60, **claims}
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


REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SECRET_FILE = REPO / "deploy" / "kubernetes" / "gateway-secret.example.yaml"


def test_the_example_key_of_the_deploy_files_is_refused() -> None:
    example = re.search(r'auth-secret:\s*"([^"]+)"', EXAMPLE_SECRET_FILE.read_text())
    assert example is not None
    # Long enough for the length check: only the example rule stops it.
    assert len(example[1]) >= MIN_SECRET_LENGTH
    with pytest.raises(ValueError, match="example key shipped with Continuity") as info:
        check_secret(example[1])
    assert example[1] not in str(info.value), "the key itself is never printed"
    with pytest.raises(ValueError, match="example key"):
        issue(example[1], Role.SERVICE)
    for known in KNOWN_EXAMPLE_KEYS:
        with pytest.raises(ValueError, match="example key"):
            check_secret(known)
        with pytest.raises(ValueError, match="example key"):
            check_secret(f"  {known.upper()} ")  # spelled differently, the same key


# A literal value given to something named like a key or a secret (`auth-secret: "..."`,
# `SECRET = "..."`), or to the key settings in a shell or an env file.
_KEY_LITERAL = re.compile(
    r"""(?ix) (?:secret|key)[\w-]* ["']? \s* [:=] \s* (["']) ([^"'\s$`{}()]{16,}) \1
        | AUTH_(?:SECRET|KEYS) = ([^"'\s$`{}()]{16,})"""
)
_SCANNED = ("*.py", "*.md", "*.yml", "*.yaml", "*.sh", "*.toml", "*.json", "*.html", "*.js")


def test_every_key_written_in_the_repository_is_refused() -> None:
    """Whatever value the repository offers as a token key (deploy examples, docs,
    tests) is public: it is refused as an example, as too short or as predictable."""
    found: set[str] = set()
    # The repository's own files (what git tracks), not what an install put beside them
    # (node_modules, .venv): those are other projects' strings.
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--", *_SCANNED],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        path = REPO / name.decode()
        if not path.is_file():
            continue
        for match in _KEY_LITERAL.finditer(path.read_text(errors="replace")):
            found.add(match[2] or match[3])
    assert "CHANGE-ME-to-32-or-more-random-characters" in found, "the scan reads the deploy files"
    usable = []
    for value in found:
        try:
            check_secret(value)
        except ValueError:
            continue
        usable.append(value)
    assert usable == [], "keys written in the repository must be refused (KNOWN_EXAMPLE_KEYS)"


@pytest.mark.parametrize(
    "weak",
    [
        "x" * 40,
        "token-key-" + "k" * 40,
        "Password1" * 4,
        "0123456789" * 4,
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "12345678901234567890123456789012",
        "aAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaAaA",
    ],
)
def test_predictable_keys_are_refused(weak: str) -> None:
    assert len(weak) >= MIN_SECRET_LENGTH
    with pytest.raises(ValueError, match="too predictable") as info:
        check_secret(weak)
    assert weak not in str(info.value)


def test_generated_keys_pass() -> None:
    for _ in range(200):
        for key in (secrets.token_hex(32), secrets.token_urlsafe(32), secrets.token_hex(16)):
            assert check_secret(key) == key
            assert estimated_bits(key) >= MIN_SECRET_BITS


NEXT = secrets.token_urlsafe(32)
RING = Keyring(SECRET, {"2026-12": NEXT})


def test_keys_rotate_by_kid() -> None:
    # A token without kid is checked with the unnamed key, one with a kid with that key.
    assert verify(RING, issue(SECRET, Role.SERVICE)).role is Role.SERVICE
    assert verify(RING, issue(NEXT, Role.SERVICE, kid="2026-12")).role is Role.SERVICE
    header = jwt.get_unverified_header(issue(NEXT, Role.SERVICE, kid="2026-12"))
    assert header["kid"] == "2026-12"
    cases = [
        issue(SECRET, Role.SERVICE, kid="2026-12"),  # named, signed with another key
        issue(NEXT, Role.SERVICE),  # the new key, but no kid: checked with the unnamed one
        issue(NEXT, Role.SERVICE, kid="2027-01"),  # a key id nobody configured
    ]
    for token in cases:
        with pytest.raises(TokenError) as info:
            verify(RING, token)
        assert info.value.code == "invalid_token"
    only_named = Keyring(None, {"2026-12": NEXT})
    with pytest.raises(TokenError, match="names no key"):
        verify(only_named, issue(SECRET, Role.SERVICE))
    assert verify(only_named, issue(NEXT, Role.POS, store="s-1", kid="2026-12")).store == "s-1"
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": 7}))
    now = int(time.time())
    body = _b64(orjson.dumps({"role": "service", "aud": AUDIENCE, "iat": now, "exp": now + 60}))
    mac = hmac.new(SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError):
        verify(RING, f"{header}.{body}.{_b64(mac)}")  # a kid that is not a string


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_the_keyring_comes_from_the_settings_and_every_key_is_checked() -> None:
    ring = keyring(SECRET, f"2026-12={NEXT}, 2027-01={OTHER_SECRET}")
    assert ring.default == SECRET
    assert dict(ring.named) == {"2026-12": NEXT, "2027-01": OTHER_SECRET}
    assert dict(keyring(None, f"a={NEXT}\nb={OTHER_SECRET}\n").named) == {
        "a": NEXT,
        "b": OTHER_SECRET,
    }
    with pytest.raises(ValueError, match="not set"):
        keyring(None, " ")
    example = next(iter(KNOWN_EXAMPLE_KEYS))
    with pytest.raises(ValueError, match="key '2026-12' is an example") as info:
        keyring(SECRET, f"2026-12={example}")
    assert example not in str(info.value)
    with pytest.raises(ValueError, match="key 'old' is too predictable"):
        keyring(SECRET, "old=" + "ab" * 20)
    for bad in (f"{NEXT}", f"=k{NEXT}", f"a b={NEXT}", f"a/b={NEXT}"):
        with pytest.raises(ValueError, match="kid=key") as info:
            keyring(SECRET, bad)
        assert NEXT not in str(info.value)
    with pytest.raises(ValueError, match="twice"):
        keyring(SECRET, f"a={NEXT},a={OTHER_SECRET}")


def test_a_token_living_longer_than_its_roles_cap_is_refused() -> None:
    for role, claims in (
        (Role.CUSTOMER, {"subject": "c-1"}),
        (Role.POS, {"store": "s-1"}),
        (Role.SERVICE, {}),
    ):
        cap = DEFAULT_MAX_LIFETIMES[role.value]
        at_cap = issue(SECRET, role, ttl=cap, **claims)  # type: ignore[arg-type]
        assert verify(SECRET, at_cap).role is role
        over = issue(SECRET, role, ttl=cap + 1, **claims)  # type: ignore[arg-type]
        with pytest.raises(TokenError, match=f"over the cap of {cap} s") as info:
            verify(SECRET, over)
        assert info.value.code == "invalid_token"
    caps = {"customer": 60, "pos": 60, "service": 600}
    with pytest.raises(TokenError, match="cap of 60 s"):
        verify(SECRET, issue(SECRET, Role.CUSTOMER, subject="c-1", ttl=61), caps)
    assert verify(SECRET, issue(SECRET, Role.SERVICE, ttl=600), caps).role is Role.SERVICE
    # A far-off expiry with an issue time just before it is not a short token: it is
    # refused as issued in the future.
    far = time.time() + 10 * 365 * 86400
    with pytest.raises(TokenError):
        verify(SECRET, issue(SECRET, Role.SERVICE, ttl=60, now=far))


def test_the_settings_caps_default_to_the_documented_ones() -> None:
    assert Settings().token_max_lifetimes() == dict(DEFAULT_MAX_LIFETIMES)
