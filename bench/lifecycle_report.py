"""The lifecycle benchmark's figures as text: a line per census, a table, a summary. Pure."""

from __future__ import annotations

from typing import Any

from streams.core.plan import Kind


def line(row: dict[str, Any], counts: dict[str, Any] | None = None) -> str:
    """One day's figures in a line."""
    per = row["bytes_per_live_session"]
    text = (
        f"day {row['day']:>3}: {row['events']:>9,} events, {row['sessions_ever']:>7,} sessions "
        f"ever, {row['live_sessions']:>6,} live, {row['keys']:>7,} keys, "
        f"{row['used_memory'] / 2**20:6.1f} MB used, "
        f"{per if per is not None else '-':>5} B per live session, lag max {row['lag_max_s']} s"
    )
    if counts is not None:
        text += f"; sessions held {counts.get('s', 0):,}, version floors {counts.get('vf', 0):,}"
    return text


def table(result: dict[str, Any], every: int = 10) -> str:
    """Every ``every``-th day (and the last) as a Markdown table, with the census."""
    census = {c["day"]: c for c in result["census"]}
    lines = [
        "| day | events | sessions ever | live | keys | session keys | version floors "
        "| used memory MB | B per live session |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["days"]:
        if row["day"] % every and row is not result["days"][-1]:
            continue
        c = census.get(row["day"])
        held = f"{c.get('s', 0):,} | {c.get('vf', 0):,}" if c is not None else "- | -"
        lines.append(
            f"| {row['day']} | {row['events']:,} | {row['sessions_ever']:,} "
            f"| {row['live_sessions']:,} | {row['keys']:,} | {held} "
            f"| {row['used_memory'] / 2**20:.1f} | {row['bytes_per_live_session'] or '-'} |"
        )
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> str:
    """What the run shows, in a few lines: held versus ever seen, and the growth at the end."""
    days, last = result["days"], result["days"][-1]
    census = result["census"][-1]
    spec = result["spec"]
    guest_horizon = spec["guest_ttl_days"] + spec["grace_days"]
    customer_horizon = spec["session_ttl_days"] + spec["grace_days"]
    late = days[max(0, int(len(days) * 0.8) - 1)]
    rejected = {k: v for k, v in result["outcomes"].items() if k != Kind.APPLIED.value}
    return "\n".join(
        [
            f"horizons: a guest's keys go {guest_horizon} days after its last event, a "
            f"customer's {customer_horizon}; version floors one TTL later",
            f"end (day {last['day']}): Redis holds {census.get('s', 0):,} sessions of "
            f"{last['sessions_ever']:,} session keys ever written "
            f"({census.get('s', 0) / max(last['sessions_ever'], 1):.0%}), "
            f"{last['live_sessions']:,} alive by event time; {last['keys']:,} keys, "
            f"{last['used_memory'] / 2**20:.1f} MB, "
            f"{last['bytes_per_live_session']} B per live session",
            f"last fifth (day {late['day']} -> {last['day']}): events "
            f"{_growth(late['events'], last['events'])}, session keys ever "
            f"{_growth(late['sessions_ever'], last['sessions_ever'])}, keys "
            f"{_growth(late['keys'], last['keys'])}, used memory "
            f"{_growth(late['used_memory'], last['used_memory'])}",
            f"changelog: {result['changelog']['records']:,} records published "
            f"({result['changelog']['tombstones']:,} tombstones, "
            f"{result['changelog']['mb']} MB), {result['changelog']['outbox_entries_left']} "
            "entries left in the outbox",
            "at the end, MB by key family (estimated from samples): "
            + ", ".join(f"{f} {mb:.1f}" for f, mb in result["mb_by_family"].items() if mb >= 0.1),
            f"{result['applied']:,} events applied, other outcomes {rejected or 'none'}; lag "
            f"behind event time at most {last['lag_max_s']} s (grace "
            f"{spec['grace_days'] * spec['day_seconds']} s); busy "
            f"{result['busy_share']:.0%} of {result['seconds']} s",
        ]
    )


def _growth(before: int, after: int) -> str:
    return f"{(after - before) / before:+.0%}" if before else "n/a"
