"""Metrics of the Matrix bridge: sends to Synapse, ghost presence, Second Me invites,
and the outbox/inbox gauges (set on scrape from PostgreSQL by gateway/app/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.infra.metrics import LATENCY_BUCKETS

MATRIX_SEND_SECONDS = Histogram(
    "city_matrix_send_seconds",
    "Latency of sending one event to Synapse (successful or not)",
    buckets=LATENCY_BUCKETS,
)
MATRIX_SEND_FAILURES = Counter(
    "city_matrix_send_failures",
    "Sends to Synapse that failed, by exception type",
    ["reason"],
)
MATRIX_PRESENCE_SENT = Counter(
    "city_matrix_presence_sent",
    "Ghost presence PUTs sent to Synapse, by why: change (a city transition), refresh,"
    " reassert (after the bridge acted as an away ghost), reconcile (Matrix differed"
    " from the city, e.g. after Redis lost its data), visible (a Matrix user can now"
    " see the ghost)",
    ["reason"],
)
MATRIX_PRESENCE_HIDDEN = Counter(
    "city_matrix_presence_hidden",
    "Ghost presence updates not sent because no real Matrix user shares a room with"
    " the ghost, by kind: change (a city transition), refresh",
    ["kind"],
)
MATRIX_PRESENCE_DEBOUNCED = Counter(
    "city_matrix_presence_debounced",
    "Ghost presence updates never sent because a newer one replaced them in the window",
)
# Matrix events the inbox refused to apply: a redaction from someone who is neither
# the author nor allowed to redact, an edit by someone else, either aimed at a
# message of another room.
MATRIX_EVENTS_IGNORED = Counter(
    "city_matrix_events_ignored",
    "Matrix redactions and edits not applied to the city, by reason",
    ["reason"],
)
SECONDME_INVITES = Counter(
    "city_secondme_invites",
    "Invites to @secondme, by outcome: accepted, rejected_room (not a DM or bridged"
    " room), rejected_limit (over the inviter's hourly cap)",
    ["outcome"],
)
# Computed on scrape from PostgreSQL (cluster-wide values, same on every process).
OUTBOX_DEPTH = Gauge("city_matrix_outbox_depth", "City messages waiting to be sent to Matrix")
OUTBOX_AGE = Gauge(
    "city_matrix_outbox_oldest_age_seconds",
    "Age of the oldest message waiting for Matrix (0 when empty)",
)
INBOX_PENDING = Gauge("city_matrix_inbox_pending", "Matrix events received but not yet processed")
INBOX_LAG = Gauge(
    "city_matrix_inbox_lag_seconds",
    "Age of the oldest unprocessed Matrix event (0 when none)",
)
