"""The WebSocket gateway in front of the sequencer.

    client ──frame──► GatewayConnection.data_received: the frame read and
                      unmasked there (no reader task; unusual frames go whole
                      to websockets) ──► Gateway.on_frame: size, JSON and schema
                      in one pass, rate limits, login and role, handler
           handler ──► core command, queued for this pass of the loop
           end of the pass ──► Sequencer.submit_batch (one queue operation, one ticket)
    writer threads: apply, journal, commit ──► listener(batch)
           ──call_soon_threadsafe──► Gateway._on_batch (event loop):
                      market data, private streams, read models (balances,
                      receipts, deals), then each command's answer
           ──► Connection.push ──► Outbox: one socket write per connection
                      per pass of the loop

No WebSocket extension is negotiated (``compression=None``): permessage-deflate
costs CPU per frame and memory per connection for messages of a few hundred
bytes (docs/protocol.md).

Every request gets exactly one answer. A command is answered only after its
journal commit. An unexpected exception while a request is handled (a
programming error) is logged and answered INTERNAL_ERROR (with the seq when
the command was sequenced); the connection stays open. Frames that are not
requests (malformed JSON, too large, binary) take a token of the
connection's rate limit as requests do.

Work is batched at each hand-over: one ``submit_batch`` per
pass of the loop (not one queue operation and thread wake-up per command, nor
a ticket per command: the answers come from the listener),
one ``call_soon_threadsafe`` per committed batch, one write per connection
per pass. A valid frame is decoded and validated in one pydantic pass
(``REQUESTS.parse_json``); anything else is decoded step by step so that its
error is the documented one.

Graceful shutdown (``GatewayServer.stop``): stop listening, answer new
requests UNAVAILABLE, wait for every submitted command's answer, let the
send queues drain, close the connections (1001, applying cancel-on-
disconnect), then close the sequencer, which commits whatever is queued.
Nothing acknowledged is lost: an answer is only ever sent after its commit.

Cancel-on-disconnect is per session: a session that asked for it remembers the
ids of the orders it entered that rested (``Gateway.entered``); when it closes,
those still open are cancelled, one CancelOrder each, submitted as one internal
group (again while the sequencer's queue is full: INTERNAL_RETRY_FIRST_S). An
order of it still on its way to the sequencer is cancelled when its answer
comes. The member's other sessions keep their orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from api import _actions, _operations  # noqa: F401  (register the money, goods and staff action handlers)
from api._errors import ApiError, ErrorCode, error_message
from api._handlers import HANDLERS, Handler, Submit
from api._keys import ApiKey, KeyStore
from api._limits import CLOSE_GOING_AWAY, CLOSE_POLICY, GatewayLimits, TokenBucket
from api._marketdata import MarketData
from api._private import PrivateStreams
from api._protocol import CHANNELS, PRIVATE_CHANNELS, REQUESTS
from api._queries import Queries
from api._session import Connection, GatewayConnection, Outbox
from api._views import Views
from exchange import (
    COLLECTOR_CHECK_S,
    DEFAULT_CALENDAR,
    Ack,
    Core,
    Freezer,
    QueueFull,
    Sequencer,
    Settings,
    TradingCalendar,
    WriterProcess,
    WriterStopped,
    load_calendar,
    load_instruments,
    serving_process,
    session_commands,
)
from matching import make_cancel_order

__all__ = [
    "SCHEDULE_INTERVAL_S",
    "SWEEP_AFTER_CYCLE_HINTS",
    "Gateway",
    "GatewayServer",
    "run_server",
    "serve",
]

log = logging.getLogger("bulkex.gateway")

SCHEDULE_INTERVAL_S = 1.0
"""How often the trading-session schedule is compared with the instruments' states."""
WATCHDOG_INTERVAL_S = 0.2
"""How often the gateway checks that the sequencer still runs while commands wait for answers."""
SWEEP_AFTER_CYCLE_HINTS = 10_000
"""Connections closed and requests answered by a task (the gateway's sources of garbage cycles:
asyncio's and the WebSocket library's objects) after which the loop sweeps (exchange/_gc.py)."""
SHUTDOWN_DRAIN_S = 5.0
INTERNAL_RETRY_FIRST_S = 0.01
INTERNAL_RETRY_MAX_S = 0.5
"""The gateway's own commands (the schedule's state changes, cancel-on-disconnect) refused because
the sequencer's queue is full wait and are submitted again, oldest first, after this long (doubling
up to the maximum) until they are taken or the writer stops: a session that asked to have its
orders cancelled when it goes never keeps them because the exchange was busy at that moment."""
"""How long shutdown waits for answers and send queues before closing connections."""
ORDER_OWNERS_PRUNE_AT = 65_536
"""Owners of resting orders the gateway remembers (an amend's price is read against the instrument of
the caller's own order only) before it forgets those of orders no longer open; while the open ones
alone reach it, twice as many."""
SESSION_ORDERS_PRUNE_AT = 1_024
"""Order ids a cancel-on-disconnect session remembers before it forgets those of orders no longer
open; while the open ones alone reach it, twice as many."""
_CST = timedelta(hours=8)
_dumps = orjson.dumps
_loads = orjson.loads
T = TypeVar("T")


