"""``continuity token``: print a gateway token signed with CONTINUITY_AUTH_SECRET."""

from __future__ import annotations

import argparse
import sys

from streams.cli.common import Subcommands, load_settings


def run(args: argparse.Namespace) -> int:
    """Print a signed gateway token for a role."""
    from streams.gateway.auth import Role, issue

    settings = load_settings()
    try:
        token = issue(
            settings.auth_secret.get_secret_value() if settings.auth_secret else "",
            Role(args.role),
            subject=args.customer or args.subject,
            store=args.store,
            anon=args.anon,
            ttl=args.ttl if args.ttl is not None else settings.token_ttl,
        )
    except ValueError as exc:
        print(f"continuity token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    t = sub.add_parser("token", help="print a gateway token signed with CONTINUITY_AUTH_SECRET")
    t.add_argument("--role", required=True, choices=["customer", "pos", "service"])
    t.add_argument("--customer", help="customer key a customer token acts for (or a guest id)")
    t.add_argument("--store", help="store id of a pos token")
    t.add_argument("--anon", help="guest id a customer token may link (sign-in)")
    t.add_argument("--subject", help="sub claim of a pos or service token (who holds it)")
    t.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    t.set_defaults(func=run)
