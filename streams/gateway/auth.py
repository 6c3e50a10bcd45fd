"""Bearer tokens: HS256 JWTs naming a role and what it acts for. Pure (no I/O).

Claims (docs/gateway-api.md, Authentication):

* ``role``: ``customer``, ``pos`` or ``service``;
* ``sub``: for ``customer`` the customer key it acts for (a ``customer_id``,
  or an ``anonymous_id`` for a guest), required; optional for the others;
* ``store``: for ``pos`` the store id of the terminal, required;
* ``anon``: optional, ``customer`` only: the guest id this sign-in adopts
  (events carrying both ids merge that guest's session into the customer's);
* ``aud`` = ``continuity``, ``exp`` and ``iat`` (all three required).

Verification accepts only HS256 (never ``none`` or another algorithm named
by the token), requires ``exp``, ``iat``, ``aud`` and ``role``, refuses a
token whose lifetime (``exp - iat``) is over its role's cap, and checks every
id against the wire contract's id pattern, so a token can never smuggle a key
pattern into Redis.

Keys (docs/security.md, Keys and tokens): a token without a ``kid`` header is
checked with the unnamed key (``CONTINUITY_AUTH_SECRET``), a token with one
with the key of that name (``CONTINUITY_AUTH_KEYS``), so keys rotate without
a moment when valid tokens are refused. Every key must be long, must not be an
example shipped with Continuity and must not be obviously low in entropy.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.events import Id

ALGORITHM = "HS256"
AUDIENCE = "continuity"
MIN_SECRET_LENGTH = 32
# What the entropy estimate (``estimated_bits``) must reach: the strength of a
# 128-bit random key, which `openssl rand -hex 32` gives twice over.
MIN_SECRET_BITS = 128
# Clocks of the token issuer and of the gateways differ a little.
LEEWAY_SECONDS = 10
KID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Role(StrEnum):
    """Who a token speaks for."""

    CUSTOMER = "customer"
    POS = "pos"
    SERVICE = "service"


# Longest lifetime (``exp - iat``, seconds) a token of each role may have, unless
# configured otherwise (CONTINUITY_TOKEN_MAX_TTL_*): a customer's device session
# a day, a till's shift 16 hours, a back-office job (which mints its own) 12 hours.
DEFAULT_MAX_LIFETIMES: Mapping[str, int] = MappingProxyType(
    {Role.CUSTOMER.value: 86_400, Role.POS.value: 57_600, Role.SERVICE.value: 43_200}
)

# Keys shipped with Continuity, in its deploy examples, docs and tests (past and
# present): public, so never a gateway's key. Compared after ``_normalized``.
KNOWN_EXAMPLE_KEYS: frozenset[str] = frozenset(
    {
        # deploy/kubernetes/gateway-secret.example.yaml
        "CHANGE-ME-to-32-or-more-random-characters",
        "gateway-tests-secret-0123456789abcdef",  # the gateway tests' key until they drew one
        "unit-test-secret-0123456789abcdefghij",
        "another-secret-0123456789abcdefghijkl",
    }
)
# Words that mark a placeholder someone forgot to replace.
_PLACEHOLDER_WORDS = ("changeme", "replaceme", "placeholder", "example", "yoursecret")


@dataclass(frozen=True)
class Principal:
    """The verified identity behind a request."""

    role: Role
    subject: str | None = None
    store: str | None = None
    anon: str | None = None
    # The token's ``exp`` (Unix seconds): a stream ends there (routes/stream.py). Not part
    # of who the principal is: two tokens of one identity are equal.
    expires_at: float | None = field(default=None, compare=False)


class TokenError(Exception):
    """A token that cannot be trusted. ``code`` is ``invalid_token`` or ``token_expired``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Keyring:
    """The keys a gateway accepts: the unnamed one, for tokens without a ``kid``
    header, and named ones, each for tokens whose ``kid`` is its name."""

    default: str | None = None
    named: Mapping[str, str] = field(default_factory=dict)

    def key_for(self, kid: str | None) -> str:
        """The key that checks a token with this ``kid``; ``TokenError`` if there is none."""
        if kid is None:
            if self.default is None:
                raise TokenError("invalid_token", "the token is not valid: it names no key (kid)")
            return self.default
        key = self.named.get(kid)
        if key is None:
            raise TokenError("invalid_token", "the token is not valid: its key id (kid) is unknown")
        return key


