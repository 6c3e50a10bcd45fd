"""``continuity token``: print a gateway token signed with one of the gateway's keys."""

from __future__ import annotations

import argparse
import sys

from streams.cli.common import Subcommands, load_settings


def run(args: argparse.Namespace) -> int:
    """Print a signed gateway token for a role."""
    from streams.gateway.auth import Role, issue, parse_named_keys

    settings = load_settings()
    role = Role(args.role)
    ttl = args.ttl if args.ttl is not None else settings.token_ttl
    kid = args.kid or settings.auth_signing_kid
    cap = settings.token_max_lifetimes()[role.value]
    try:
        if ttl > cap:
            # The gateways would refuse it: say so now rather than at the first request.
            raise ValueError(
                f"--ttl {ttl} is over the {cap} s the gateways accept for {role.value} tokens "
                f"(CONTINUITY_TOKEN_MAX_TTL_{role.value.upper()})"
            )
        if kid is None:
            secret = settings.auth_secret.get_secret_value() if settings.auth_secret else ""
        else:
            named = parse_named_keys(
                settings.auth_keys.get_secret_value() if settings.auth_keys else None
            )
            if kid not in named:
                raise ValueError(f"CONTINUITY_AUTH_KEYS has no key named {kid!r}")
            secret = named[kid]
        token = issue(
            secret,
            role,
            subject=args.customer or args.subject,
            store=args.store,
            anon=args.anon,
            ttl=ttl,
            kid=kid,
        )
    except ValueError as exc:
        print(f"continuity token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    t = sub.add_parser(
        "token",
        help="print a gateway token signed with CONTINUITY_AUTH_SECRET (or a key of "
        "CONTINUITY_AUTH_KEYS: --kid)",
    )
    t.add_argument("--role", required=True, choices=["customer", "pos", "service"])
    t.add_argument("--customer", help="customer key a customer token acts for (or a guest id)")
    t.add_argument("--store", help="store id of a pos token")
    t.add_argument("--anon", help="guest id a customer token may link (sign-in)")
    t.add_argument("--subject", help="sub claim of a pos or service token (who holds it)")
    t.add_argument(
        "--ttl", type=int, default=None, help="lifetime in seconds (at most the role's cap)"
    )
    t.add_argument(
        "--kid",
        help="sign with this key of CONTINUITY_AUTH_KEYS and name it in the kid header "
        "(default CONTINUITY_AUTH_SIGNING_KID; none: CONTINUITY_AUTH_SECRET, no kid)",
    )
    t.set_defaults(func=run)
