"""Private streams per account: `orders` (every change to the account's
orders) and `executions` (every fill), built here from the core's events
after each commit; `balances`, `receipts` and `deliveries`, built by the
read models (``api._views``) from the same commits through ``emit``.

Each (channel, account) stream numbers its messages 1, 2, 3, ... without
gaps, within one server run (its ``epoch``, a random id chosen at start).
Recent messages are kept in memory, so a client that reconnects within the
same epoch subscribes with ``from_seq`` = its last seq + 1 and gets everything
it missed, in order, before any new message. Two bounds: the last
``ring_size`` messages of every stream, and the last ``budget_messages`` of
all streams together (the exchange's most recent private messages, oldest out
first), so the memory kept does not grow with the number of accounts. Older
messages, or another epoch, are answered REPLAY_UNAVAILABLE: the client then
rebuilds from the ``orders`` and ``fills`` queries (the database projections)
and subscribes afresh.

A message is encoded (JSON) when it is emitted only if the stream has a
subscriber; otherwise the ring keeps its body and encodes it when a resume
replays it. So a body handed to ``emit`` is a snapshot: neither it nor
anything it contains may change afterwards (a replay must send exactly what a
live subscriber got). ``emit_built`` defers building the body as well: the
ring keeps a builder and the arguments captured at the event, which must not
change afterwards either. Setting ``encoded_at_event`` to a dict (tests do)
also encodes every deferred message when it is emitted and asserts, at each
replay, that the deferred encoding is the same.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from api._errors import ApiError, ErrorCode
from api._marketdata import Subscriber
from exchange import Ack
from matching import ACCEPTED, AMENDED, BUY, CANCELLED, REJECTED, TRADE, CancelReason, RejectCode

__all__ = ["Body", "Build", "Entry", "PrivateStreams", "Stream"]

_SIDES = ("buy", "sell")
_dumps = orjson.dumps


Body = dict[str, Any]
"""A message not yet encoded: a snapshot, never changed after it is emitted."""
Build = Callable[..., Body]
"""Builds a message's body from its seq and the arguments captured at its event: ``build(seq, *args)``."""
Entry = bytes | Body | tuple[Build, tuple[Any, ...]]
"""A message in a replay ring: encoded, its body, or its builder and arguments."""


class Stream:
    __slots__ = ("in_order", "ring", "seq", "stale", "subscribers")

    def __init__(self) -> None:
        self.seq = 0
        self.ring: deque[tuple[int, Entry]] = deque()  # the messages kept, oldest first
        self.in_order = 0  # this stream's entries in PrivateStreams.order (>= len(ring): see there)
        self.stale = 0  # (PrivateStreams._compact's count of this stream's entries still to drop)
        self.subscribers: set[Subscriber] = set()


