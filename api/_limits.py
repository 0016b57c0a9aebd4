"""Limits of the WebSocket gateway. Each is a named constant, documented in
docs/protocol.md and tested at its edge; ``GatewayLimits`` gathers them so a
deployment (or a test) can tighten them.

A limit that a request runs into is answered with an error (the connection
stays open); only the frame cap and a full send queue close the connection,
with a close code and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AUTH_MAX_SKEW_MS",
    "BOOK_TOP_LEVELS",
    "CHECKSUM_LEVELS",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_SLOW_CONSUMER",
    "CONNECTION_BURST",
    "CONNECTION_RATE_PER_S",
    "HEARTBEAT_INTERVAL_S",
    "KEY_BURST",
    "KEY_RATE_PER_S",
    "KEY_RECHECK_INTERVAL_S",
    "MAX_CONNECTIONS",
    "MAX_FRAME_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_NONCES_PER_KEY",
    "MAX_PENDING_PER_CONNECTION",
    "MAX_QUERY_ROWS",
    "MAX_SEND_QUEUE_MESSAGES",
    "MAX_SESSIONS_PER_KEY",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "PRIVATE_REPLAY_MESSAGES",
    "PRIVATE_RING_MESSAGES",
    "TRADES_KEPT",
    "GatewayLimits",
    "TokenBucket",
]

MAX_MESSAGE_BYTES = 4_096
"""A request larger than this is answered MESSAGE_TOO_LARGE (the largest valid request is a few hundred bytes)."""
MAX_FRAME_BYTES = 65_536
"""A frame larger than this closes the connection (WebSocket close code 1009) without being read."""
CONNECTION_RATE_PER_S = 2_000
"""Requests per second per connection (token bucket refill)."""
CONNECTION_BURST = 2_000
"""Requests a connection may send at once (token bucket size)."""
KEY_RATE_PER_S = 5_000
"""Requests per second per API key, over all of its connections."""
KEY_BURST = 5_000
MAX_PENDING_PER_CONNECTION = 1_000
"""Commands of one connection submitted to the sequencer and not yet answered."""
MAX_SUBSCRIPTIONS_PER_CONNECTION = 64
MAX_SEND_QUEUE_MESSAGES = 10_000
"""Messages waiting to be written to one connection; beyond it the client is a slow consumer and is disconnected."""
MAX_CONNECTIONS = 5_000
"""Open WebSocket connections per gateway; more are refused with HTTP 503 during the handshake."""
MAX_SESSIONS_PER_KEY = 20
"""Logged-in connections per API key."""
MAX_NONCES_PER_KEY = 10_000
"""Login nonces remembered per key (for twice the allowed clock skew); a key that logs in more often is refused."""
AUTH_MAX_SKEW_MS = 30_000
"""A login timestamp further than this from the server's clock is stale."""
HEARTBEAT_INTERVAL_S = 5.0
"""Every connection gets a heartbeat with the last sequence number of each of its subscriptions this often."""
PRIVATE_RING_MESSAGES = 4_096
"""Private messages kept per account and channel for replay (older ones: REPLAY_UNAVAILABLE); with orders'
messages, about 1.6 MB each when encoded (the stream had a subscriber), 3 MB when kept unencoded (it had none)."""
PRIVATE_REPLAY_MESSAGES = 500_000
"""Private messages kept for replay in all streams together, the exchange's most recent (the oldest goes
first): the replay memory's bound whatever the number of accounts. Measured about 670 bytes a message kept
unencoded under the soak's flow (orders 450, executions 220, balances 880, deliveries 1,300), so about
320 MiB when full: 100 s of private messages at 1,000 orders/s (docs/reliability.md, Soak)."""
TRADES_KEPT = 100
"""Recent trades kept per instrument for the trades channel's snapshot."""
BOOK_TOP_LEVELS = 10
"""Levels per side in the `top` channel."""
CHECKSUM_LEVELS = 10
"""Levels per side covered by the book checksum."""
KEY_RECHECK_INTERVAL_S = 5.0
"""Live sessions are checked against revocations this often; a revoked key's connections are closed (1008)."""
MAX_QUERY_ROWS = 1_000
"""Rows per query answer, at most (page with before_order_id / since_seq)."""

CLOSE_GOING_AWAY = 1001
"""Close code when the server shuts down."""
CLOSE_POLICY = 1008
"""Close code when the key of a session is revoked."""
CLOSE_SLOW_CONSUMER = 4001
"""Close code when the send queue overflows (reason: slow consumer)."""


@dataclass(frozen=True, slots=True)
class GatewayLimits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_frame_bytes: int = MAX_FRAME_BYTES
    connection_rate_per_s: float = CONNECTION_RATE_PER_S
    connection_burst: int = CONNECTION_BURST
    key_rate_per_s: float = KEY_RATE_PER_S
    key_burst: int = KEY_BURST
    max_pending_per_connection: int = MAX_PENDING_PER_CONNECTION
    max_subscriptions_per_connection: int = MAX_SUBSCRIPTIONS_PER_CONNECTION
    max_send_queue_messages: int = MAX_SEND_QUEUE_MESSAGES
    max_connections: int = MAX_CONNECTIONS
    max_sessions_per_key: int = MAX_SESSIONS_PER_KEY
    max_nonces_per_key: int = MAX_NONCES_PER_KEY
    auth_max_skew_ms: int = AUTH_MAX_SKEW_MS
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    private_ring_messages: int = PRIVATE_RING_MESSAGES
    private_replay_messages: int = PRIVATE_REPLAY_MESSAGES
    key_recheck_interval_s: float = KEY_RECHECK_INTERVAL_S

    def __post_init__(self) -> None:
        assert 0 < self.max_message_bytes <= self.max_frame_bytes, (self.max_message_bytes, self.max_frame_bytes)
        assert self.connection_rate_per_s > 0, self.connection_rate_per_s
        assert self.connection_burst >= 1, self.connection_burst
        assert self.key_rate_per_s > 0, self.key_rate_per_s
        assert self.key_burst >= 1, self.key_burst
        assert self.max_pending_per_connection >= 1, self.max_pending_per_connection
        assert self.max_subscriptions_per_connection >= 1, self.max_subscriptions_per_connection
        assert self.max_send_queue_messages >= 1, self.max_send_queue_messages
        assert self.max_connections >= 1, self.max_connections
        assert self.max_sessions_per_key >= 1, self.max_sessions_per_key
        assert self.max_nonces_per_key >= 1, self.max_nonces_per_key
        assert self.auth_max_skew_ms >= 0, self.auth_max_skew_ms
        assert self.heartbeat_interval_s > 0, self.heartbeat_interval_s
        assert self.private_ring_messages >= 1, self.private_ring_messages
        assert self.private_replay_messages >= 1, self.private_replay_messages
        assert self.key_recheck_interval_s > 0, self.key_recheck_interval_s


class TokenBucket:
    """`burst` tokens, refilled at `rate_per_s`; each request takes one.
    Time comes in as an argument (seconds, monotonic) so tests drive it."""

    __slots__ = ("burst", "rate_per_s", "tokens", "updated_s")

    def __init__(self, rate_per_s: float, burst: int, now_s: float) -> None:
        assert rate_per_s > 0, rate_per_s
        assert burst >= 1, burst
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated_s = now_s

    def take(self, now_s: float) -> bool:
        """Take one token; False (nothing taken) when the bucket is empty."""
        elapsed = now_s - self.updated_s
        if elapsed > 0:
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate_per_s)
            self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
