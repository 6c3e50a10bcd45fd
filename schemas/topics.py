"""Topic names and the routing of event types to topics (part of the wire contract)."""

from __future__ import annotations

CART_EVENTS = "cart-events"
BROWSE_EVENTS = "browse-events"
CHECKOUT_EVENTS = "checkout-events"
DEAD_LETTERS = "events-dlq"
# Compacted, keyed by customer: every erasure, kept for as long as events are
# retained, so a rebuild restores the erasures before it folds (streams/core/erasure.py).
ERASURES = "session-erasures"

# Compacted, one partition: the state of each dead letter an operator repaired or
# dropped (``continuity dlq``), keyed by the dead letter's source record.
DLQ_REPAIRS = "events-dlq-repairs"
# Kafka header on a replayed record: the dead letter it repairs, ``events-dlq:<p>:<o>``.
REPLAYED_FROM_HEADER = "continuity.replayed-from"

# Outbound: cart.abandoned and session.resumed_elsewhere (schemas/notifications.py),
# keyed by session key, delivered at least once with stable notification ids.
NOTIFICATIONS = "session-notifications"

# Outbound, compacted, keyed by session key, co-partitioned with the source topics:
# every committed version of every session (and of every guest's alias), with
# tombstones when a session ends or is erased (schemas/changelog.py). Downstream
# systems subscribe to it; ``continuity rebuild`` restores Redis from it.
SESSION_CHANGELOG = "session-changelog"

# Internal, co-partitioned with the source topics, kept a week: one partition's
# commit hands work to another partition's (a login merging a guest session held
# on the guest's partition into the customer's). The forward relay publishes each
# forward record on its destination partition, at least once and in order per
# origin partition; the worker folds the topic with the source topics.
SESSION_FORWARDS = "session-forwards"
# Kafka headers on a forward record: the partition whose commit wrote it (decimal)
# and its id in that partition's forwards stream (``<ms>-<seq>``). Together they
# name the record once, whatever times the relay sends it again.
FORWARD_ORIGIN_HEADER = "continuity.forward.origin"
FORWARD_SEQ_HEADER = "continuity.forward.seq"
# The key prefix (deployment) whose relay sent a forward: another group folding the
# same topics into another prefix leaves it alone.
FORWARD_SPACE_HEADER = "continuity.forward.space"

SOURCE_TOPICS: tuple[str, ...] = (CART_EVENTS, BROWSE_EVENTS, CHECKOUT_EVENTS)
# What the worker consumes and folds, one partition number of each to one worker:
# the source topics, and the forwards between partitions.
FOLDED_TOPICS: tuple[str, ...] = (*SOURCE_TOPICS, SESSION_FORWARDS)

# ``checkout.handoff_claimed`` (a POS took a session over) travels with the
# checkout it leads to, on checkout-events.
# A login changes the cart (the guest cart is merged), so it travels with cart events.
_PREFIX_TOPIC = {
    "cart.": CART_EVENTS,
    "session.": CART_EVENTS,
    "browse.": BROWSE_EVENTS,
    "checkout.": CHECKOUT_EVENTS,
}


def topic_for(event_type: str) -> str:
    """Return the topic an event of ``event_type`` is published to.

    Raises ``ValueError`` for a type outside the contract.
    """
    for prefix, topic in _PREFIX_TOPIC.items():
        if event_type.startswith(prefix):
            return topic
    raise ValueError(f"no topic for event type {event_type!r}")
