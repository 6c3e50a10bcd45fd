"""What one applied event adds to the omnichannel KPIs. Pure.

The planner calls :func:`count` with the session before and after every
applied event; the sum over a batch is committed with the batch, in the same
atomic step (``HINCRBY`` on ``P:k``), so a KPI counts every fact exactly
once across workers, redeliveries and restarts. Abandonments are counted when
their notification is acknowledged (``streams/store/outbox.py``), also exactly once.

Definitions (the README's "KPIs"):

* A **cart starts** when an empty cart gets its first line, on that event's channel.
* A **resume** is an event on one channel touching a cart last changed on
  another, the first touch there since (``resume``): the moment the customer
  picks the cart up elsewhere. Also sent as ``session.resumed_elsewhere``.
* A cart **converts** when a checkout completes with lines in the cart;
  it counts by the channel the cart started on and by its channel path.
* **First touch to checkout**: from the first event since the previous
  completed checkout to this one's completion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.events import AnyEvent, Channel, CheckoutCompletedEvent
from schemas.session import Session

ChannelPair = tuple[Channel, Channel]
# Path labels name at most this many channels; longer paths end in ">+".
PATH_HOPS = 3
# Upper bounds (seconds) of the first-touch-to-checkout histogram, in Redis and Prometheus.
TTC_BUCKETS: tuple[float, ...] = (
    60,
    300,
    900,
    1800,
    3600,
    7200,
    14400,
    43200,
    86400,
    259200,
    604800,
    2592000,
)


@dataclass
class KpiDelta:
    """KPI increments of some applied events (or of acknowledged abandonments)."""

    carts_started: Counter[Channel] = field(default_factory=Counter)
    checkouts: Counter[Channel] = field(default_factory=Counter)
    converted: Counter[tuple[Channel, str]] = field(default_factory=Counter)
    abandoned: Counter[tuple[Channel, str]] = field(default_factory=Counter)
    resumes: Counter[ChannelPair] = field(default_factory=Counter)
    first_touch_to_checkout: list[float] = field(default_factory=list)

    def add(self, other: KpiDelta) -> None:
        """Add ``other`` into this delta."""
        self.carts_started.update(other.carts_started)
        self.checkouts.update(other.checkouts)
        self.converted.update(other.converted)
        self.abandoned.update(other.abandoned)
        self.resumes.update(other.resumes)
        self.first_touch_to_checkout.extend(other.first_touch_to_checkout)

    def fields(self) -> Counter[str]:
        """The increments of the Redis KPI hash (``P:k``) this delta stands for."""
        out: Counter[str] = Counter()
        for ch, n in self.carts_started.items():
            out[f"carts_started:{ch.value}"] += n
        for ch, n in self.checkouts.items():
            out[f"checkouts:{ch.value}"] += n
        for (start, path), n in self.converted.items():
            out[f"converted:{start.value}"] += n
            out[f"converted_path:{path}"] += n
        for (start, path), n in self.abandoned.items():
            out[f"abandoned:{start.value}"] += n
            out[f"abandoned_path:{path}"] += n
        for (a, b), n in self.resumes.items():
            out[f"resumes:{a.value}:{b.value}"] += n
        for seconds in self.first_touch_to_checkout:
            out[f"ttc:{ttc_bucket(seconds)}"] += 1
            out["ttc_count"] += 1
            out["ttc_sum_ms"] += round(seconds * 1000)
        return +out


def count(out: KpiDelta, before: Session, after: Session, event: AnyEvent) -> ChannelPair | None:
    """Add to ``out`` what applying ``event`` to ``before`` (giving ``after``) adds to the KPIs.

    Returns the resume it was, if any (:func:`resume`). Adds in place: the
    planner calls this for every applied event.
    """
    if not before.cart and after.cart:
        out.carts_started[event.channel] += 1
    pair = resume(before, event)
    if pair is not None:
        out.resumes[pair] += 1
    if isinstance(event, CheckoutCompletedEvent):
        out.checkouts[event.channel] += 1
        if before.cart:
            path = [*before.cart_path, event.channel]
            out.converted[(start_channel(before.cart_path, event.channel), path_label(path))] += 1
        first = before.first_touch_at or event.occurred_at
        out.first_touch_to_checkout.append(max(0.0, (event.occurred_at - first).total_seconds()))
    return pair


def abandonment(session: Session) -> KpiDelta:
    """What one abandoned cart adds to the KPIs."""
    out = KpiDelta()
    fallback = session.last_channel or Channel.WEB
    start = start_channel(session.cart_path, fallback)
    out.abandoned[(start, path_label(session.cart_path or [fallback]))] += 1
    return out


def resume(before: Session, event: AnyEvent) -> ChannelPair | None:
    """(from, to) if ``event`` picks up on its channel a cart last changed on another.

    Only the first touch on another channel counts: the session's previous
    event must have been on the channel that last changed the cart.
    """
    if not before.cart:
        return None
    # max() keeps the first of equals: ties go to the line listed first.
    origin = max(before.cart, key=lambda line: line.updated_at).channel
    if event.channel == origin or before.last_channel != origin:
        return None
    return (origin, event.channel)


def start_channel(path: list[Channel], fallback: Channel) -> Channel:
    """The channel a cart started on: the first of its path."""
    return path[0] if path else fallback


def path_label(path: Iterable[Channel]) -> str:
    """A bounded label for a channel path: distinct channels in order, at most ``PATH_HOPS``."""
    hops = list(dict.fromkeys(path))
    label = ">".join(ch.value for ch in hops[:PATH_HOPS])
    return label + ">+" if len(hops) > PATH_HOPS else label


def ttc_bucket(seconds: float) -> str:
    """The histogram bucket (its upper bound, or ``inf``) of a first-touch-to-checkout time."""
    for bound in TTC_BUCKETS:
        if seconds <= bound:
            return str(int(bound))
    return "inf"
