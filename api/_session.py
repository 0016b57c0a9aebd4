"""One WebSocket connection: its bounded send queue, its limits and its session.

Messages to a client go through ``push`` into a queue drained by one writer
task; when the queue holds ``max_send_queue_messages`` the client is a slow
consumer: nothing more is queued and the connection is closed with code
CLOSE_SLOW_CONSUMER and the reason "slow consumer".
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from api._keys import ApiKey
from api._limits import CLOSE_SLOW_CONSUMER, GatewayLimits, TokenBucket

__all__ = ["Connection"]


class Connection:
    """A client connection (anonymous until it logs in)."""

    def __init__(self, ws: ServerConnection, limits: GatewayLimits, now_s: float, number: int) -> None:
        self.ws = ws
        self.limits = limits
        self.number = number
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closing = False
        self.close_reason = ""
        self.bucket = TokenBucket(limits.connection_rate_per_s, limits.connection_burst, now_s)
        self.key: ApiKey | None = None
        self.session_id = ""
        self.cancel_on_disconnect = False
        self.in_flight: set[str] = set()  # request ids awaiting their answer
        self.pending_commands = 0
        # (channel, instrument or account) -> True
        self.subscriptions: dict[tuple[str, str], bool] = {}
        self.writer: asyncio.Task[None] | None = None

    @property
    def account(self) -> str:
        """The member account of a trader session ('' otherwise)."""
        key = self.key
        return key.subject if key is not None and key.role == "trader" else ""

    def push(self, data: bytes) -> None:
        if self.closing:
            return
        queue = self.queue
        if len(queue) >= self.limits.max_send_queue_messages:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        queue.append(data)
        if len(queue) == 1:
            self.wake.set()

    def close(self, code: int, reason: str) -> None:
        """Stop queueing and close the connection (without waiting for the queue to drain)."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason
        self.queue.clear()
        asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def run_writer(self) -> None:
        queue = self.queue
        wake = self.wake
        send = self.ws.send
        try:
            while True:
                await wake.wait()
                wake.clear()
                while queue:
                    await send(queue.popleft(), text=True)
        except ConnectionClosed:
            pass

    async def drain(self, timeout_s: float) -> None:
        """Wait until the send queue is empty (at most `timeout_s`)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.queue and not self.closing and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    def describe(self) -> dict[str, Any]:
        key = self.key
        return {"number": self.number, "key_id": key.key_id if key else None, "queued": len(self.queue)}
