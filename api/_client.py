"""A Python client of the bulkex WebSocket API.

    async with Client(url, key_id, secret) as client:        # connects and logs in
        book = await client.subscribe_book("RB-HRB400E-20")    # local book, kept by seq, verified by checksum
        answer = await client.place_order("RB-HRB400E-20", "buy", "3500.00", 2)
        await client.cancel_order(answer["order_id"])

The local book applies deltas in sequence; a gap (seq != last + 1, or a
heartbeat showing a later seq) or a checksum mismatch asks for a snapshot
and ignores deltas until it arrives. Private channels remember the last seq
and the server's epoch; ``reconnect`` logs in again and resumes each one from
the next seq, so nothing is missed (REPLAY_UNAVAILABLE, after a server restart
or a long absence, is counted in ``replay_lost`` and the stream restarts).
A gap in a private stream on a live connection (seq != last + 1, or a
heartbeat showing a later seq) is counted in ``private_gaps`` and mended the
same way: the client drops that message and every later one, unsubscribes and
subscribes again from last + 1 with the epoch, and the server replays the
missed messages in order.

Recovery never gives up quietly: a book's snapshot request and a stream's
repair that the server refuses (RATE_LIMITED, say) are retried with a growing
pause (RETRY_FIRST_S up to RETRY_MAX_S) while the connection lasts, and a
heartbeat starts them again for any book still not synced. When the connection
closes every book turns unsynced (``connected`` is False). A subscription the
server refuses is not remembered; on ``reconnect`` each remembered one is
tried, a refused one is dropped (its book stays unsynced) and the first
refusal is raised after all were tried. An exception in ``on_message`` is
logged and never stops the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from sortedcontainers import SortedDict
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api._keys import derive_signing_key, sign_login
from api._limits import CHECKSUM_LEVELS
from api._marketdata import book_checksum

__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "Client", "LocalBook", "RequestError"]

log = logging.getLogger("bulkex.client")

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
"""The pause before a refused snapshot request or stream repair is tried again, doubling up to the maximum."""

_PRIVATE = frozenset(("orders", "executions", "balances", "receipts", "deliveries"))


class RequestError(Exception):
    """The server answered a request with an error."""

    def __init__(self, code: str, message: str, seq: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.seq = seq


class LocalBook:
    """One instrument's full-depth book as the client sees it."""

    def __init__(self, instrument: str) -> None:
        self.instrument = instrument
        self.bids: SortedDict = SortedDict()  # Decimal price -> (wire price, lots); best = last
        self.asks: SortedDict = SortedDict()  # best = first
        self.seq = 0
        self.synced = False
        self.gaps = 0
        self.checksum_failures = 0
        self.snapshots = 0

    def levels(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """(bids best first, asks best first) as (wire price, lots)."""
        return [self.bids[p] for p in reversed(self.bids)], [self.asks[p] for p in self.asks]

    def checksum(self) -> int:
        bids = [self.bids[p] for p in itertools.islice(reversed(self.bids), CHECKSUM_LEVELS)]
        asks = [self.asks[p] for p in itertools.islice(self.asks, CHECKSUM_LEVELS)]
        return book_checksum(bids, asks)

    def _set(self, side: SortedDict, price: str, lots: int) -> None:
        key = Decimal(price)
        if lots:
            side[key] = (price, lots)
        else:
            side.pop(key, None)

    def apply(self, message: dict[str, Any]) -> bool:
        """Apply a book message; False when the book needs a snapshot (gap or checksum mismatch)."""
        if message["snapshot"]:
            self.bids.clear()
            self.asks.clear()
            self.snapshots += 1
        elif not self.synced:
            return True  # waiting for the snapshot already asked for
        elif message["seq"] != self.seq + 1:
            self.gaps += 1
            self.synced = False
            return False
        for price, lots in message["bids"]:
            self._set(self.bids, price, lots)
        for price, lots in message["asks"]:
            self._set(self.asks, price, lots)
        self.seq = message["seq"]
        if self.checksum() != message["checksum"]:
            self.checksum_failures += 1
            self.synced = False
            return False
        self.synced = True
        return True


class Client:
    def __init__(
        self,
        url: str,
        key_id: str | None = None,
        secret: str | None = None,
        *,
        cancel_on_disconnect: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.url = url
        self.key_id = key_id
        self.signing_key = derive_signing_key(key_id, secret) if key_id is not None and secret is not None else b""
        self.cancel_on_disconnect = cancel_on_disconnect
        self.ssl_context = ssl_context
        self.on_message = on_message
        self.clock_ms = clock_ms if clock_ms is not None else (lambda: time.time_ns() // 1_000_000)
        self.ws: ClientConnection | None = None
        self.session: dict[str, Any] = {}
        self.epoch: str | None = None
        self.books: dict[str, LocalBook] = {}
        self.public: set[tuple[str, str]] = set()  # (channel, instrument) subscriptions other than book
        self.private_seq: dict[str, int] = {}  # channel -> last seq received
        self.private_messages: dict[str, list[dict[str, Any]]] = {}
        self.private_accounts: dict[str, str] = {}  # channel -> the account named (staff, bank)
        self.replay_lost = 0
        self.last_heartbeat: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._fresh: set[str] = set()  # private channels whose next subscribe answer sets the seq
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.private_gaps = 0  # gaps seen in private streams on a live connection (each mended by a replay)
        self._mending: dict[str, asyncio.Task[None]] = {}  # private channel -> its resubscription from last + 1
        self._resyncing: dict[str, asyncio.Task[None]] = {}  # instrument -> its snapshot request (retried)
        self.subscription_errors: list[tuple[str, str, str]] = []  # (channel, instrument or account, code) dropped

    @property
    def connected(self) -> bool:
        """The connection is open and its reader runs (books can be synced only then)."""
        return self.ws is not None and self._reader is not None and not self._reader.done()

    # -------------------------------------------------------- connection

    async def connect(self) -> None:
        """Open the connection, log in (when a key is given) and resume every subscription."""
        for book in self.books.values():
            book.synced = False  # until the snapshot of this connection
        self.ws = await connect(self.url, ssl=self.ssl_context, max_size=None, compression=None)
        self._reader = asyncio.get_running_loop().create_task(self._read(self.ws))
        refused: list[RequestError] = []
        if self.key_id is not None:
            self.session = await self.login()
            epoch = self.session["epoch"]
            for channel in list(self.private_seq):
                try:
                    await self._subscribe_private(channel, resume=epoch == self.epoch, recovering=True)
                except RequestError as exc:
                    refused.append(exc)
                    self.subscription_errors.append((channel, self.private_accounts.get(channel, ""), exc.code))
                    self.private_seq.pop(channel, None)
                    self.private_accounts.pop(channel, None)
            self.epoch = epoch
        for instrument in list(self.books):
            try:
                await self.request("subscribe", channel="book", instrument=instrument)
            except RequestError as exc:
                refused.append(exc)
                self.subscription_errors.append(("book", instrument, exc.code))
                del self.books[instrument]
        for channel, instrument in list(self.public):
            try:
                await self.request("subscribe", channel=channel, instrument=instrument)
            except RequestError as exc:
                refused.append(exc)
                self.subscription_errors.append((channel, instrument, exc.code))
                self.public.discard((channel, instrument))
        if refused:
            raise refused[0]

    async def login(self) -> dict[str, Any]:
        assert self.key_id is not None
        timestamp_ms = self.clock_ms()
        nonce = secrets.token_hex(16)
        return await self.request(
            "login",
            key_id=self.key_id,
            timestamp_ms=timestamp_ms,
            nonce=nonce,
            signature=sign_login(self.key_id, self.signing_key, timestamp_ms, nonce),
            cancel_on_disconnect=self.cancel_on_disconnect,
        )

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.ws = None

    async def reconnect(self) -> None:
        """Close (if open), connect again, log in and resume."""
        await self.close()
        await self.connect()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------- requests

    async def send_raw(self, text: str | bytes) -> None:
        assert self.ws is not None, "connect first"
        await self.ws.send(text)

    async def request(self, request_type: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its answer: the result, or RequestError."""
        assert self.ws is not None, "connect first"
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        body = {"type": request_type, "id": request_id}
        body.update({k: v for k, v in fields.items() if v is not None})
        try:
            await self.ws.send(orjson.dumps(body), text=True)
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def place_order(
        self,
        instrument: str,
        side: str,
        price: str | None,
        quantity_lots: int,
        *,
        client_order_id: str | None = None,
        time_in_force: str = "gtc",
        order_type: str = "limit",
        post_only: bool = False,
        stp_mode: str = "cancel_newest",
        receipts: tuple[str, ...] | list[str] = (),
    ) -> dict[str, Any]:
        """Enter an order; a sell order may name the warehouse receipts it locks (`receipts`)."""
        extra: dict[str, Any] = {"receipts": list(receipts)} if receipts else {}
        return await self.request(
            "new_order",
            instrument=instrument,
            client_order_id=client_order_id or secrets.token_hex(8),
            side=side,
            price=price,
            quantity_lots=quantity_lots,
            time_in_force=time_in_force,
            order_type=order_type,
            post_only=post_only,
            stp_mode=stp_mode,
            **extra,
        )

    async def cancel_order(self, order_id: int) -> dict[str, Any]:
        return await self.request("cancel_order", order_id=order_id)

    async def amend_order(self, order_id: int, price: str, quantity_lots: int) -> dict[str, Any]:
        return await self.request("amend_order", order_id=order_id, price=price, quantity_lots=quantity_lots)

    async def mass_cancel(self, instrument: str | None = None) -> dict[str, Any]:
        return await self.request("mass_cancel", instrument=instrument)

    async def balances(self, account: str | None = None) -> list[dict[str, Any]]:
        """Balances and open holds: the key's member's (a bank or staff may name `account`)."""
        balances: list[dict[str, Any]] = (await self.request("balances", account=account))["balances"]
        return balances

    async def receipts(self, **filters: Any) -> list[dict[str, Any]]:
        receipts: list[dict[str, Any]] = (await self.request("receipts", **filters))["receipts"]
        return receipts

    async def deals(self, **filters: Any) -> list[dict[str, Any]]:
        deals: list[dict[str, Any]] = (await self.request("deals", **filters))["deals"]
        return deals

    async def subscribe_book(self, instrument: str) -> LocalBook:
        book = self.books.get(instrument)
        new = book is None
        if book is None:  # registered before the request: its snapshot may come right after the answer
            book = self.books[instrument] = LocalBook(instrument)
        try:
            await self.request("subscribe", channel="book", instrument=instrument)
        except BaseException:
            if new:
                self.books.pop(instrument, None)
            raise
        return book

    async def subscribe(self, channel: str, instrument: str) -> dict[str, Any]:
        """A public channel other than book (top, trades, ticker, state); messages go to on_message."""
        result = await self.request("subscribe", channel=channel, instrument=instrument)
        self.public.add((channel, instrument))
        return result

    async def subscribe_private(self, channel: str, account: str | None = None) -> dict[str, Any]:
        """orders, executions, balances, receipts or deliveries of the key's account (staff, and a bank
        for balances, name `account`; an operator gets its warehouse's receipts and deliveries);
        messages collect in private_messages[channel] and are resumed from the next seq by
        ``reconnect``. One account per channel and client."""
        had_seq, had_account = channel in self.private_seq, self.private_accounts.get(channel)
        self.private_seq.setdefault(channel, 0)
        if account is not None:
            self.private_accounts[channel] = account
        else:
            self.private_accounts.pop(channel, None)
        try:
            result = await self._subscribe_private(channel, resume=False, recovering=False)
        except BaseException:  # refused: nothing of it remembered
            if not had_seq:
                self.private_seq.pop(channel, None)
            if had_account is None:
                self.private_accounts.pop(channel, None)
            else:
                self.private_accounts[channel] = had_account
            raise
        self.private_messages.setdefault(channel, [])
        return result

    async def _subscribe_private(self, channel: str, resume: bool, recovering: bool) -> dict[str, Any]:
        """Subscribe to `channel`: from the next seq expected when `resume` (same epoch), else (or when
        the replay is no longer available) afresh. `recovering` (a reconnect or a repair): a replay
        refused, or a new epoch after messages or with messages, counts in ``replay_lost``."""
        last = self.private_seq.get(channel, 0)
        account = self.private_accounts.get(channel)
        refused = False
        if resume and self.epoch is not None:
            try:
                return await self.request(
                    "subscribe", channel=channel, account=account, from_seq=last + 1, epoch=self.epoch
                )
            except RequestError as exc:
                if exc.code != "REPLAY_UNAVAILABLE":
                    raise
                refused = True  # messages after `last` were published and can no longer be replayed
        # A fresh stream: the answer's seq is the last one already published; new messages follow it.
        self._fresh.add(channel)
        try:
            result = await self.request("subscribe", channel=channel, account=account)
        finally:
            self._fresh.discard(channel)  # the answer set the seq (or there was none)
        # Lost to this client: what the server could not replay; after a restart (another epoch) the
        # old stream's tail (unknowable) when it had messages, and what the new one published already.
        if recovering and (refused or (not resume and (last > 0 or result["seq"] > 0))):
            self.replay_lost += 1
        return result

    # ------------------------------------------------------------- reading

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._dispatch(orjson.loads(raw))
        except ConnectionClosed:
            pass
        except Exception:  # a message this client cannot read: the connection is no longer trusted
            log.exception("the client's reader failed; closing the connection")
            await ws.close(1011, "client error")
        finally:
            if ws.close_code is not None:
                self.close_code = ws.close_code
                self.close_reason = ws.close_reason or ""
            for book in self.books.values():
                book.synced = False
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"connection closed ({self.close_code} {self.close_reason})"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in {"accepted", "error"}:
            result = message.get("result") or {}
            if kind == "accepted" and message.get("request") == "subscribe" and result.get("channel") in self._fresh:
                self._fresh.discard(result["channel"])
                self.private_seq[result["channel"]] = result["seq"]
            future = self._waiting.get(message.get("id") or "")
            if future is not None and not future.done():
                if kind == "accepted":
                    future.set_result(message["result"])
                else:
                    future.set_exception(RequestError(message["code"], message["message"], message.get("seq")))
            elif kind == "error":
                self._tell(message)
            return
        if kind == "book":
            book = self.books.get(message["instrument"])
            if book is not None and not book.apply(message):
                self._resync(book)
        elif kind in _PRIVATE:
            channel = str(kind)
            last = self.private_seq.get(channel, 0)
            if message["seq"] <= last:
                return  # already seen (a replay overlapping what arrived)
            if message["seq"] != last + 1:
                self._mend(channel)  # this and later messages come again in the replay from last + 1
                return
            self.private_seq[channel] = message["seq"]
            self.private_messages.setdefault(channel, []).append(message)
        elif kind == "heartbeat":
            self.last_heartbeat = message
            for entry in message["subscriptions"]:
                if entry["channel"] == "book":
                    book = self.books.get(entry.get("instrument") or "")
                    if book is not None and book.synced and entry["seq"] > book.seq:
                        book.gaps += 1
                        book.synced = False
                        self._resync(book)
                    elif book is not None and not book.synced:
                        self._resync(book)  # a snapshot still missing: asked again unless on its way
                elif entry["channel"] in self.private_seq and entry["seq"] > self.private_seq[entry["channel"]]:
                    self._mend(entry["channel"])  # a message lost with nothing after it yet to show the gap
        self._tell(message)

    def _tell(self, message: dict[str, Any]) -> None:
        """Hand a message to ``on_message``; its failure is logged and reading goes on."""
        if self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:
                log.exception("on_message failed on a %r message", message.get("type"))

    def _mend(self, channel: str) -> None:
        """A gap in a private stream: resubscribe from the next seq expected (once per gap; the
        messages that arrive meanwhile are dropped, the replay brings them again in order)."""
        if self.ws is None or channel in self._fresh or channel in self._mending:
            return
        self.private_gaps += 1
        task = asyncio.get_running_loop().create_task(self._resubscribe(channel))
        self._mending[channel] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _resubscribe(self, channel: str) -> None:
        """Unsubscribe and subscribe again from the next seq expected (``_retrying``)."""
        subscribed = True

        async def attempt() -> None:
            nonlocal subscribed
            if subscribed:
                try:
                    await self.request("unsubscribe", channel=channel, account=self.private_accounts.get(channel))
                except RequestError as exc:
                    if exc.code != "NOT_SUBSCRIBED":
                        raise
                subscribed = False
            await self._subscribe_private(channel, resume=True, recovering=True)

        try:
            await self._retrying(f"repair of the {channel} stream", attempt, lambda: True)
        finally:
            del self._mending[channel]

    def _resync(self, book: LocalBook) -> None:
        """Ask for a snapshot of `book` (once at a time; a refusal is asked again after a pause)."""
        if not self.connected or book.instrument in self._resyncing:
            return
        task = asyncio.get_running_loop().create_task(self._snapshot(book))
        self._resyncing[book.instrument] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _snapshot(self, book: LocalBook) -> None:
        async def attempt() -> None:  # the snapshot message follows the answer (a heartbeat asks again if it fails)
            await self.request("snapshot", channel="book", instrument=book.instrument)

        try:
            await self._retrying(f"snapshot of {book.instrument}", attempt, lambda: not book.synced)
        finally:
            del self._resyncing[book.instrument]

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[None]], wanted: Callable[[], bool]) -> None:
        """Run `attempt` while the connection lasts and `wanted()` holds, until the server takes it: a
        refusal is tried again after a pause, RETRY_FIRST_S doubling up to RETRY_MAX_S."""
        pause_s = RETRY_FIRST_S
        while self.connected and wanted():
            try:
                await attempt()
                return
            except RequestError as exc:
                log.warning("%s refused (%s): again in %.2f s", what, exc.code, pause_s)
            except ConnectionError:
                return
            await asyncio.sleep(pause_s)
            pause_s = min(RETRY_MAX_S, pause_s * 2)
