"""``continuity unmerge``: undo a guest's login merge into a customer, before checkout."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streams.cli.common import Subcommands, load_settings, redis_client


def run(args: argparse.Namespace) -> int:
    """Publish a session.unmerged event and wait for a worker to apply it."""
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Channel, Id
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.unmerge import Outcome, unmerge, unmerge_event

    try:
        customer, guest = (TypeAdapter(Id).validate_python(i) for i in (args.customer, args.guest))
        channel = Channel(args.channel).value
    except (ValidationError, ValueError):
        print(
            "continuity unmerge: ids must match the wire contract, channel be one of "
            f"{', '.join(c.value for c in Channel)}",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()
    event = unmerge_event(customer, guest, channel)

    async def run() -> Outcome:
        async with redis_client(settings, socket_timeout=10) as redis:
            return await unmerge(
                settings.kafka_bootstrap,
                kafka_client_kwargs(settings),
                redis,
                settings.space(),
                event,
                args.timeout,
            )

    print(f"undoing the merge of guest {guest!r} into customer {customer!r}...", flush=True)
    try:
        done = asyncio.run(run())
    except OSError as exc:
        print(f"continuity unmerge: {exc}", file=sys.stderr)
        return 1
    print(f"published session.unmerged {event['event_id']} at {done.position}")
    if not done.applied:
        print(
            f"not applied within {args.timeout:g} s (is a worker running?); it will be "
            "applied when one is: continuity session show " + customer,
            file=sys.stderr,
        )
        return 1
    if done.undone is None:
        print(
            "refused by the fold: nothing to undo, or a checkout began after the merge; "
            "the reason is on events-dlq (continuity dlq list --reason nothing_to_unmerge "
            "or merge_checked_out)",
            file=sys.stderr,
        )
        return 1
    back = {ln.sku: ln.guest_quantity for ln in done.undone.lines if ln.guest_quantity}
    print(
        f"undone: {json.dumps(back)} back to guest {guest!r}; "
        f"look: continuity session show {customer} / {guest}"
    )
    return 0


def register(sub: Subcommands) -> None:
    """Add the command's parser."""
    um = sub.add_parser(
        "unmerge", help="undo a guest's login merge into a customer (before checkout)"
    )
    um.add_argument("--customer", required=True, help="the customer_id the guest was merged into")
    um.add_argument("--guest", required=True, help="the guest's anonymous_id")
    um.add_argument("--channel", default="call_center", help="channel of the undo (call_center)")
    um.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a worker")
    um.set_defaults(func=run)