class PrivateStreams:
    def __init__(self, price: Callable[[str, int], str], ring_size: int, budget_messages: int) -> None:
        assert ring_size >= 1, ring_size
        assert budget_messages >= 1, budget_messages
        self.price = price
        self.ring_size = ring_size
        self.budget_messages = budget_messages
        self.kept = 0  # messages in all rings together (<= budget_messages after every emit)
        # One entry per message kept since its stream's last compaction, in the order emitted: the
        # stream it went to. A stream's entries here are its newest `in_order` messages, of which its
        # ring holds the newest len(ring) (a ring's own bound drops its oldest without touching this),
        # so the oldest entry names the exchange's oldest message kept, or one already dropped.
        self.order: deque[Stream] = deque()
        self.epoch = secrets.token_hex(8)
        self.streams: dict[tuple[str, str], Stream] = {}
        self.open_orders: dict[int, str] = {}  # open order id -> instrument (to parse an amend's price)
        self.encoded_at_event: dict[tuple[str, str, int], bytes] | None = None  # the check of deferred bodies

    def stream(self, channel: str, account: str) -> Stream:
        key = (channel, account)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = Stream()
        return stream

    def _keep(self, stream: Stream, seq: int, entry: Entry) -> None:
        """Keep a message for replay within both bounds: the stream's ring size, then the budget of all
        streams (the oldest message of the exchange goes first)."""
        ring = stream.ring
        order = self.order
        ring.append((seq, entry))
        stream.in_order += 1
        order.append(stream)
        if len(ring) > self.ring_size:
            ring.popleft()
        else:
            self.kept += 1
        while self.kept > self.budget_messages:
            oldest = order.popleft()
            if oldest.in_order == len(oldest.ring):  # its oldest message is kept: it goes
                oldest.ring.popleft()
                self.kept -= 1
            oldest.in_order -= 1
        if len(order) > 2 * self.kept + 1024:
            self._compact()

    def _compact(self) -> None:
        """Drop the order's entries for messages the rings' own bound already dropped (they pile up
        while the budget is not reached); amortised: at most once per `kept` messages emitted."""
        for s in self.streams.values():
            s.stale = s.in_order - len(s.ring)
        kept: deque[Stream] = deque()
        append = kept.append
        for s in self.order:
            if s.stale:  # one of the stream's oldest entries: its message is gone
                s.stale -= 1
                s.in_order -= 1
            else:
                append(s)
        self.order = kept
        assert len(kept) == self.kept, (len(kept), self.kept)

    def emit(self, channel: str, account: str, body: Body) -> None:
        """Number `body` and publish it; `body` (and all it holds) must not change afterwards."""
        stream = self.stream(channel, account)
        seq = stream.seq = stream.seq + 1
        body["seq"] = seq
        if stream.subscribers:
            data = _dumps(body)
            # orjson's result keeps its whole output buffer (about 4 KiB) allocated: the ring, which
            # holds thousands per stream, keeps an exact-size copy (about 170 bytes for an order's)
            self._keep(stream, seq, bytes(memoryview(data)))
            for subscriber in tuple(stream.subscribers):
                subscriber.push(data)
            return
        self._keep(stream, seq, body)  # encoded if a resume replays it
        if self.encoded_at_event is not None:
            self.encoded_at_event[(channel, account, seq)] = _dumps(body)

    def emit_built(self, channel: str, account: str, build: Build, args: tuple[Any, ...]) -> None:
        """As `emit`, with the body ``build(seq, *args)`` built only when a subscriber or a replay needs
        it; `args` (and all they hold) must not change afterwards."""
        stream = self.stream(channel, account)
        seq = stream.seq = stream.seq + 1
        if stream.subscribers:
            data = _dumps(build(seq, *args))
            self._keep(stream, seq, bytes(memoryview(data)))  # (an exact-size copy: see `emit`)
            for subscriber in tuple(stream.subscribers):
                subscriber.push(data)
            return
        self._keep(stream, seq, (build, args))  # built and encoded if a resume replays it
        if self.encoded_at_event is not None:
            self.encoded_at_event[(channel, account, seq)] = _dumps(build(seq, *args))

    def _encoded(self, channel: str, account: str, seq: int, entry: Entry) -> bytes:
        if type(entry) is bytes:
            return entry
        if type(entry) is tuple:
            build, args = entry
            data = _dumps(build(seq, *args))
        else:
            assert type(entry) is dict, type(entry)
            data = _dumps(entry)
        if self.encoded_at_event is not None:
            at_event = self.encoded_at_event.get((channel, account, seq))
            if at_event is not None:  # (emitted before the check was set: nothing to compare)
                assert at_event == data, (channel, account, seq, at_event, data)
        return data

    def apply_batch(self, batch: Sequence[tuple[Any, Ack]]) -> None:
        for _command, ack in batch:
            self.apply(ack)

    def apply(self, ack: Ack) -> None:
        """The `orders` and `executions` messages of one command. Each is emitted as its builder and the
        arguments captured at the event (the event tuple itself, its ts_ns and the price function: a
        listed instrument's tick never changes), so nothing is built or encoded unless a subscriber
        or a replay needs it."""
        price = self.price
        emit_built = self.emit_built
        open_orders = self.open_orders
        ts_ns = ack.ts_ns
        for e in ack.events:
            kind = e[0]
            if kind == TRADE:
                if not e[8]:
                    open_orders.pop(e[6], None)
                if not e[11]:
                    open_orders.pop(e[9], None)
                buy_args = (e, ts_ns, price, 0)
                sell_args = (e, ts_ns, price, 1)
                emit_built("orders", e[7], _filled_body, buy_args)
                emit_built("executions", e[7], _execution_body, buy_args)
                emit_built("orders", e[10], _filled_body, sell_args)
                emit_built("executions", e[10], _execution_body, sell_args)
            elif kind == ACCEPTED:
                open_orders[e[2]] = e[4]
                emit_built("orders", e[3], _accepted_body, (e, ts_ns, price))
            elif kind == CANCELLED:
                if not e[8]:
                    open_orders.pop(e[2], None)
                emit_built("orders", e[3], _cancelled_body, (e, ts_ns, price))
            elif kind == AMENDED:
                emit_built("orders", e[3], _amended_body, (e, ts_ns, price))
            elif kind == REJECTED and e[2]:
                emit_built("orders", e[2], _rejected_body, (e, ts_ns))

    def subscribe(
        self, channel: str, account: str, subscriber: Subscriber, from_seq: int | None, epoch: str | None
    ) -> int:
        """Subscribe; replay from `from_seq` first. Returns the stream's last seq."""
        stream = self.stream(channel, account)
        if from_seq is not None:
            self.check_resume(channel, account, from_seq, epoch)
            if from_seq <= stream.seq:
                for seq, entry in stream.ring:
                    if seq >= from_seq:
                        subscriber.push(self._encoded(channel, account, seq, entry))
        stream.subscribers.add(subscriber)
        return stream.seq

    def check_resume(self, channel: str, account: str, from_seq: int | None, epoch: str | None) -> None:
        """ApiError REPLAY_UNAVAILABLE when a resume from `from_seq` cannot be served (call it
        before answering the subscribe: a request gets one answer)."""
        if from_seq is None:
            return
        stream = self.stream(channel, account)
        if epoch != self.epoch:
            raise ApiError(ErrorCode.REPLAY_UNAVAILABLE, f"the server's epoch is {self.epoch}, not {epoch}")
        if from_seq > stream.seq + 1:
            raise ApiError(ErrorCode.REPLAY_UNAVAILABLE, f"from_seq {from_seq} is after the last seq {stream.seq}")
        oldest = stream.ring[0][0] if stream.ring else stream.seq + 1
        if from_seq <= stream.seq and from_seq < oldest:
            raise ApiError(ErrorCode.REPLAY_UNAVAILABLE, f"the oldest message kept is seq {oldest}")

    def unsubscribe(self, channel: str, account: str, subscriber: Subscriber) -> None:
        stream = self.streams.get((channel, account))
        if stream is not None:
            stream.subscribers.discard(subscriber)


