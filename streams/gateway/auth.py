"""Bearer tokens: HS256 JWTs naming a role and what it acts for. Pure (no I/O).

Claims (docs/gateway-api.md, Authentication):

* ``role``: ``customer``, ``pos`` or ``service``;
* ``sub``: for ``customer`` the customer key it acts for (a ``customer_id``,
  or an ``anonymous_id`` for a guest), required; optional for the others;
* ``store``: for ``pos`` the store id of the terminal, required;
* ``anon``: optional, ``customer`` only: the guest id this sign-in adopts
  (events carrying both ids merge that guest's session into the customer's);
* ``aud`` = ``continuity``, ``exp`` (required) and ``iat``.

Verification accepts only HS256 (never ``none`` or another algorithm named
by the token), requires ``exp`` and ``aud`` and checks every id against the
wire contract's id pattern, so a token can never smuggle a key pattern into
Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.events import Id

ALGORITHM = "HS256"
AUDIENCE = "continuity"
MIN_SECRET_LENGTH = 32
# Clocks of the token issuer and of the gateways differ a little.
LEEWAY_SECONDS = 10


class Role(StrEnum):
    """Who a token speaks for."""

    CUSTOMER = "customer"
    POS = "pos"
    SERVICE = "service"


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


def check_secret(secret: str | None) -> str:
    """Return ``secret`` if it can sign tokens; raise ``ValueError`` saying why not."""
    if not secret:
        raise ValueError("CONTINUITY_AUTH_SECRET is not set")
    if len(secret) < MIN_SECRET_LENGTH:
        # An HS256 key shorter than the hash invites brute force.
        raise ValueError(f"CONTINUITY_AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters")
    return secret


def issue(
    secret: str,
    role: Role,
    *,
    subject: str | None = None,
    store: str | None = None,
    anon: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """Sign a token; raises ``ValueError`` when the claims break the rules above."""
    issued = int(time.time() if now is None else now)
    try:
        claims = _Claims(role=role, sub=subject, store=store, anon=anon)
    except ValidationError as exc:
        raise ValueError(_first_error(exc)) from None
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
    return jwt.encode(payload, check_secret(secret), algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Principal:
    """The principal of a valid token; raises ``TokenError`` otherwise. Never echoes the token."""
    if not token.isascii():
        # A JWT is base64url and dots. Header bytes that are not UTF-8 reach us as
        # surrogate escapes, which PyJWT cannot even encode: refuse them here.
        raise TokenError("invalid_token", "the token is not valid: it is not ASCII")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "aud", "role"]},
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