class _Claims(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Role
    sub: Id | None = None
    store: Id | None = None
    anon: Id | None = None

    @model_validator(mode="after")
    def _scoped(self) -> _Claims:
        if self.role is Role.CUSTOMER and self.sub is None:
            raise ValueError("a customer token needs sub (the customer key)")
        if self.role is Role.POS and self.store is None:
            raise ValueError("a pos token needs store")
        if self.role is not Role.CUSTOMER and self.anon is not None:
            raise ValueError("only a customer token may carry anon")
        return self


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def check_secret(secret: str | None, name: str = "CONTINUITY_AUTH_SECRET") -> str:
    """Return ``secret`` if it can sign tokens; raise ``ValueError`` saying why not.

    ``name`` says which setting (or which key of it) the message is about; the
    message never repeats the secret.
    """
    if not secret:
        raise ValueError(f"{name} is not set")
    if len(secret) < MIN_SECRET_LENGTH:
        # An HS256 key shorter than the hash invites brute force.
        raise ValueError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
    normalized = _normalized(secret)
    if normalized in _KNOWN or any(word in normalized for word in _PLACEHOLDER_WORDS):
        # Anyone who read the repository could mint service tokens with it.
        raise ValueError(
            f"{name} is an example key shipped with Continuity (or a placeholder); "
            "generate one: openssl rand -hex 32"
        )
    if estimated_bits(secret) < MIN_SECRET_BITS:
        raise ValueError(
            f"{name} is too predictable (repeated characters, runs such as abcd or 1234, "
            "repeated stretches, few kinds of characters); generate one: openssl rand -hex 32"
        )
    return secret


def estimated_bits(secret: str) -> float:
    """A rough upper estimate of the guesses ``secret`` takes, in bits.

    Characters a guesser gets for free do not count: one that repeats the
    previous step (``aaaa``, ``abcd``, ``4321``) and one that ends a stretch of
    four already seen earlier in the key. Each other character is worth the
    size of the character classes the key uses (lower, upper, digits, other).
    It cannot tell a sentence from random text; it catches what people type
    when they make a key up, not what a generator gives.
    """
    novel = 0
    for i, ch in enumerate(secret):
        if i >= 2:
            step = ord(ch) - ord(secret[i - 1])
            if abs(step) <= 1 and step == ord(secret[i - 1]) - ord(secret[i - 2]):
                continue
        if i >= 3 and secret[i - 3 : i + 1] in secret[:i]:
            continue
        novel += 1
    classes = (
        (26, any(c.islower() for c in secret)),
        (26, any(c.isupper() for c in secret)),
        (10, any(c.isdigit() for c in secret)),
        (33, any(not c.isalnum() for c in secret)),
    )
    alphabet = sum(size for size, used in classes if used)
    return novel * math.log2(alphabet) if alphabet > 1 else 0.0


def _normalized(secret: str) -> str:
    return "".join(c for c in secret.lower() if c.isalnum())


_KNOWN = frozenset(_normalized(k) for k in KNOWN_EXAMPLE_KEYS)


def parse_named_keys(text: str | None) -> dict[str, str]:
    """``kid=key`` entries separated by commas or white space (``CONTINUITY_AUTH_KEYS``).

    Raises ``ValueError`` naming the entry's position or kid, never a key.
    """
    named: dict[str, str] = {}
    for n, entry in enumerate(re.split(r"[,\s]+", (text or "").strip()), start=1):
        if not entry:
            continue
        kid, sep, key = entry.partition("=")
        if not sep or not KID_PATTERN.fullmatch(kid):
            raise ValueError(
                f"CONTINUITY_AUTH_KEYS entry {n} is not kid=key (a kid is letters, digits, "
                "'.', '_' or '-', at most 64)"
            )
        if kid in named:
            raise ValueError(f"CONTINUITY_AUTH_KEYS names kid {kid!r} twice")
        named[kid] = key
    return named


def keyring(default: str | None, named_text: str | None) -> Keyring:
    """The accepted keys from the settings, each checked (``check_secret``).

    Raises ``ValueError`` when there is no key at all or one is unfit.
    """
    named = parse_named_keys(named_text)
    if default is None and not named:
        raise ValueError("CONTINUITY_AUTH_SECRET is not set (nor CONTINUITY_AUTH_KEYS)")
    if default is not None:
        check_secret(default)
    for kid, key in named.items():
        check_secret(key, f"CONTINUITY_AUTH_KEYS key {kid!r}")
    return Keyring(default, MappingProxyType(dict(named)))


def issue(
    secret: str,
    role: Role,
    *,
    subject: str | None = None,
    store: str | None = None,
    anon: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
    kid: str | None = None,
) -> str:
    """Sign a token (with a ``kid`` header when given); raises ``ValueError`` when the
    claims break the rules above."""
    issued = int(time.time() if now is None else now)
    try:
        claims = _Claims(role=role, sub=subject, store=store, anon=anon)
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from None
    if kid is not None and not KID_PATTERN.fullmatch(kid):
        raise ValueError("a kid is letters, digits, '.', '_' or '-', at most 64")
    payload: dict[str, Any] = {
        "role": claims.role.value,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl),
    }
    for name in ("sub", "store", "anon"):
        value = getattr(claims, name)
        if value is not None:
            payload[name] = value
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, check_secret(secret), algorithm=ALGORITHM, headers=headers)