# ------------------------------------------------ message bodies of `apply`
# Each builds one message from its seq and the arguments `apply` captured: the core's event (an
# immutable tuple of integers and strings), the command's ts_ns and the price function.


def _filled_body(seq: int, e: tuple[Any, ...], ts_ns: int, price: Callable[[str, int], str], side: int) -> Body:
    _, journal_seq, _trade_id, symbol, price_ticks, qty, buy_id, buy_account, buy_open, sell_id, sell_account, \
        sell_open, _aggressor = e  # fmt: skip
    account, order_id, open_lots = (buy_account, buy_id, buy_open) if side == 0 else (sell_account, sell_id, sell_open)
    return {
        "type": "orders", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "event": "filled", "order_id": order_id, "instrument": symbol, "side": _SIDES[side],
        "price": price(symbol, price_ticks), "filled_lots": qty, "open_lots": open_lots,
    }  # fmt: skip


def _execution_body(seq: int, e: tuple[Any, ...], ts_ns: int, price: Callable[[str, int], str], side: int) -> Body:
    _, journal_seq, trade_id, symbol, price_ticks, qty, buy_id, buy_account, buy_open, sell_id, sell_account, \
        sell_open, aggressor = e  # fmt: skip
    account, order_id, open_lots = (buy_account, buy_id, buy_open) if side == 0 else (sell_account, sell_id, sell_open)
    liquidity = "auction" if aggressor == -1 else ("taker" if aggressor == side else "maker")
    return {
        "type": "executions", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "trade_id": trade_id, "order_id": order_id, "instrument": symbol, "side": _SIDES[side],
        "price": price(symbol, price_ticks), "quantity_lots": qty, "open_lots": open_lots, "liquidity": liquidity,
    }  # fmt: skip


def _accepted_body(seq: int, e: tuple[Any, ...], ts_ns: int, price: Callable[[str, int], str]) -> Body:
    _, journal_seq, order_id, account, symbol, clid, side, price_ticks, qty, _tif = e
    return {
        "type": "orders", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "event": "accepted", "order_id": order_id, "instrument": symbol, "client_order_id": clid,
        "side": "buy" if side == BUY else "sell", "price": price(symbol, price_ticks),
        "quantity_lots": qty, "open_lots": qty,
    }  # fmt: skip


def _cancelled_body(seq: int, e: tuple[Any, ...], ts_ns: int, price: Callable[[str, int], str]) -> Body:
    _, journal_seq, order_id, account, symbol, side, price_ticks, cancelled, open_lots, reason = e
    return {
        "type": "orders", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "event": "cancelled", "order_id": order_id, "instrument": symbol,
        "side": "buy" if side == BUY else "sell", "price": price(symbol, price_ticks),
        "cancelled_lots": cancelled, "open_lots": open_lots, "reason": CancelReason.NAMES[reason],
    }  # fmt: skip


def _amended_body(seq: int, e: tuple[Any, ...], ts_ns: int, price: Callable[[str, int], str]) -> Body:
    _, journal_seq, order_id, account, symbol, price_ticks, qty, open_lots, kept = e
    return {
        "type": "orders", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "event": "amended", "order_id": order_id, "instrument": symbol,
        "price": price(symbol, price_ticks), "quantity_lots": qty, "open_lots": open_lots,
        "priority_kept": kept,
    }  # fmt: skip


def _rejected_body(seq: int, e: tuple[Any, ...], ts_ns: int) -> Body:
    _, journal_seq, account, reference, code, _detail = e
    return {
        "type": "orders", "account": account, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "event": "rejected", "reference": reference, "code": RejectCode(code).name,
    }  # fmt: skip
