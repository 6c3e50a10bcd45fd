"""The ``continuity`` command: thin wrappers that parse arguments and call the modules."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import orjson

DEFAULT_STATE_DIR = Path(".continuity")
# The token key of a running ``continuity dev`` (mode 0600, next to dev.json).
DEV_SECRET_FILE = "auth-secret"


def load_settings() -> Any:
    """Settings from the environment; addresses of a running ``continuity dev`` fill gaps."""
    from streams.settings import Settings

    dev_file = Path(os.environ.get("CONTINUITY_STATE_DIR", DEFAULT_STATE_DIR)) / "dev.json"
    overrides: dict[str, Any] = {}
    if dev_file.exists():
        info = json.loads(dev_file.read_text())
        if "KAFKA_BOOTSTRAP" not in os.environ:
            overrides["KAFKA_BOOTSTRAP"] = info["kafka_bootstrap"]
        if "REDIS_URL" not in os.environ:
            overrides["REDIS_URL"] = info["redis_url"]
        secret = dev_file.parent / DEV_SECRET_FILE
        if "CONTINUITY_AUTH_SECRET" not in os.environ and secret.exists():
            overrides["auth_secret"] = secret.read_text().strip()
    return Settings(**overrides)


def cmd_dev(args: argparse.Namespace) -> int:
    from streams.dev import live as dev

    args.state_dir.mkdir(parents=True, exist_ok=True)
    return dev.run(args.state_dir, args.workers, not args.no_demo, args.rate, args.seed)


def cmd_worker(args: argparse.Namespace) -> int:
    import faust
    from aiokafka.errors import KafkaError

    from streams import logs
    from streams.kafka.security import KafkaSecurityError, describe, kafka_client_kwargs
    from streams.kafka.topics import TopicLayoutError, ensure_topics
    from streams.worker.app import create_app

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    json_logs = settings.log_format == "json"
    try:
        kafka = kafka_client_kwargs(settings)
        layout = asyncio.run(
            ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, kafka=kafka)
        )
    except (TopicLayoutError, KafkaSecurityError) as exc:
        _say(json_logs, f"continuity worker: {exc}", logging.ERROR)
        return 2
    except Exception as exc:
        # Unreachable brokers, refused TLS or SASL: one clear line, not a traceback.
        hint = ""
        if "SASL" in settings.kafka_security_protocol and not isinstance(
            exc, (KafkaError, OSError)
        ):
            # aiokafka's SCRAM client fails on a refusal with a bare KeyError/ValueError.
            hint = "; the SASL login was refused: check the user name and password"
        _say(
            json_logs,
            f"continuity worker: cannot connect to Kafka at {settings.kafka_bootstrap} "
            f"({describe(settings)}): {exc!r}{hint}",
            logging.ERROR,
        )
        return 1
    if layout.get("cart-events") != settings.topic_partitions:
        _say(
            json_logs,
            f"continuity worker: topics have {layout.get('cart-events')} partitions, "
            f"CONTINUITY_TOPIC_PARTITIONS says {settings.topic_partitions}; using the topics'",
            logging.WARNING,
        )
    _say(
        json_logs,
        f"continuity worker: group {settings.app_id!r} on {settings.kafka_bootstrap} "
        f"({describe(settings)}), "
        f"metrics, /healthz, /readyz "
        f"{'on :' + str(settings.metrics_port) if settings.metrics_port else 'off'}",
    )
    app = create_app(settings)
    # Faust's worker installs its own loop; the one asyncio.run used above is closed.
    asyncio.set_event_loop(asyncio.new_event_loop())
    faust.Worker(
        app,
        loglevel=settings.log_level,
        # JSON: Faust's own records too, and no banner (it is not a JSON line).
        logging_config=logs.logging_config(settings.log_level, "json") if json_logs else None,
        quiet=json_logs,
    ).execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process


def _say(json_logs: bool, message: str, level: int = logging.INFO) -> None:
    """A worker start-up message: a plain line, or a log record when logs are JSON."""
    if json_logs:
        logging.getLogger("streams.cli").log(level, message)
    else:
        print(message, file=sys.stdout if level == logging.INFO else sys.stderr, flush=True)


def cmd_session_show(args: argparse.Namespace) -> int:
    from streams.store.client import connect
    from streams.store.state import RedisState

    if args.as_of is not None:
        return _session_show_as_of(args)
    settings = load_settings()

    async def show() -> dict[str, object] | None:
        redis = connect(settings.redis_dsn())
        try:
            session = await RedisState(redis, settings.redis_prefix).get(args.id)
        finally:
            await redis.aclose()
        return None if session is None else session.public()

    public = asyncio.run(show())
    if public is None:
        print(f"no session for {args.id!r}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(public, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _session_show_as_of(args: argparse.Namespace) -> int:
    """``session show ID --as-of T``: the session refolded as it was at T (no time limit)."""
    import time

    from aiokafka.errors import KafkaError
    from pydantic import TypeAdapter, ValidationError
    from redis.exceptions import RedisError

    from schemas.events import Id
    from streams.core.time_travel import BadMoment, iso_ms, parse_moment
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.time_travel import ReadProgress, TimeTravel, TimeTravelError, session_as_of
    from streams.store.client import connect
    from streams.store.state import RedisState

    try:
        TypeAdapter(Id).validate_python(args.id)
    except ValidationError:
        print("continuity session show: the id must match the id pattern", file=sys.stderr)
        return 2
    try:
        moment = parse_moment(args.as_of)
    except BadMoment as exc:
        print(f"continuity session show: --as-of must be {exc}", file=sys.stderr)
        return 2
    now = int(time.time() * 1000)
    if moment > now:
        print(
            f"continuity session show: --as-of {iso_ms(moment)} is in the future "
            f"(now is {iso_ms(now)})",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()

    def report(p: ReadProgress) -> None:
        print(f"  {p.line()}", file=sys.stderr, flush=True)

    async def refold() -> TimeTravel:
        redis = connect(settings.redis_dsn(), socket_timeout=30)
        try:
            return await session_as_of(
                settings.kafka_bootstrap,
                RedisState(redis, settings.redis_prefix),
                args.id,
                moment,
                settings.fold_limits(),
                kafka=kafka_client_kwargs(settings),
                prefilter=not args.all_records,
                report=report,
            )
        finally:
            await redis.aclose()

    print(
        f"refolding {args.id!r} as of {iso_ms(moment)} from the topics' start...",
        file=sys.stderr,
        flush=True,
    )
    try:
        found = asyncio.run(refold())
    except (TimeTravelError, KafkaError, RedisError, OSError) as exc:
        print(f"continuity session show: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    body = found.body()
    if body is None:
        why = "it was erased; erased sessions are never refolded" if found.result.erased else ""
        print(
            f"no session for {args.id!r} as of {iso_ms(moment)}" + (f": {why}" if why else ""),
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.core.fold import Rejected
    from streams.kafka.publish import Outgoing, Publisher, prepare
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics

    settings = load_settings()
    source: TextIO = (
        sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
    )
    good: list[Outgoing] = []
    bad = 0
    with source:
        for n, line in enumerate(source, start=1):
            if not line.strip():
                continue
            raw = line.strip().encode()
            if args.raw:
                good.append(Outgoing(args.topic, args.key.encode() if args.key else b"", raw))
                continue
            out = prepare(raw)
            if isinstance(out, Rejected):
                bad += 1
                print(f"line {n}: {out.reason.value}: {out.detail}", file=sys.stderr)
            else:
                good.append(out)

    async def send() -> int:
        kafka = kafka_client_kwargs(settings)
        await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, kafka=kafka)
        async with Publisher(settings.kafka_bootstrap, kafka=kafka) as pub:
            return len(await pub.send_all(good))

    sent = asyncio.run(send()) if good else 0
    per_topic = Counter(o.topic for o in good)
    print(
        f"sent {sent} events to {settings.kafka_bootstrap} "
        f"({', '.join(f'{t}: {c}' for t, c in sorted(per_topic.items())) or 'none'})"
        + (f"; {bad} invalid lines skipped" if bad else "")
    )
    return 1 if bad else 0


def cmd_offsets_rewind(args: argparse.Namespace) -> int:
    from schemas.topics import SOURCE_TOPICS
    from streams.kafka.groups import rewind_group
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics

    settings = load_settings()
    group = args.group or settings.app_id

    async def rewind() -> int:
        kafka = kafka_client_kwargs(settings)
        layout = await ensure_topics(
            settings.kafka_bootstrap, settings.topic_partitions, kafka=kafka
        )
        partitions = layout[SOURCE_TOPICS[0]]
        print(
            f"rewinding group {group!r} on {settings.kafka_bootstrap} to the earliest offsets "
            f"({len(SOURCE_TOPICS)} topics x {partitions} partitions); waiting for the "
            "group to be empty...",
            flush=True,
        )
        return await rewind_group(
            settings.kafka_bootstrap,
            group,
            SOURCE_TOPICS,
            partitions,
            timeout=args.timeout,
            kafka=kafka,
        )

    try:
        count = asyncio.run(rewind())
    except TimeoutError as exc:
        print(f"continuity offsets rewind: {exc}; are workers still running?", file=sys.stderr)
        return 1
    print(
        f"rewound {count} partitions; restart the workers to re-read every topic "
        "(events already in Redis are skipped)"
    )
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    import time

    from schemas.topics import SOURCE_TOPICS
    from streams.kafka.groups import ensure_group_empty
    from streams.kafka.security import kafka_client_kwargs
    from streams.kafka.topics import ensure_topics
    from streams.ops.rebuild import Progress, rebuild, wipe
    from streams.store.client import connect
    from streams.store.state import RedisState

    settings = load_settings()
    if args.into_live:
        prefix = settings.redis_prefix
    else:
        prefix = args.prefix or f"{settings.redis_prefix}-rebuild-{time.strftime('%Y%m%d%H%M%S')}"
        if prefix == settings.redis_prefix:
            print("continuity rebuild: that is the live prefix; use --into-live", file=sys.stderr)
            return 2

    def report(p: Progress) -> None:
        print(f"  {p.line()}", flush=True)

    async def run() -> Progress:
        kafka = kafka_client_kwargs(settings)
        layout = await ensure_topics(
            settings.kafka_bootstrap, settings.topic_partitions, kafka=kafka
        )
        redis = connect(settings.redis_dsn(), socket_timeout=30)
        try:
            if args.into_live:
                group = args.group or settings.app_id
                print(f"checking that group {group!r} has no worker...", flush=True)
                await ensure_group_empty(
                    settings.kafka_bootstrap,
                    group,
                    SOURCE_TOPICS,
                    layout[SOURCE_TOPICS[0]],
                    timeout=args.timeout,
                    kafka=kafka,
                )
                print(f"wiped {await wipe(redis, prefix)} keys of live prefix {prefix!r}")
            elif await redis.exists(f"{prefix}:o"):
                raise FileExistsError(prefix)
            print(f"rebuilding {', '.join(SOURCE_TOPICS)} into prefix {prefix!r}...", flush=True)
            return await rebuild(
                settings.kafka_bootstrap,
                # Timers and the journey as live; no notifications: they went out live.
                RedisState(redis, prefix, settings.effects(notify=False)),
                SOURCE_TOPICS,
                batch_max=args.batch,
                report=report,
                kafka=kafka,
                limits=settings.fold_limits(),
            )
        finally:
            await redis.aclose()

    try:
        done = asyncio.run(run())
    except TimeoutError as exc:
        print(f"continuity rebuild: {exc}; stop the workers first", file=sys.stderr)
        return 1
    except FileExistsError:
        print(f"continuity rebuild: prefix {prefix!r} already holds state", file=sys.stderr)
        return 2
    print(f"  {done.line()}")
    print(f"rebuilt {done.records} records into prefix {prefix!r}")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Id
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.erase import EraseError, erase_customer, report
    from streams.store.client import connect
    from streams.store.state import Erased, RedisState

    try:
        ids = [TypeAdapter(Id).validate_python(i) for i in [args.customer, *args.anonymous_id]]
    except ValidationError:
        print("continuity erase: ids must match the wire contract's id pattern", file=sys.stderr)
        return 2
    settings = load_settings()

    async def run() -> Erased:
        redis = connect(settings.redis_dsn(), socket_timeout=30)
        try:
            return await erase_customer(
                RedisState(redis, settings.redis_prefix),
                settings.kafka_bootstrap,
                ids[0],
                also=ids[1:],
                kafka=kafka_client_kwargs(settings),
            )
        finally:
            await redis.aclose()

    print(f"erasing customer {ids[0]!r} (prefix {settings.redis_prefix!r})...", flush=True)
    try:
        done = asyncio.run(run())
    except (EraseError, OSError) as exc:
        print(f"continuity erase: {exc}; nothing is lost by running it again", file=sys.stderr)
        return 1
    print(json.dumps(report(done), indent=2))
    return 0


def cmd_unmerge(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Channel, Id
    from streams.kafka.security import kafka_client_kwargs
    from streams.ops.unmerge import Outcome, unmerge, unmerge_event
    from streams.store.client import connect

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
        redis = connect(settings.redis_dsn(), socket_timeout=10)
        try:
            return await unmerge(
                settings.kafka_bootstrap,
                kafka_client_kwargs(settings),
                redis,
                settings.redis_prefix,
                event,
                args.timeout,
            )
        finally:
            await redis.aclose()

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


def cmd_dlq(args: argparse.Namespace) -> int:
    from streams.cli.dlq import run
    from streams.kafka.security import kafka_client_kwargs

    settings = load_settings()
    return run(args, settings.kafka_bootstrap, kafka_client_kwargs(settings))


def cmd_schema(args: argparse.Namespace) -> int:
    from streams.ops.schema_export import SCHEMA_DIR, export, stale

    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {SCHEMA_DIR / name}", file=sys.stderr)
        return 1 if names else 0
    for path in export():
        print(f"wrote {path}")
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from streams import logs
    from streams.gateway.app import run
    from streams.gateway.auth import check_secret
    from streams.kafka.security import KafkaSecurityError, check
    from streams.kafka.topics import TopicLayoutError

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        secret = check_secret(
            settings.auth_secret.get_secret_value() if settings.auth_secret else None
        )
    except ValueError as exc:
        print(f"continuity gateway: {exc}; refusing to start", file=sys.stderr)
        return 2
    try:
        check(settings)
    except KafkaSecurityError as exc:
        print(f"continuity gateway: {exc}; refusing to start", file=sys.stderr)
        return 2
    try:
        run(settings, secret)
    except TopicLayoutError as exc:
        print(f"continuity gateway: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, OSError) as exc:
        print(f"continuity gateway: cannot start: {exc!r}", file=sys.stderr)
        return 1
    return 0


def cmd_token(args: argparse.Namespace) -> int:
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="continuity", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dev", help="run broker, Redis, workers and demo traffic in the foreground")
    d.add_argument("--no-demo", action="store_true", help="leave out the simulated traffic")
    d.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    d.add_argument("--rate", type=float, default=4.0, help="demo events per second (default 4)")
    d.add_argument("--seed", type=int, default=7, help="demo workload seed")
    d.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    d.set_defaults(func=cmd_dev)

    w = sub.add_parser("worker", help="run one Faust worker (KAFKA_BOOTSTRAP, REDIS_URL)")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("session", help="inspect sessions")
    ssub = s.add_subparsers(dest="action", required=True)
    show = ssub.add_parser("show", help="print one session's state as JSON")
    show.add_argument("id", help="customer_id or anonymous_id")
    show.add_argument(
        "--as-of",
        metavar="TIME",
        help="the session as it was at TIME (ISO 8601, UTC if no offset, or Unix ms): "
        "refolded from the topics' start with the workers' fold, counting every record "
        "whose Kafka timestamp (broker append time) is <= TIME; erased sessions stay erased",
    )
    show.add_argument(
        "--all-records",
        action="store_true",
        help="with --as-of: fold every record, not only those naming the id or a guest id "
        "Redis links to it (for a Redis that lost state)",
    )
    show.set_defaults(func=cmd_session_show)

    pr = sub.add_parser("produce", help="publish events from a JSON-lines file or stdin")
    pr.add_argument("file", nargs="?", help="JSON-lines file; '-' or nothing for stdin")
    pr.add_argument("--raw", action="store_true", help="send lines unvalidated to --topic")
    pr.add_argument("--topic", default="cart-events", help="topic for --raw")
    pr.add_argument("--key", default=None, help="message key for --raw")
    pr.set_defaults(func=cmd_produce)

    o = sub.add_parser("offsets", help="consumer group offsets")
    osub = o.add_subparsers(dest="action", required=True)
    rw = osub.add_parser("rewind", help="reset a stopped worker group to the earliest offsets")
    rw.add_argument("--group", default=None, help="consumer group (default CONTINUITY_APP_ID)")
    rw.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the group")
    rw.set_defaults(func=cmd_offsets_rewind)

    rb = sub.add_parser("rebuild", help="recompute every session from the topics into Redis")
    rb.add_argument("--prefix", help="target Redis prefix (default <prefix>-rebuild-<time>)")
    rb.add_argument(
        "--into-live",
        action="store_true",
        help="wipe and rebuild the live prefix (workers stopped)",
    )
    rb.add_argument("--group", default=None, help="worker group that must be empty (--into-live)")
    rb.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the group")
    rb.add_argument("--batch", type=int, default=2000, help="records per committed batch")
    rb.set_defaults(func=cmd_rebuild)

    er = sub.add_parser("erase", help="erase a customer's session state for good")
    er.add_argument("--customer", required=True, help="customer_id to erase")
    er.add_argument(
        "--anonymous-id",
        action="append",
        default=[],
        help="a guest id of this customer to erase too (repeatable); merged guests are found",
    )
    er.set_defaults(func=cmd_erase)

    um = sub.add_parser(
        "unmerge", help="undo a guest's login merge into a customer (before checkout)"
    )
    um.add_argument("--customer", required=True, help="the customer_id the guest was merged into")
    um.add_argument("--guest", required=True, help="the guest's anonymous_id")
    um.add_argument("--channel", default="call_center", help="channel of the undo (call_center)")
    um.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a worker")
    um.set_defaults(func=cmd_unmerge)

    dl = sub.add_parser("dlq", help="inspect, repair and replay dead letters (events-dlq)")
    dlsub = dl.add_subparsers(dest="action", required=True)
    states = ["pending", "replayed", "dropped", "all"]
    for action, help_, default_state in (
        ("list", "one line per dead letter, then counts by reason", "all"),
        ("export", "dead letters as a JSON-lines repair file", "pending"),
    ):
        a = dlsub.add_parser(action, help=help_)
        a.add_argument("--reason", help="only this reason, e.g. invalid_event")
        a.add_argument("--topic", help="only dead letters from this source topic")
        a.add_argument("--since", help="only those dead-lettered since this ISO time (UTC if bare)")
        a.add_argument("--state", choices=states, help=f"only this state (default {default_state})")
        a.set_defaults(func=cmd_dlq)
        if action == "list":
            a.add_argument("--limit", type=int, default=None, help="print at most N lines")
            a.add_argument("--json", action="store_true", help="JSON lines; counts on stderr")
        else:
            a.add_argument("--out", default=None, help="file to write (default stdout)")
    a = dlsub.add_parser("show", help="one dead letter: headers, key and value")
    a.add_argument("position", help="its events-dlq position, partition:offset")
    a.set_defaults(func=cmd_dlq)
    a = dlsub.add_parser("replay", help="validate a repair file, then publish and record it")
    a.add_argument("file", help="the edited export ('-' for stdin)")
    a.add_argument("--dry-run", action="store_true", help="validate and show; publish nothing")
    a.add_argument("--force", action="store_true", help="also lines already replayed or dropped")
    a.set_defaults(func=cmd_dlq)
    a = dlsub.add_parser("drop", help="record dead letters as dropped (never to be replayed)")
    a.add_argument("positions", nargs="+", help="events-dlq positions, partition:offset")
    a.add_argument("--note", default="", help="why (kept in the ledger)")
    a.set_defaults(func=cmd_dlq)

    sc = sub.add_parser("schema", help="export the JSON Schema files from the models")
    sc.add_argument("--check", action="store_true", help="exit 1 if checked-in files are stale")
    sc.set_defaults(func=cmd_schema)

    g = sub.add_parser("gateway", help="run the HTTP/SSE gateway (CONTINUITY_AUTH_SECRET)")
    g.set_defaults(func=cmd_gateway)

    t = sub.add_parser("token", help="print a gateway token signed with CONTINUITY_AUTH_SECRET")
    t.add_argument("--role", required=True, choices=["customer", "pos", "service"])
    t.add_argument("--customer", help="customer key a customer token acts for (or a guest id)")
    t.add_argument("--store", help="store id of a pos token")
    t.add_argument("--anon", help="guest id a customer token may link (sign-in)")
    t.add_argument("--subject", help="sub claim of a pos or service token (who holds it)")
    t.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    t.set_defaults(func=cmd_token)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``continuity`` console script."""
    from pydantic_settings import SettingsError

    from streams.kafka.security import KafkaSecurityError

    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (KafkaSecurityError, SettingsError) as exc:
        # Configuration the command cannot work with: say which, without a traceback.
        print(f"continuity {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
