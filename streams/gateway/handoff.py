"""POS handoff codes and the failed-claim policy. Pure (no I/O, no clock of its own).

A shopper asks for a code on the phone; a store's POS types or scans it and
takes the session over (docs/gateway-api.md, Handing a session to a POS).

* A code is 8 characters of Crockford's base32 (``0-9`` and ``A-Z`` without
  ``I L O U``) drawn from ``secrets``: 40 bits, so guessing one of the codes
  alive at any moment is hopeless under the failed-claim lockout below.
  Input is forgiving the way Crockford intends: case, spaces and dashes are
  ignored, ``I``/``L`` read as ``1`` and ``O`` as ``0``.
* A code is drawn in its session's partition (``partition_of``, Kafka's
  partitioner): its keys then share the session's Redis slot, so the commit
  that ends a session deletes its codes in the same script, cluster or not.
  Drawing until the partition matches (rejection sampling) keeps every code
  uniform among that partition's codes; the few bits it costs (log2 of the
  partition count) leave guessing as hopeless.
* The QR payload is the string ``continuity:handoff:<CODE>``, not an http
  URL: a phone camera scanning it must not open a page, and a POS scanner
  reads it as text and claims the code it carries.
* Failed claims (unknown, expired or already claimed codes) are counted per
  pos token (its store and terminal), per store, and per client address only
  where a trusted proxy names it (``client_address``): one ingress or NAT
  address is shared by many stores, and counting it would let five typos at
  one till lock every till behind it out. A claim reserves its guess on every
  counter before it tries the code, each counter comparing and incrementing in
  one step, so a concurrent burst gets exactly the allowed number of guesses;
  a claim that was no failed guess gives its reservation back. At a limit,
  every claim of that token, store or address is refused with the window's
  remaining time as ``Retry-After``, even with a valid code, so a lockout
  cannot be probed.
* Pending codes per session are bounded (the oldest are revoked when a newer
  one is issued), and issuing is rate-limited per token, so a token cannot
  fill Redis with codes.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from streams.core.placement import partition_of

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
QR_PREFIX = "continuity:handoff:"
# Crockford's decoding of look-alike characters.
_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_ALLOWED = frozenset(ALPHABET)
# Anything much longer than a code (or the QR payload carrying one) is not one.
_MAX_INPUT = 64
# Draws per partition before giving up on a code of one partition: each draw
# lands there with probability 1/partitions, so all of them miss with
# probability (1 - 1/p)^(40p) < e^-40, which only a broken randomness reaches.
DRAWS_PER_PARTITION = 40


class NoCodeDrawn(RuntimeError):
    """No code of the wanted partition came up within the bound (broken randomness)."""


def new_code(randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """A fresh code; ``randbelow`` is ``secrets.randbelow`` except in tests."""
    return "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(CODE_LENGTH))


def code_in_partition(
    partition: int, partitions: int, randbelow: Callable[[int], int] = secrets.randbelow
) -> str:
    """A fresh code whose partition is ``partition`` (of ``partitions``); raises ``NoCodeDrawn``."""
    draws = DRAWS_PER_PARTITION * partitions
    for _ in range(draws):
        code = new_code(randbelow)
        if partition_of(code, partitions) == partition:
            return code
    raise NoCodeDrawn(
        f"no handoff code of partition {partition} of {partitions} in {draws} draws: "
        "the random source is not random"
    )


def normalize_code(raw: str) -> str | None:
    """The canonical code a typed or scanned value stands for, or ``None`` if it is none."""
    if len(raw) > _MAX_INPUT:
        return None
    text = raw.strip()
    if text.lower().startswith(QR_PREFIX):
        text = text[len(QR_PREFIX) :]
    text = text.replace("-", "").replace(" ", "").upper().translate(_LOOKALIKES)
    if len(text) != CODE_LENGTH or not set(text) <= _ALLOWED:
        return None
    return text


def display(code: str) -> str:
    """The code as people read it aloud: two groups of four (``7K3M-Q9TX``)."""
    return f"{code[:4]}-{code[4:]}"


def qr_payload(code: str) -> str:
    """What a frontend encodes in the QR image for a POS scanner."""
    return f"{QR_PREFIX}{code}"


@dataclass(frozen=True)
class ClaimLimit:
    """Failed claims allowed per ``window`` seconds: ``max_failures`` per pos token,
    ``store_max_failures`` per store (all its tokens) and per trusted client address."""

    max_failures: int = 5
    store_max_failures: int = 20
    window: int = 300

    def retry_after(self, ttl_ms: int) -> int:
        """Seconds until a locked counter's window (``ttl_ms`` left) ends; never 0.

        A counter with no expiry left is treated as a full window.
        """
        return max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else self.window


def client_address(
    remote: str | None,
    forwarded_for: Sequence[str],
    trusted: Sequence[IPv4Network | IPv6Network],
) -> str | None:
    """The client address a failed claim may be counted on, or ``None`` for none.

    Only with trusted proxies configured: a peer that is not one of them is the
    client itself; a trusted peer's ``X-Forwarded-For`` is read from the right
    (each proxy appends the address it saw), skipping trusted hops, and the first
    other address is the client. Anything that is not an IP address ends the
    search: a client can put anything on the left of the header, never on the
    right of what a trusted proxy appended.
    """
    if not trusted:
        return None
    peer = _address(remote)
    if peer is None:
        return None
    if not _within(peer, trusted):
        return str(peer)
    hops = [h.strip() for header in forwarded_for for h in header.split(",")]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return None
        if not _within(found, trusted):
            return str(found)
    return None


def _address(text: str | None) -> IPv4Address | IPv6Address | None:
    if not text:
        return None
    try:
        found = ip_address(text)
    except ValueError:
        return None
    if isinstance(found, IPv6Address):
        if found.ipv4_mapped is not None:
            return found.ipv4_mapped
        if found.scope_id:
            return IPv6Address(str(found).split("%", 1)[0])
    return found


def _within(
    address: IPv4Address | IPv6Address, networks: Sequence[IPv4Network | IPv6Network]
) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def parse_networks(spec: str) -> list[IPv4Network | IPv6Network]:
    """``CONTINUITY_TRUSTED_PROXIES``: comma-separated addresses or CIDR networks."""
    return [ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]