class BatchFollower(Protocol):
    """A read model the gateway keeps from the committed batches (market data, private streams,
    views): ``apply_batch`` is called with each batch before its requests are answered."""

    def apply_batch(self, batch: Sequence[tuple[Any, Ack]]) -> None: ...


class Gateway:
    """Sessions, requests and feeds; lives on one event loop."""

    def __init__(
        self,
        sequencer: Sequencer | WriterProcess,
        keys: KeyStore,
        queries: Queries,
        limits: GatewayLimits,
        loop: asyncio.AbstractEventLoop,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.sequencer = sequencer
        self.keys = keys
        self.queries = queries
        self.limits = limits
        self.loop = loop
        self.clock_ns = clock_ns
        self.calendar: TradingCalendar = DEFAULT_CALENDAR  # the instruments file's (GatewayServer.start)
        self.market = MarketData()
        self.private = PrivateStreams(self.price, limits.private_ring_messages, limits.private_replay_messages)
        self.views = Views(self.price, self.private)
        # fed each committed batch in this order, each on its own: one that fails is logged and the
        # batch's requests are answered all the same (see _on_batch)
        self.followers: list[BatchFollower] = [self.market, self.private, self.views]
        self.connections: set[Connection] = set()
        self.sessions: dict[str, set[Connection]] = {}
        self.key_buckets: dict[str, TokenBucket] = {}
        self.nonces: dict[str, dict[str, int]] = {}
        self.parsed_prices: dict[str, dict[str, int]] = {}  # symbol -> wire price -> ticks (api._handlers._ticks)
        self.order_accounts: dict[int, str] = {}  # resting order id -> its account (see entered)
        self._owners_prune_at = ORDER_OWNERS_PRUNE_AT
        # id(command) -> (connection, request id, request type, finish, command)
        self.pending: dict[int, tuple[Connection, str, str, Callable[[Ack], dict[str, Any]], Any]] = {}
        self.internal: set[asyncio.Future[None]] = set()
        # internal groups refused QueueFull, oldest first, with their futures (see INTERNAL_RETRY_FIRST_S)
        self.internal_waiting: deque[tuple[tuple[Any, ...], asyncio.Future[None]]] = deque()
        self._internal_retry_s = INTERNAL_RETRY_FIRST_S
        self._internal_retry: asyncio.TimerHandle | None = None
        self._to_submit: list[Any] = []  # commands of this loop pass, submitted together at its end
        self.outbox = Outbox(loop)
        self.stopping = False
        self.cycle_hints = 0  # connections closed and requests answered by a task since the last sweep
        self._connection_number = 0
        self._idle: asyncio.Event = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------ helpers

    def price(self, symbol: str, price_ticks: int) -> str:
        return self.market.instruments[symbol].instrument.ticks_to_price(price_ticks)

    def order_instrument(self, account: str, order_id: int) -> str | None:
        """The instrument of `account`'s open order `order_id`; None for any other id: another
        member's order is answered exactly as one that does not exist (docs/protocol.md)."""
        if self.order_accounts.get(order_id) != account:
            return None
        return self.private.open_orders.get(order_id)

    def entered(self, conn: Connection, order_id: int) -> None:
        """A new order of `conn` rests as `order_id` (new_order's finish, once the batch's events are
        folded into the read models): remember its owner and, for a cancel-on-disconnect session,
        that this session entered it; a session already gone has it cancelled at once."""
        owners = self.order_accounts
        owners[order_id] = conn.account
        if len(owners) >= self._owners_prune_at:
            open_orders = self.private.open_orders
            self.order_accounts = owners = {i: a for i, a in owners.items() if i in open_orders}
            self._owners_prune_at = max(ORDER_OWNERS_PRUNE_AT, 2 * len(owners))
        if not conn.cancel_on_disconnect:
            return
        if conn in self.connections:
            mine = conn.entered_orders
            mine.add(order_id)
            if len(mine) >= max(conn.entered_prune_at, SESSION_ORDERS_PRUNE_AT):
                open_orders = self.private.open_orders
                conn.entered_orders = mine = {i for i in mine if i in open_orders}
                conn.entered_prune_at = 2 * len(mine)
        elif order_id in self.private.open_orders and self.sequencer.running:
            self.submit_internal_group([make_cancel_order(conn.account, order_id)])

    def load_orders(self, core: Core) -> None:
        """The resting orders of the recovered core (before the writer thread starts): their owners,
        and their instruments for an amend's price."""
        open_orders = self.private.open_orders
        owners = self.order_accounts
        for order_id, order in core.matching.orders.items():
            open_orders[order_id] = order.instrument
            owners[order_id] = order.account
        self._owners_prune_at = max(ORDER_OWNERS_PRUNE_AT, 2 * len(owners))

    async def lookup_key(self, key_id: str) -> ApiKey | None:
        return await asyncio.to_thread(self.keys.get, key_id)

    async def query(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def use_nonce(self, key_id: str, nonce: str, now_ms: int) -> None:
        """Remember a login nonce for twice the allowed skew; a repeat is REPLAYED_NONCE."""
        seen = self.nonces.setdefault(key_id, {})
        horizon = 2 * self.limits.auth_max_skew_ms
        if len(seen) >= self.limits.max_nonces_per_key:
            for old, at_ms in list(seen.items()):
                if now_ms - at_ms > horizon:
                    del seen[old]
        if nonce in seen:
            raise ApiError(ErrorCode.REPLAYED_NONCE, nonce)
        if len(seen) >= self.limits.max_nonces_per_key:
            raise ApiError(ErrorCode.KEY_RATE_LIMITED, "too many logins with this key; wait a minute")
        seen[nonce] = now_ms

    def answer(self, conn: Connection, request_id: str, request_type: str, result: dict[str, Any]) -> None:
        conn.answered += 1
        conn.push(_dumps({"type": "accepted", "id": request_id, "request": request_type, "result": result}))

    def error(
        self, conn: Connection, request_id: str | None, code: ErrorCode, detail: str = "", seq: int | None = None
    ) -> None:
        body: dict[str, Any] = {"type": "error", "id": request_id, "code": code.value,
                                "message": error_message(code, detail)}  # fmt: skip
        if seq is not None:
            body["seq"] = seq
        conn.answered += 1
        conn.push(_dumps(body))

    # ------------------------------------------------------------- frames

    def on_frame(self, conn: Connection, message: str | bytes) -> None:
        """One frame: its answer, or its request's handler (which answers now or later). Never
        raises: an unexpected exception is logged and answered INTERNAL_ERROR, unless the request
        was answered already (a handler that answers itself and fails afterwards)."""
        answered = conn.answered
        request: Any = None
        request_id: str | None = None
        try:
            limits = self.limits
            now_s = time.monotonic()
            if isinstance(message, bytes):
                if not conn.bucket.take(now_s):
                    self.error(conn, None, ErrorCode.RATE_LIMITED)
                    return
                self.error(conn, None, ErrorCode.BINARY_FRAME)
                return
            if len(message) > limits.max_message_bytes or (
                len(message) * 4 > limits.max_message_bytes and len(message.encode()) > limits.max_message_bytes
            ):
                if not conn.bucket.take(now_s):  # garbage counts as a request does
                    self.error(conn, None, ErrorCode.RATE_LIMITED)
                    return
                self.error(conn, None, ErrorCode.MESSAGE_TOO_LARGE, f"at most {limits.max_message_bytes} bytes")
                return
            # Fast path: a valid request is decoded and validated in one pass. Anything else takes the
            # step-by-step path below, which tells which error it is.
            try:
                request = REQUESTS.parse_json(message)
            except ValidationError:
                request = None
            if request is not None:
                request_type: str = request.type
                if not conn.bucket.take(now_s):
                    self.error(conn, request.id, ErrorCode.RATE_LIMITED)
                    return
                handler = HANDLERS.handlers.get(request_type)
                if handler is None:
                    self.error(conn, request.id, ErrorCode.UNKNOWN_TYPE, repr(request_type)[:80])
                    return
                self._dispatch(conn, request, request_type, handler, now_s)
                return
            try:
                data = _loads(message)
            except orjson.JSONDecodeError as exc:
                if not conn.bucket.take(now_s):
                    self.error(conn, None, ErrorCode.RATE_LIMITED)
                    return
                self.error(conn, None, ErrorCode.MALFORMED_JSON, str(exc)[:200])
                return
            if type(data) is not dict:
                if not conn.bucket.take(now_s):
                    self.error(conn, None, ErrorCode.RATE_LIMITED)
                    return
                self.error(conn, None, ErrorCode.MALFORMED_JSON, "expected a JSON object")
                return
            raw_id = data.get("id")
            if type(raw_id) is str and 1 <= len(raw_id) <= 64 and _PRINTABLE_ID(raw_id):
                request_id = raw_id  # (never echo an id the protocol's RequestId pattern refuses)
            if not conn.bucket.take(now_s):
                self.error(conn, request_id, ErrorCode.RATE_LIMITED)
                return
            raw_type = data.get("type")
            model = REQUESTS.models.get(raw_type) if type(raw_type) is str else None
            handler = HANDLERS.handlers.get(raw_type) if type(raw_type) is str else None
            if model is None or handler is None:
                self.error(conn, request_id, ErrorCode.UNKNOWN_TYPE, repr(raw_type)[:80])
                return
            try:
                # in JSON mode, as the fast path validates: a JSON array is a valid tuple there (the
                # models are strict, so validating the decoded list would add a spurious error)
                request = model.model_validate_json(message)
            except ValidationError as exc:
                self.error(conn, request_id, _schema_code(exc), _describe(exc))
                return
            assert type(raw_type) is str
            self._dispatch(conn, request, raw_type, handler, now_s)
        except Exception as exc:
            log.exception("a frame could not be handled")
            if conn.answered == answered:
                rid = request_id if request is None else request.id
                self.error(conn, rid, ErrorCode.INTERNAL_ERROR, type(exc).__name__)

    def _dispatch(self, conn: Connection, request: Any, request_type: str, handler: Handler, now_s: float) -> None:
        """A valid request: shutdown, login and role, key rate, duplicate id, then its handler."""
        limits = self.limits
        rid: str = request.id
        if self.stopping:
            self.error(conn, rid, ErrorCode.UNAVAILABLE, "the exchange is shutting down")
            return
        key = conn.key
        if handler.roles is not None:
            if key is None:
                self.error(conn, rid, ErrorCode.NOT_AUTHENTICATED)
                return
            if key.role not in handler.roles:
                self.error(conn, rid, ErrorCode.FORBIDDEN, f"a {key.role} key may not send {request_type}")
                return
        if key is not None:
            bucket = self.key_buckets.get(key.key_id)
            if bucket is None:
                bucket = self.key_buckets[key.key_id] = TokenBucket(limits.key_rate_per_s, limits.key_burst, now_s)
            if not bucket.take(now_s):
                self.error(conn, rid, ErrorCode.KEY_RATE_LIMITED)
                return
        if rid in conn.in_flight:
            self.error(conn, rid, ErrorCode.DUPLICATE_REQUEST_ID, rid)
            return
        try:
            outcome = handler.run(self, conn, request)
        except ApiError as exc:
            self.error(conn, rid, exc.code, exc.detail, getattr(exc, "seq", None))
            return
        if outcome is None:
            return
        if type(outcome) is dict:
            self.answer(conn, rid, request_type, outcome)
        elif type(outcome) is Submit:
            self._submit(conn, rid, request_type, outcome)
        else:
            conn.in_flight.add(rid)
            task = self.loop.create_task(self._await(conn, rid, request_type, outcome))  # type: ignore[arg-type]
            task.add_done_callback(_log_failure)

    async def _await(self, conn: Connection, rid: str, request_type: str, outcome: Awaitable[dict[str, Any]]) -> None:
        self.cycle_hints += 1
        try:
            result = await outcome
        except ApiError as exc:
            self.error(conn, rid, exc.code, exc.detail)
        except Exception as exc:
            # (a failed query, the database's errors included, is the gateway failing on the request:
            # UNAVAILABLE would tell the client the exchange is stopping)
            log.exception("request %s failed", request_type)
            self.error(conn, rid, ErrorCode.INTERNAL_ERROR, type(exc).__name__)
        else:
            self.answer(conn, rid, request_type, result)
        finally:
            conn.in_flight.discard(rid)

    # ----------------------------------------------------------- commands

    def _submit(self, conn: Connection, rid: str, request_type: str, outcome: Submit) -> None:
        """Register the command as pending and queue it; the loop's pass ends with one ``submit_batch``."""
        if conn.pending_commands >= self.limits.max_pending_per_connection:
            self.error(conn, rid, ErrorCode.TOO_MANY_PENDING, f"at most {self.limits.max_pending_per_connection}")
            return
        command = outcome.command
        self.pending[id(command)] = (conn, rid, request_type, outcome.finish, command)
        conn.pending_commands += 1
        conn.in_flight.add(rid)
        self._idle.clear()
        queued = self._to_submit
        queued.append(command)
        if len(queued) == 1:
            self.loop.call_soon(self._submit_queued)

    def _submit_queued(self) -> None:
        """Hand the commands of this pass to the sequencer in one queue operation (one wake-up of its
        thread instead of one per command); they keep their order."""
        commands = self._to_submit
        if not commands:
            return
        self._to_submit = []
        sequencer = self.sequencer
        try:
            sequencer.submit_batch(commands)  # (answered from the listener: its one ticket goes unread)
            return
        except QueueFull as exc:
            self._refuse(commands, ErrorCode.BUSY, str(exc))
            return
        except WriterStopped as exc:
            self._refuse(commands, ErrorCode.UNAVAILABLE, str(exc))
            return
        except (TypeError, ValueError):
            pass  # one of them cannot be journaled: submit them one by one to answer each
        for command in commands:
            try:
                sequencer.submit(command)
            except QueueFull as exc:
                self._refuse([command], ErrorCode.BUSY, str(exc))
            except WriterStopped as exc:
                self._refuse([command], ErrorCode.UNAVAILABLE, str(exc))
            except (TypeError, ValueError) as exc:
                log.exception("a command could not be journaled")
                self._refuse([command], ErrorCode.UNAVAILABLE, f"the command could not be journaled: {exc}")

    def _refuse(self, commands: Sequence[Any], code: ErrorCode, detail: str) -> None:
        """Answer commands that never reached the sequencer (nothing was applied)."""
        pending = self.pending
        for command in commands:
            entry = pending.get(id(command))
            if entry is None or entry[4] is not command:
                continue  # already answered (the writer stopped meanwhile)
            del pending[id(command)]
            conn, rid = entry[0], entry[1]
            conn.pending_commands -= 1
            conn.in_flight.discard(rid)
            self.error(conn, rid, code, detail)
        if not pending:
            self._idle.set()

    def _fail_pending(self, reason: str) -> None:
        """The writer stopped: answer every pending command UNAVAILABLE (none of them was acknowledged)."""
        for key, (conn, rid, _type, _finish, _command) in list(self.pending.items()):
            del self.pending[key]
            conn.pending_commands -= 1
            conn.in_flight.discard(rid)
            self.error(conn, rid, ErrorCode.UNAVAILABLE, reason)
        self._idle.set()

    async def watchdog(self) -> None:
        """Notice a stopped writer (its tickets fail, no batch comes) and answer what waits."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            if self.pending and not self.sequencer.running:
                self._fail_pending("the sequencer stopped; restart the exchange to recover from the journal")

    def on_commit(self, batch: Sequence[tuple[Any, Ack]]) -> None:
        """The sequencer's listener (writer thread)."""
        self.loop.call_soon_threadsafe(self._on_batch, batch)

    def _on_batch(self, batch: Sequence[tuple[Any, Ack]]) -> None:
        for follower in self.followers:
            try:
                follower.apply_batch(batch)
            except Exception:
                # committed all the same: its requests are answered below (from the ack; an answer
                # that needs the failed read model fails on its own, INTERNAL_ERROR with the seq)
                log.exception("a read model failed on the batch up to seq %d", batch[-1][1].seq if batch else 0)
        pending = self.pending
        for command, ack in batch:
            entry = pending.pop(id(command), None)
            if entry is None or entry[4] is not command:
                if entry is not None:  # another object reused the id: put it back
                    pending[id(command)] = entry
                continue
            conn, rid, request_type, finish, _command = entry
            conn.pending_commands -= 1
            conn.in_flight.discard(rid)
            try:
                result = finish(ack)
            except ApiError as exc:
                self.error(conn, rid, exc.code, exc.detail, getattr(exc, "seq", ack.seq))
            except Exception as exc:
                # sequenced and committed, then the answer failed: the seq tells the client where to look
                log.exception("the answer to %s %r (seq %d) failed", request_type, rid, ack.seq)
                self.error(conn, rid, ErrorCode.INTERNAL_ERROR, type(exc).__name__, ack.seq)
            else:
                self.answer(conn, rid, request_type, result)
        if not pending:
            self._idle.set()

    def submit_internal(self, command: Any) -> None:
        """A command of the gateway itself (the schedule, set-up); see submit_internal_group."""
        self.submit_internal_group((command,))

    def submit_internal_group(self, commands: Sequence[Any]) -> None:
        """Commands of the gateway itself (schedule, cancel-on-disconnect), submitted as one group:
        they are sequenced together, in order, and nobody is answered (``wait_idle`` waits for
        them). Commands of clients queued in this pass go first (a cancel-on-disconnect follows the
        session's last orders). A group the sequencer refuses because its queue is full waits and
        is submitted again (INTERNAL_RETRY_FIRST_S), after the groups that were waiting before it."""
        assert commands, "an empty group"
        self._submit_queued()
        future: asyncio.Future[None] = self.loop.create_future()
        self.internal.add(future)
        future.add_done_callback(self.internal.discard)
        self.internal_waiting.append((tuple(commands), future))
        if self._internal_retry is None:
            self._submit_internal_waiting()

    def _submit_internal_waiting(self) -> None:
        """Submit the waiting internal groups, oldest first, until the queue refuses one (then try
        again later) or the writer stopped (then they are given up, logged)."""
        self._internal_retry = None
        waiting = self.internal_waiting
        loop = self.loop
        while waiting:
            commands, future = waiting[0]
            try:
                ticket = self.sequencer.submit_batch(commands)
            except QueueFull:
                delay_s = self._internal_retry_s
                if delay_s == INTERNAL_RETRY_FIRST_S:
                    log.warning("the queue is full: %d internal groups wait (%r first)", len(waiting), commands[0])
                self._internal_retry_s = min(INTERNAL_RETRY_MAX_S, delay_s * 2)
                self._internal_retry = self.loop.call_later(delay_s, self._submit_internal_waiting)
                return
            except WriterStopped as exc:
                log.warning("could not submit %d internal groups (%r first): %s", len(waiting), commands[0], exc)
                for _commands, given_up in waiting:
                    _settle(given_up)
                waiting.clear()
                return
            waiting.popleft()

            def resolved(_ticket: Any, future: asyncio.Future[None] = future) -> None:
                loop.call_soon_threadsafe(_settle, future)

            ticket.add_done_callback(resolved)
        self._internal_retry_s = INTERNAL_RETRY_FIRST_S

    def give_up_internal(self) -> None:
        """At shutdown, after the drain: internal groups still refused are not submitted (logged)."""
        if self._internal_retry is not None:
            self._internal_retry.cancel()
            self._internal_retry = None
        if self.internal_waiting:
            commands = self.internal_waiting[0][0]
            log.error("shutting down: %d internal groups were never taken by the full queue (%r first)",
                      len(self.internal_waiting), commands[0])  # fmt: skip
            for _commands, future in self.internal_waiting:
                _settle(future)
            self.internal_waiting.clear()

    # ------------------------------------------------------- connections

    def drop_subscription(self, conn: Connection, key: tuple[str, str]) -> None:
        channel, target = key
        del conn.subscriptions[key]
        if channel in PRIVATE_CHANNELS:
            self.private.unsubscribe(channel, target, conn)
        else:
            self.market.unsubscribe(channel, target, conn)

    async def handle(self, ws: ServerConnection) -> None:
        self._connection_number += 1
        conn = Connection(ws, self.limits, time.monotonic(), self._connection_number, self.outbox)
        self.connections.add(conn)
        on_frame = self.on_frame
        if isinstance(ws, GatewayConnection):
            # Complete messages come straight from the protocol; this loop first takes any that arrived
            # before (without yielding, so they keep their order), then only reassembled fragmented ones.
            ws.direct = lambda message: on_frame(conn, message)
        try:
            async for message in ws:
                on_frame(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(conn)

    def _forget(self, conn: Connection) -> None:
        self.cycle_hints += 1
        self.connections.discard(conn)
        for key in list(conn.subscriptions):
            self.drop_subscription(conn, key)
        if conn.key is not None:
            sessions = self.sessions.get(conn.key.key_id)
            if sessions is not None:
                sessions.discard(conn)
                if not sessions:
                    del self.sessions[conn.key.key_id]
            if conn.cancel_on_disconnect and conn.account and self.sequencer.running:
                # this session's orders that are still open (an order still on its way is cancelled
                # when its answer comes: Gateway.entered); the member's other sessions keep theirs
                account = conn.account
                open_orders = self.private.open_orders
                cancels = [make_cancel_order(account, i) for i in sorted(conn.entered_orders) if i in open_orders]
                conn.entered_orders = set()
                if cancels:
                    self.submit_internal_group(cancels)
        if isinstance(conn.ws, GatewayConnection):
            conn.ws.direct = None
        conn.closing = True

    # ------------------------------------------------------ periodic work

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.limits.heartbeat_interval_s)
            ts_ns = self.clock_ns()
            for conn in tuple(self.connections):
                entries = []
                for channel, target in conn.subscriptions:
                    if channel in PRIVATE_CHANNELS:
                        seq = self.private.stream(channel, target).seq
                        entries.append({"channel": channel, "account": target, "seq": seq})
                    else:
                        seq = self.market.last_seq(channel, target)
                        entries.append({"channel": channel, "instrument": target, "seq": seq})
                conn.push(_dumps({"type": "heartbeat", "ts_ns": ts_ns, "subscriptions": entries}))

    async def revocations(self) -> None:
        while True:
            await asyncio.sleep(self.limits.key_recheck_interval_s)
            key_ids = list(self.sessions)
            try:
                revoked = await asyncio.to_thread(self.keys.revoked_ids, key_ids)
            except Exception:
                log.exception("could not check key revocations")
                continue
            for key_id in revoked:
                for conn in tuple(self.sessions.get(key_id, ())):
                    conn.close(CLOSE_POLICY, "API key revoked")

    async def schedule(self) -> None:
        """Bring the instruments' states to their schedules, every SCHEDULE_INTERVAL_S: by the minute
        of the exchange's day (China Standard Time), all closed on a day the calendar does not trade."""
        asked: dict[str, int] = {}
        while True:
            now = datetime.fromtimestamp(self.clock_ns() / 1e9, UTC) + _CST
            minute = now.hour * 60 + now.minute
            trading_day = self.calendar.is_trading_day(now.date())
            current = {symbol: data.state for symbol, data in self.market.instruments.items()}
            instruments = [data.instrument for data in self.market.instruments.values()]
            for command in session_commands(instruments, current, minute, trading_day):
                if asked.get(command.instrument) != command.state:
                    asked[command.instrument] = command.state
                    self.submit_internal(command)
            for symbol, state in current.items():
                if asked.get(symbol) == state:
                    del asked[symbol]
            await asyncio.sleep(SCHEDULE_INTERVAL_S)

    async def collector(self, freezer: Freezer) -> None:
        """A serving process's sweeps where its garbage cycles come from (exchange/_gc.py): closed
        connections and requests answered by a task, SWEEP_AFTER_CYCLE_HINTS of them."""
        while True:
            await asyncio.sleep(COLLECTOR_CHECK_S)
            if self.cycle_hints >= SWEEP_AFTER_CYCLE_HINTS and freezer.may_sweep():
                self.cycle_hints = 0
                freed = freezer.sweep()
                log.info("swept the collector: %d objects freed, %d kept", freed, freezer.kept)

    async def wait_idle(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        if self.internal:
            await asyncio.wait(set(self.internal), timeout=timeout_s)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_PRINTABLE_ID = re.compile(r"[\x21-\x7e]+").fullmatch
"""An id worth echoing: the RequestId pattern of the protocol (printable ASCII, no space)."""


def _schema_code(exc: ValidationError) -> ErrorCode:
    """UNKNOWN_CHANNEL when the one thing wrong is a `channel` that names no channel (a string outside
    the protocol's channels), an `instrument` or `account` missing beside it aside; else INVALID_FIELD
    (a known channel where the request takes another kind, or a channel that is no string, is
    INVALID_FIELD)."""
    errors = exc.errors()
    unknown = False
    for error in errors:
        value = error.get("input")
        if error["loc"] == ("channel",) and error["type"] == "literal_error" and type(value) is str:
            if value in CHANNELS:
                return ErrorCode.INVALID_FIELD
            unknown = True
        elif not (error["type"] == "missing" and error["loc"] in (("instrument",), ("account",))):
            return ErrorCode.INVALID_FIELD  # (an unknown channel needs no instrument or account to be unknown)
    return ErrorCode.UNKNOWN_CHANNEL if unknown else ErrorCode.INVALID_FIELD


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)[:300]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a gateway task failed", exc_info=task.exception())


class GatewayServer:
    """The exchange: sequencer + WebSocket endpoint. ``async with GatewayServer(settings) as server``."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        limits: GatewayLimits | None = None,
        schedule: bool = True,
        list_instruments: bool = True,
    ) -> None:
        self.settings = settings
        self.host = settings.host if host is None else host
        self.requested_port = settings.port if port is None else port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.limits = limits if limits is not None else GatewayLimits()
        self.use_schedule = schedule
        self.list_instruments = list_instruments
        self.sequencer: Sequencer | WriterProcess | None = None
        self.gateway: Gateway | None = None
        self.server: Server | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0

    def _ssl(self) -> ssl.SSLContext | None:
        if self.tls_cert is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        gateway = self.gateway
        assert gateway is not None
        if gateway.stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "the exchange is shutting down\n")
        if len(gateway.connections) >= self.limits.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sequencer: Sequencer | WriterProcess
        if self.settings.writer_process:
            # started from the loop's thread: the writer process dies with the thread that started it
            sequencer = WriterProcess.from_settings(self.settings)
            sequencer.open()
        else:
            sequencer = Sequencer.from_settings(self.settings)
            await asyncio.to_thread(sequencer.open)
        try:
            if self.list_instruments:
                instruments = load_instruments(self.settings.instruments_file)
                await asyncio.to_thread(sequencer.list_on_first_start, instruments)
            keys = KeyStore(self.settings.database_url)
            queries = Queries(self.settings.database_url)
            gateway = Gateway(sequencer, keys, queries, self.limits, loop)
            if self.use_schedule:
                gateway.calendar = load_calendar(self.settings.instruments_file)
            history = await asyncio.to_thread(
                queries.trade_history, sequencer.core.matching.books, gateway.market.clock_ns()
            )  # the day's statistics and recent trades survive a restart
            gateway.market.load(sequencer.core, history)
            gateway.views.load(sequencer.core)
            gateway.load_orders(sequencer.core)
            sequencer.listeners.append(gateway.on_commit)
            sequencer.start()
        except BaseException:
            sequencer.close()
            raise
        self.sequencer = sequencer
        self.gateway = gateway
        self.server = await ws_serve(
            gateway.handle,
            self.host,
            self.requested_port,
            ssl=self._ssl(),
            max_size=self.limits.max_frame_bytes,
            process_request=self._process_request,
            compression=None,
            create_connection=GatewayConnection,
        )
        sockets = list(self.server.sockets)
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        self.tasks = [
            loop.create_task(gateway.heartbeats()),
            loop.create_task(gateway.revocations()),
            loop.create_task(gateway.watchdog()),
        ]
        if self.use_schedule:
            self.tasks.append(loop.create_task(gateway.schedule()))
        for task in self.tasks:
            task.add_done_callback(_log_failure)
        log.info("listening on %s:%d", self.host, self.port)

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls_cert is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    async def stop(self) -> None:
        gateway = self.gateway
        sequencer = self.sequencer
        if gateway is None or sequencer is None:
            return
        gateway.stopping = True
        for task in self.tasks:
            task.cancel()
        if self.server is not None:
            self.server.close(close_connections=False)
        await gateway.wait_idle(SHUTDOWN_DRAIN_S)
        await asyncio.gather(*[conn.drain(SHUTDOWN_DRAIN_S) for conn in tuple(gateway.connections)])
        for conn in tuple(gateway.connections):
            if not conn.closing:
                conn.closing = True
                await conn.ws.close(CLOSE_GOING_AWAY, "the exchange is shutting down")
        if self.server is not None:
            await self.server.wait_closed()
        await gateway.wait_idle(SHUTDOWN_DRAIN_S)  # cancel-on-disconnect commands
        gateway.give_up_internal()
        await asyncio.to_thread(sequencer.close)
        gateway.keys.close()
        gateway.queries.close()
        self.gateway = None
        self.sequencer = None

    def tune_process(self) -> None:
        """Interpreter settings for a serving process (``run_server``; the benchmarks' servers):
        ``exchange.serving_process`` (no automatic collection, a GIL_SWITCH_INTERVAL_S switch
        interval; see exchange/_gc.py) and the loop's collector task (sweeps after closed
        connections and task-answered requests)."""
        gateway, sequencer = self.gateway, self.sequencer
        assert gateway is not None, "start() the server first"
        assert sequencer is not None
        serving_process()
        task = asyncio.get_running_loop().create_task(gateway.collector(sequencer.freezer))
        task.add_done_callback(_log_failure)
        self.tasks.append(task)

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


async def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    limits: GatewayLimits | None = None,
    schedule: bool = True,
    stop: asyncio.Event | None = None,
    ready: Callable[[GatewayServer], None] | None = None,
    background: Callable[[GatewayServer], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Run the exchange until `stop` is set (or SIGINT/SIGTERM), then shut down gracefully.
    `background` (the demo's simulated traders) runs beside it and is cancelled first at shutdown."""
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(
        settings, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, limits=limits, schedule=schedule
    )
    async with server:
        server.tune_process()
        if ready is not None:
            ready(server)
        task: asyncio.Task[None] | None = loop.create_task(background(server)) if background is not None else None
        if task is not None:
            task.add_done_callback(_log_failure)
        await stop.wait()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    schedule: bool = True,
    ready: Callable[[GatewayServer], None] | None = None,
    background: Callable[[GatewayServer], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """`bulkex serve`: blocks until SIGINT/SIGTERM."""
    asyncio.run(
        run_server(
            settings,
            host=host,
            port=port,
            tls_cert=tls_cert,
            tls_key=tls_key,
            schedule=schedule,
            ready=ready,
            background=background,
        )
    )