def verify(
    keys: Keyring | str,
    token: str,
    max_lifetimes: Mapping[str, int] = DEFAULT_MAX_LIFETIMES,
) -> Principal:
    """The principal of a valid token; raises ``TokenError`` otherwise. Never echoes the token.

    ``keys``: the accepted keys (a plain string is one unnamed key);
    ``max_lifetimes``: the longest ``exp - iat`` accepted, by role name.
    """
    if not token.isascii():
        # A JWT is base64url and dots. Header bytes that are not UTF-8 reach us as
        # surrogate escapes, which PyJWT cannot even encode: refuse them here.
        raise TokenError("invalid_token", "the token is not valid: it is not ASCII")
    ring = Keyring(keys) if isinstance(keys, str) else keys
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"the token is not valid: {_pyjwt_reason(exc)}") from None
    if kid is not None and not isinstance(kid, str):
        raise TokenError("invalid_token", "the token is not valid: its kid is not a string")
    key = ring.key_for(kid)
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "aud", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "the token has expired") from None
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"the token is not valid: {_pyjwt_reason(exc)}") from None
    try:
        claims = _Claims.model_validate(payload)
    except ValidationError as exc:
        message = f"the token's claims are not valid: {_first_error(exc)}"
        raise TokenError("invalid_token", message) from None
    # PyJWT checked both are integers (or integral numbers); a stolen token lives
    # at most this long, whatever exp its issuer chose.
    lifetime = int(payload["exp"]) - int(payload["iat"])
    cap = max_lifetimes[claims.role.value]
    if lifetime > cap:
        raise TokenError(
            "invalid_token",
            f"the token is not valid: it lives {lifetime} s (exp - iat), over the cap of "
            f"{cap} s for {claims.role.value} tokens",
        )
    expires_at = payload.get("exp")
    return Principal(
        claims.role,
        claims.sub,
        claims.store,
        claims.anon,
        float(expires_at) if isinstance(expires_at, int | float) else None,
    )


def _pyjwt_reason(exc: Exception) -> str:
    # PyJWT's messages name the failed check, never the token's content.
    return str(exc)[:200] or type(exc).__name__


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "claims"
    return f"{loc}: {err.get('msg', '')}"[:200]
