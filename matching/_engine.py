"""The matching engine: every listed instrument's book, driven by commands.

Pure and deterministic: ``apply(command, seq, out)`` validates the command,
changes the books and appends event tuples (see ``_events``) to ``out``. It
reads no clock and does no I/O; the same commands with the same sequence
numbers give the same events, byte for byte.

Order ids are the sequence numbers of the commands that entered them, so
they are unique, increasing and known to the sender as soon as its command
is sequenced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final

from matching._auction import uncross
from matching._book import DEEP_LEVEL_ORDERS, Book, Order, heappush
from matching._commands import (
    AmendOrder,
    CancelOrder,
    ListInstrument,
    MassCancel,
    MatchingCommand,
    NewOrder,
    SetTradingState,
)
from matching._errors import RejectCode
from matching._events import (
    ACCEPTED,
    AMENDED,
    BOOK,
    CANCELLED,
    DUPLICATE,
    INDICATIVE,
    LISTED,
    REJECTED,
    STATE,
    TRADE,
    CancelReason,
    Event,
)
from matching._instrument import Instrument, SessionPhase
from matching._types import (
    AUCTION,
    BREAK,
    BUY,
    CLOSED,
    CONTINUOUS,
    DAY,
    FOK,
    GTC,
    HALTED,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_DECREMENT,
    STP_NONE,
)

__all__ = ["Limits", "MatchingEngine"]

# Rejection codes as plain ints (RejectCode's values): events travel between processes as marshal
# data, which takes ints and not IntEnum members; readers look the name up with RejectCode(code).
_RC_BAD_CLIENT_ORDER_ID: Final = int(RejectCode.BAD_CLIENT_ORDER_ID)
_RC_BAD_INSTRUMENT: Final = int(RejectCode.BAD_INSTRUMENT)
_RC_BAD_ORDER_TYPE: Final = int(RejectCode.BAD_ORDER_TYPE)
_RC_BAD_SIDE: Final = int(RejectCode.BAD_SIDE)
_RC_BAD_STATE: Final = int(RejectCode.BAD_STATE)
_RC_BAD_STP_MODE: Final = int(RejectCode.BAD_STP_MODE)
_RC_BAD_TIME_IN_FORCE: Final = int(RejectCode.BAD_TIME_IN_FORCE)
_RC_FOK_NOT_FILLABLE: Final = int(RejectCode.FOK_NOT_FILLABLE)
_RC_INSTRUMENT_EXISTS: Final = int(RejectCode.INSTRUMENT_EXISTS)
_RC_MARKET_CLOSED: Final = int(RejectCode.MARKET_CLOSED)
_RC_MARKET_HALTED: Final = int(RejectCode.MARKET_HALTED)
_RC_MARKET_ORDER_NEEDS_IOC_FOK: Final = int(RejectCode.MARKET_ORDER_NEEDS_IOC_FOK)
_RC_POST_ONLY_NEEDS_LIMIT: Final = int(RejectCode.POST_ONLY_NEEDS_LIMIT)
_RC_POST_ONLY_WOULD_CROSS: Final = int(RejectCode.POST_ONLY_WOULD_CROSS)
_RC_PRICE_NOT_POSITIVE: Final = int(RejectCode.PRICE_NOT_POSITIVE)
_RC_PRICE_OUT_OF_BAND: Final = int(RejectCode.PRICE_OUT_OF_BAND)
_RC_QUANTITY_ABOVE_MAX: Final = int(RejectCode.QUANTITY_ABOVE_MAX)
_RC_QUANTITY_BELOW_MIN: Final = int(RejectCode.QUANTITY_BELOW_MIN)
_RC_TOO_MANY_INSTRUMENTS: Final = int(RejectCode.TOO_MANY_INSTRUMENTS)
_RC_TOO_MANY_LEVELS: Final = int(RejectCode.TOO_MANY_LEVELS)
_RC_TOO_MANY_ORDERS: Final = int(RejectCode.TOO_MANY_ORDERS)
_RC_UNKNOWN_INSTRUMENT: Final = int(RejectCode.UNKNOWN_INSTRUMENT)
_RC_UNKNOWN_ORDER: Final = int(RejectCode.UNKNOWN_ORDER)

_REASON_REQUESTED: Final = CancelReason.REQUESTED
_REASON_IOC: Final = CancelReason.IOC_REMAINDER
_REASON_STP: Final = CancelReason.SELF_TRADE
_REASON_EXPIRED: Final = CancelReason.EXPIRED
_REASON_MASS: Final = CancelReason.MASS_CANCEL
_REASON_FILL_LIMIT: Final = CancelReason.FILL_LIMIT
_REASON_BELOW_FILLED: Final = CancelReason.AMENDED_BELOW_FILLED
_REASON_LEVEL_LIMIT: Final = CancelReason.LEVEL_LIMIT

_MAX_CLIENT_ORDER_ID_CHARS: Final = 36
_CODE_BITS: Final = 8  # reject codes are below 256 (Final: the compiled build keeps these in C statics)
_CODE_MASK: Final = (1 << _CODE_BITS) - 1
assert max(RejectCode) <= _CODE_MASK

# Allowed trading-state moves: from -> set of targets.
_MOVES = {
    CLOSED: {AUCTION, CONTINUOUS},
    AUCTION: {CONTINUOUS, CLOSED, HALTED},
    CONTINUOUS: {CLOSED, HALTED, AUCTION, BREAK},
    BREAK: {AUCTION, CONTINUOUS, CLOSED, HALTED},
    HALTED: {AUCTION, CONTINUOUS, CLOSED},
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of the matching core. Each is enforced and answered with a
    reject (or, for fills, a cancel of the remainder), never a crash."""

    max_instruments: int = 256
    max_open_orders_per_account: int = 10_000
    max_levels_per_side: int = 10_000
    max_fills_per_order: int = 1_000
    max_client_order_ids_per_account: int = 1_000_000


class MatchingEngine:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self._max_client_ids = self.limits.max_client_order_ids_per_account  # read on the fast path
        self._max_open_orders = self.limits.max_open_orders_per_account
        self.books: dict[str, Book] = {}
        self.orders: dict[int, Order] = {}
        self.account_orders: dict[str, dict[int, Order]] = {}
        # account -> client order id -> first outcome, packed as seq << 8 | reject code (0: accepted)
        self.client_ids: dict[str, dict[str, int]] = {}
        self.trade_count = 0
        self._stop_reason = -1  # set by _match: why the incoming order may not rest (-1: it may)
        self._stp_cancelled = 0  # set by _match: incoming lots removed by a self-trade decrement
        self._handlers: dict[type, Callable[[Any, int, list[Event]], None]] = {
            NewOrder: self.new_order,
            CancelOrder: self.cancel,
            AmendOrder: self.amend,
            MassCancel: self._mass_cancel,
            SetTradingState: self._set_state,
            ListInstrument: self._list,
        }

    # ----------------------------------------------------------------- entry

    def apply(self, command: MatchingCommand, seq: int, out: list[Event]) -> None:
        """Apply one command with sequence number `seq`, appending its events."""
        self._handlers[type(command)](command, seq, out)

    # ------------------------------------------------------------ new orders

    def _reject(self, out: list[Event], seq: int, account: str, reference: str, code: int, detail: str = "") -> None:
        out.append((REJECTED, seq, account, reference, code, detail))

    def new_order(self, c: NewOrder, seq: int, out: list[Event]) -> None:
        """``apply`` for a NewOrder (the exchange core calls it directly).

        Fast path for the common case: a valid limit GTC/DAY/IOC order in
        continuous trading. Anything else goes to ``_new_order_checked``,
        which takes the same decisions for these orders, only slower.

        The client order id is looked up and remembered in one probe
        (``setdefault``), the last check of the guard: when it finds an
        earlier entry, nothing was written and the checked path answers the
        repeat from that entry."""
        account = c.account
        clid = c.client_order_id
        ids = self.client_ids.get(account)
        book = self.books.get(c.instrument)
        price = c.price_ticks
        qty = c.quantity_lots
        side = c.side
        tif = c.time_in_force
        packed = seq << _CODE_BITS
        if (
            ids is None
            or book is None
            or book.state != CONTINUOUS
            or c.order_type != LIMIT
            or c.post_only
            or not (GTC <= tif <= IOC)
            or not (BUY <= side <= SELL)
            or not (STP_NONE <= c.stp_mode <= STP_DECREMENT)
            or not (book.band_low_ticks <= price <= book.band_high_ticks)
            or not (book.min_lots <= qty <= book.max_lots)
            or not (0 < len(clid) <= _MAX_CLIENT_ORDER_ID_CHARS)
            or not clid.isprintable()
            or len(ids) >= self._max_client_ids
            or (mine := self.account_orders.get(account)) is None
            or len(mine) >= self._max_open_orders
            or ids.setdefault(clid, packed) != packed
        ):
            self._new_order_checked(c, seq, out)
            return
        symbol = book.symbol
        # The events and the dict keys share one boxed seq and price: the compiled build boxes an
        # int (a new object) each time it stores one in a tuple or uses it as a key, and these two
        # are never small. ``Any`` keeps them boxed where a dict[int, ...] takes them as keys.
        seq_o: Any = seq
        price_o: Any = price
        out.append((ACCEPTED, seq_o, seq_o, account, symbol, clid, side, price_o, qty, tif))
        buying = side == BUY
        opposite = book.bests[1 - side]
        if opposite and (opposite <= price if buying else opposite >= price):
            self._stop_reason = -1
            self._stp_cancelled = 0
            remaining = self._match(book, side, price, qty, seq, account, c.stp_mode, seq, out)
            if not remaining:
                return
            stp_cancelled = self._stp_cancelled
            reason = self._stop_reason
            if reason < 0 and tif == IOC:
                reason = _REASON_IOC
            if reason >= 0:
                out.append((CANCELLED, seq_o, seq_o, account, symbol, side, price_o, remaining, 0, reason))
                return
            filled = qty - remaining - stp_cancelled
        else:
            if tif == IOC:
                out.append((CANCELLED, seq_o, seq_o, account, symbol, side, price_o, qty, 0, _REASON_IOC))
                return
            remaining = qty
            filled = stp_cancelled = 0
        levels = book.levels[side]
        lots = book.level_lots[side]
        order = Order(
            seq, account, symbol, clid, side, price, qty, remaining, filled, stp_cancelled, tif, False, c.stp_mode
        )
        level = levels.get(price_o)
        if level is not None:
            level[seq_o] = order
            level_total = lots[price_o] + remaining
        elif len(levels) >= self.limits.max_levels_per_side:
            out.append((CANCELLED, seq_o, seq_o, account, symbol, side, price_o, remaining, 0, _REASON_LEVEL_LIMIT))
            return
        else:
            # a new level (Book.add_level, inlined on this hot path)
            levels[price_o] = {seq_o: order}
            level_total = remaining
            heap = book.heaps[side]
            heappush(heap, -price if buying else price)
            if len(heap) > 2 * len(levels) + 64:
                book.compact(side)
            bests = book.bests
            best = bests[side]
            if not best or (price > best if buying else price < best):
                bests[side] = price
        total_o: Any = level_total
        lots[price_o] = total_o
        self.orders[seq_o] = order
        mine[seq_o] = order
        out.append((BOOK, seq_o, symbol, side, price_o, total_o))

    def refuse_new_order(self, c: NewOrder, seq: int, code: int, detail: str, out: list[Event]) -> None:
        """Answer a new order that another state machine refused before it reached the book
        (pre-trade risk, warehouse receipts) with REJECTED `code`, remembering its client order id
        as a rejection of matching's own is remembered: a repeat is answered with this first answer
        (DUPLICATE) and applied nowhere. An id matching itself would refuse is not remembered."""
        assert 0 < code <= _CODE_MASK, code
        account = c.account
        clid = c.client_order_id
        ids = self.client_ids.get(account)
        if 0 < len(clid) <= _MAX_CLIENT_ORDER_ID_CHARS and clid.isprintable():
            if ids is None:
                ids = self.client_ids[account] = {}
            if clid not in ids and len(ids) < self._max_client_ids:
                ids[clid] = seq << _CODE_BITS | code
        out.append((REJECTED, seq, account, clid, code, detail))

    def _new_order_checked(self, c: NewOrder, seq: int, out: list[Event]) -> None:
        """Every new order that the fast path does not take: all checks, the
        auction, post-only, FOK and market orders."""
        account = c.account
        clid = c.client_order_id
        ids = self.client_ids.get(account)
        if ids is None:
            ids = self.client_ids[account] = {}
        first = ids.get(clid)
        if first is not None:
            out.append((DUPLICATE, seq, account, clid, first >> _CODE_BITS, first & _CODE_MASK))
            return
        code, detail = self._check_new(c, len(ids))
        if code:
            if code != _RC_BAD_CLIENT_ORDER_ID and len(ids) < self._max_client_ids:
                # (past the limit of ids nothing more is remembered: the memory stays bounded)
                ids[clid] = seq << _CODE_BITS | code
            out.append((REJECTED, seq, account, clid, code, detail))
            return
        book = self.books[c.instrument]
        side = c.side
        qty = c.quantity_lots
        if c.order_type == MARKET:
            price = book.band_high_ticks if side == BUY else book.band_low_ticks
        else:
            price = c.price_ticks
        tif = c.time_in_force
        if book.state == CONTINUOUS:
            if c.post_only:
                opposite = book.best(1 - side)
                if opposite and (opposite <= price if side == BUY else opposite >= price):
                    ids[clid] = seq << _CODE_BITS | _RC_POST_ONLY_WOULD_CROSS
                    out.append((REJECTED, seq, account, clid, _RC_POST_ONLY_WOULD_CROSS, f"best opposite {opposite}"))
                    return
            elif tif == FOK and not self._fillable(book, side, price, qty, account, c.stp_mode):
                ids[clid] = seq << _CODE_BITS | _RC_FOK_NOT_FILLABLE
                out.append((REJECTED, seq, account, clid, _RC_FOK_NOT_FILLABLE, ""))
                return
        ids[clid] = seq << _CODE_BITS
        if account not in self.account_orders:  # lets the fast path take its next orders
            self.account_orders[account] = {}
        symbol = book.symbol
        out.append((ACCEPTED, seq, seq, account, symbol, clid, side, price, qty, tif))
        if book.state == AUCTION:
            self._rest(book, seq, account, clid, side, price, qty, qty, 0, 0, tif, c.post_only, c.stp_mode, seq, out)
            self._publish_indicative(book, seq, out)
            return
        self._stop_reason = -1
        self._stp_cancelled = 0
        remaining = self._match(book, side, price, qty, seq, account, c.stp_mode, seq, out) if qty else 0
        if not remaining:
            return
        filled = qty - remaining - self._stp_cancelled
        cancelled = self._stp_cancelled
        reason = self._stop_reason
        if reason < 0 and (tif in (IOC, FOK)):
            reason = _REASON_IOC
        if reason >= 0:
            out.append((CANCELLED, seq, seq, account, symbol, side, price, remaining, 0, reason))
            return
        self._rest(
            book,
            seq,
            account,
            clid,
            side,
            price,
            qty,
            remaining,
            filled,
            cancelled,
            tif,
            c.post_only,
            c.stp_mode,
            seq,
            out,
        )

    def _check_new(self, c: NewOrder, ids_used: int) -> tuple[int, str]:
        """0 and "" when the order may enter, else a reject code and detail."""
        clid = c.client_order_id
        if not (0 < len(clid) <= _MAX_CLIENT_ORDER_ID_CHARS) or not clid.isprintable():
            return _RC_BAD_CLIENT_ORDER_ID, ""
        if ids_used >= self.limits.max_client_order_ids_per_account:
            return _RC_TOO_MANY_ORDERS, "client order ids used today"
        book = self.books.get(c.instrument)
        if book is None:
            return _RC_UNKNOWN_INSTRUMENT, c.instrument
        state = book.state
        if state not in (CONTINUOUS, AUCTION):
            return (_RC_MARKET_HALTED if state == HALTED else _RC_MARKET_CLOSED), ""
        side = c.side
        if side not in (BUY, SELL):
            return _RC_BAD_SIDE, ""
        tif = c.time_in_force
        if tif not in (GTC, DAY, IOC, FOK):
            return _RC_BAD_TIME_IN_FORCE, ""
        inst = book.instrument
        qty = c.quantity_lots
        if qty < inst.min_lots:
            return _RC_QUANTITY_BELOW_MIN, f"minimum {inst.min_lots} lots"
        if qty > inst.max_lots:
            return _RC_QUANTITY_ABOVE_MAX, f"maximum {inst.max_lots} lots"
        stp = c.stp_mode
        if not (STP_NONE <= stp <= STP_DECREMENT):
            return _RC_BAD_STP_MODE, ""
        order_type = c.order_type
        if order_type == LIMIT:
            price = c.price_ticks
            if price <= 0:
                return _RC_PRICE_NOT_POSITIVE, ""
            if price < book.band_low_ticks or price > book.band_high_ticks:
                return _RC_PRICE_OUT_OF_BAND, f"band {book.band_low_ticks}..{book.band_high_ticks} ticks"
        elif order_type == MARKET:
            if tif not in (IOC, FOK):
                return _RC_MARKET_ORDER_NEEDS_IOC_FOK, ""
        else:
            return _RC_BAD_ORDER_TYPE, ""
        if c.post_only and (order_type != LIMIT or (tif not in (GTC, DAY))):
            return _RC_POST_ONLY_NEEDS_LIMIT, ""
        if state == AUCTION and (tif in (IOC, FOK)):
            return _RC_BAD_TIME_IN_FORCE, "IOC, FOK and market orders are not accepted during the call auction"
        if (tif in (GTC, DAY)) and len(self.account_orders.get(c.account, ())) >= (
            self.limits.max_open_orders_per_account
        ):
            return _RC_TOO_MANY_ORDERS, f"limit {self.limits.max_open_orders_per_account}"
        return 0, ""

    def _fillable(self, book: Book, side: int, price: int, qty: int, account: str, stp: int) -> bool:
        """Whether `qty` lots would trade in full at `price` or better, walking
        the opposite side in priority order as matching would: self-trade
        prevention included, and within ``max_fills_per_order`` trades (the
        limit that would cancel the rest of the order)."""
        available = 0
        fills_left = self.limits.max_fills_per_order
        levels = book.levels[1 - side]
        level_lots = book.level_lots[1 - side]
        for level_price in book.sorted_prices(1 - side):
            if level_price > price if side == BUY else level_price < price:
                return False
            level = levels[level_price]
            if stp == STP_NONE and available + level_lots[level_price] < qty and len(level) < fills_left:
                # the whole level trades and the order goes on: no need to walk it
                available += level_lots[level_price]
                fills_left -= len(level)
                continue
            for maker in level.values():
                if stp != STP_NONE and maker.account == account:
                    if stp != STP_CANCEL_OLDEST:
                        return False
                    continue  # cancelled by the incoming order, no trade
                available += maker.open_lots
                if available >= qty:
                    return True
                fills_left -= 1
                if not fills_left:
                    return False
        return False

    def _rest(
        self,
        book: Book,
        order_id: int,
        account: str,
        clid: str,
        side: int,
        price: int,
        ordered: int,
        open_lots: int,
        filled: int,
        cancelled: int,
        tif: int,
        post_only: bool,
        stp: int,
        seq: int,
        out: list[Event],
    ) -> None:
        level = book.levels[side].get(price)
        if level is None:
            if len(book.levels[side]) >= self.limits.max_levels_per_side:
                out.append(
                    (CANCELLED, seq, order_id, account, book.symbol, side, price, open_lots, 0, _REASON_LEVEL_LIMIT)
                )
                return
            level = book.add_level(side, price)
        order = Order(
            order_id,
            account,
            book.symbol,
            clid,
            side,
            price,
            ordered,
            open_lots,
            filled,
            cancelled,
            tif,
            post_only,
            stp,
        )
        level[order_id] = order
        lots = book.level_lots[side]
        total = lots[price] + open_lots
        lots[price] = total
        self.orders[order_id] = order
        mine = self.account_orders.get(account)
        if mine is None:
            mine = self.account_orders[account] = {}
        mine[order_id] = order
        out.append((BOOK, seq, book.symbol, side, price, total))

    # --------------------------------------------------------------- matching

    def _match(
        self,
        book: Book,
        side: int,
        limit: int,
        qty: int,
        taker_id: int,
        account: str,
        stp: int,
        seq: int,
        out: list[Event],
    ) -> int:
        """Trade `qty` lots of an incoming order against the opposite side up
        to `limit`; return the lots left. Sets ``_stop_reason`` (-1 when the
        taker may rest) and ``_stp_cancelled`` (taker lots removed by a
        self-trade decrement)."""
        maker_side = 1 - side
        levels = book.levels[maker_side]
        lots = book.level_lots[maker_side]
        bests = book.bests
        orders = self.orders
        account_orders = self.account_orders
        symbol = book.symbol
        fills_left = self.limits.max_fills_per_order
        buying = side == BUY
        seq_o: object = seq  # boxed once for all the events (see new_order)
        taker_o: object = taker_id
        while qty:
            price = bests[maker_side]
            if not price or ((price > limit) if buying else (price < limit)):
                break
            price_o: Any = price  # one box for the keys and the events
            level = levels[price_o]
            total = lots[price_o]
            traded_here = False
            taken = 0
            while qty and level:
                maker_id: Any = next(iter(level))  # boxed once for the deletes and the event
                maker = level[maker_id]
                if stp and maker.account == account:
                    lots[price] = total
                    qty = self._self_trade(book, maker, qty, stp, taker_id, account, side, limit, seq, out)
                    total = lots.get(price, 0)
                    if self._stop_reason >= 0:
                        if traded_here:  # (it traded on this level before the self-trade stop)
                            book.last_price_ticks = price
                        self._finish_level(book, maker_side, price, level, total, seq, out)
                        return qty
                    continue
                maker_open = maker.open_lots
                if maker_open <= qty:
                    traded = maker_open
                    del level[maker_id]
                    del orders[maker_id]
                    del account_orders[maker.account][maker_id]
                    taken += 1
                else:
                    traded = qty
                maker.open_lots = maker_open - traded
                maker.filled_lots += traded
                traded_here = True
                qty -= traded
                total -= traded
                self.trade_count += 1
                if buying:
                    out.append(
                        (
                            TRADE,
                            seq_o,
                            self.trade_count,
                            symbol,
                            price_o,
                            traded,
                            taker_o,
                            account,
                            qty,
                            maker_id,
                            maker.account,
                            maker.open_lots,
                            BUY,
                        )
                    )
                else:
                    out.append(
                        (
                            TRADE,
                            seq_o,
                            self.trade_count,
                            symbol,
                            price_o,
                            traded,
                            maker_id,
                            maker.account,
                            maker.open_lots,
                            taker_o,
                            account,
                            qty,
                            SELL,
                        )
                    )
                fills_left -= 1
                if not fills_left and qty:
                    book.last_price_ticks = price
                    self._finish_level(book, maker_side, price, level, total, seq, out)
                    self._stop_reason = _REASON_FILL_LIMIT
                    return qty
            if traded_here:
                book.last_price_ticks = price
            # the level's new total (Book level bookkeeping, inlined on this hot path)
            total_o: Any = total
            if level:
                lots[price_o] = total_o
                if taken and len(level) >= DEEP_LEVEL_ORDERS:
                    book.note_taken(maker_side, price, taken)
            elif price_o in levels:
                assert total == 0, (price, total)
                book.drop_level(maker_side, price)
            out.append((BOOK, seq_o, symbol, maker_side, price_o, total_o))
        return qty

    def _finish_level(
        self, book: Book, side: int, price: int, level: dict[int, Order], total: int, seq: int, out: list[Event]
    ) -> None:
        if level:
            book.level_lots[side][price] = total
        else:
            assert total == 0, (price, total)
            if price in book.levels[side]:
                book.drop_level(side, price)
        out.append((BOOK, seq, book.symbol, side, price, total))

    def _self_trade(
        self,
        book: Book,
        maker: Order,
        qty: int,
        stp: int,
        taker_id: int,
        account: str,
        side: int,
        limit: int,
        seq: int,
        out: list[Event],
    ) -> int:
        """Apply self-trade prevention between the incoming order (`qty` lots
        left) and `maker`; return the incoming lots left. Sets
        ``_stop_reason`` when the incoming order must stop (its remainder is
        then cancelled by the caller)."""
        if stp == STP_CANCEL_NEWEST:
            self._stop_reason = _REASON_STP
            return qty
        if stp in (STP_CANCEL_OLDEST, STP_CANCEL_BOTH):
            self._remove(book, maker, maker.open_lots, _REASON_STP, seq, out, publish_level=False)
            if stp == STP_CANCEL_BOTH:
                self._stop_reason = _REASON_STP
            return qty
        assert stp == STP_DECREMENT, stp
        cut = min(qty, maker.open_lots)
        self._stp_cancelled += cut
        if cut == maker.open_lots:
            self._remove(book, maker, cut, _REASON_STP, seq, out, publish_level=False)
        else:
            maker.open_lots -= cut
            maker.cancelled_lots += cut
            book.level_lots[maker.side][maker.price_ticks] -= cut
            out.append(
                (
                    CANCELLED,
                    seq,
                    maker.order_id,
                    maker.account,
                    book.symbol,
                    maker.side,
                    maker.price_ticks,
                    cut,
                    maker.open_lots,
                    _REASON_STP,
                )
            )
        qty -= cut
        out.append((CANCELLED, seq, taker_id, account, book.symbol, side, limit, cut, qty, _REASON_STP))
        return qty

    # ------------------------------------------------------ cancel and amend

    def _remove(
        self, book: Book, order: Order, cancelled: int, reason: int, seq: int, out: list[Event], publish_level: bool
    ) -> None:
        """Take `order` off the book, its `cancelled` open lots cancelled."""
        side = order.side
        price = order.price_ticks
        level = book.levels[side][price]
        del level[order.order_id]
        del self.orders[order.order_id]
        del self.account_orders[order.account][order.order_id]
        lots = book.level_lots[side]
        total = lots[price] - order.open_lots
        if level:
            lots[price] = total
        else:
            assert total == 0, (price, total)
            book.drop_level(side, price)
        order.cancelled_lots += cancelled
        order.open_lots -= cancelled
        if reason >= 0:
            out.append(
                (
                    CANCELLED,
                    seq,
                    order.order_id,
                    order.account,
                    book.symbol,
                    side,
                    price,
                    cancelled,
                    order.open_lots,
                    reason,
                )
            )
        if publish_level:
            out.append((BOOK, seq, book.symbol, side, price, total))

    def cancel(self, c: CancelOrder, seq: int, out: list[Event]) -> None:
        """``apply`` for a CancelOrder (the exchange core calls it directly)."""
        order_id: Any = c.order_id  # boxed once for the lookups and the event (see new_order)
        order = self.orders.get(order_id)
        if order is None or order.account != c.account:
            # Another account's order is answered as unknown: ids reveal nothing.
            out.append((REJECTED, seq, c.account, str(c.order_id), _RC_UNKNOWN_ORDER, ""))
            return
        book = self.books[order.instrument]
        # Book removal (as in _remove, inlined on this hot path)
        side = order.side
        price = order.price_ticks
        price_o: Any = price
        open_lots = order.open_lots
        levels = book.levels[side]
        level = levels[price_o]
        del level[order_id]
        del self.orders[order_id]
        del self.account_orders[order.account][order_id]
        lots = book.level_lots[side]
        total = lots[price_o] - open_lots
        total_o: Any = total
        if level:
            lots[price_o] = total_o
            if len(level) >= DEEP_LEVEL_ORDERS:
                book.note_taken(side, price, 1)
        else:
            assert total == 0, (price, total)
            book.drop_level(side, price)
        order.cancelled_lots += open_lots
        order.open_lots = 0
        seq_o: object = seq  # boxed once for both events
        out.append(
            (CANCELLED, seq_o, order_id, order.account, book.symbol, side, price_o, open_lots, 0, _REASON_REQUESTED)
        )
        out.append((BOOK, seq_o, book.symbol, side, price_o, total_o))
        if book.state == AUCTION:
            self._publish_indicative(book, seq, out)

    def amend(self, c: AmendOrder, seq: int, out: list[Event]) -> None:
        """``apply`` for an AmendOrder."""
        account = c.account
        # Boxed once for the dict keys and the events (see new_order): the id, the prices, the seq.
        order_id: Any = c.order_id
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            out.append((REJECTED, seq, account, str(c.order_id), _RC_UNKNOWN_ORDER, ""))
            return
        book = self.books[order.instrument]
        state = book.state
        if state not in (CONTINUOUS, AUCTION):
            code = _RC_MARKET_HALTED if state == HALTED else _RC_MARKET_CLOSED
            out.append((REJECTED, seq, account, str(c.order_id), code, "cancel is accepted, amend is not"))
            return
        price = c.price_ticks
        total = c.quantity_lots
        if price < book.band_low_ticks or price > book.band_high_ticks:
            out.append(
                (
                    REJECTED,
                    seq,
                    account,
                    str(c.order_id),
                    _RC_PRICE_OUT_OF_BAND,
                    f"band {book.band_low_ticks}..{book.band_high_ticks} ticks",
                )
            )
            return
        if total > book.max_lots:
            out.append(
                (
                    REJECTED,
                    seq,
                    account,
                    str(c.order_id),
                    _RC_QUANTITY_ABOVE_MAX,
                    f"maximum {book.instrument.max_lots} lots",
                )
            )
            return
        seq_o: Any = seq
        side = order.side
        old_price = order.price_ticks
        old_o: Any = old_price
        old_open = order.open_lots
        symbol = book.symbol
        base = order.filled_lots + order.cancelled_lots
        if base < total < book.min_lots:
            # (a total at or below what is done ends the order whatever the minimum, see below)
            code = _RC_QUANTITY_BELOW_MIN
            out.append((REJECTED, seq, account, str(order_id), code, f"minimum {book.instrument.min_lots} lots"))
            return
        if total <= base:
            # At or below what is already done: the order ends, its open lots cancelled.
            out.append((AMENDED, seq, order_id, account, symbol, old_price, order.ordered_lots, 0, False))
            self._remove(book, order, old_open, _REASON_BELOW_FILLED, seq, out, publish_level=True)
            if state == AUCTION:
                self._publish_indicative(book, seq, out)
            return
        new_open = total - base
        lots = book.level_lots[side]
        if price == old_price and new_open <= old_open:
            # A pure size decrease keeps time priority.
            order.open_lots = new_open
            order.ordered_lots = total
            level_total: Any = lots[old_o] - old_open + new_open
            lots[old_o] = level_total
            out.append((AMENDED, seq_o, order_id, account, symbol, old_o, total, new_open, True))
            if new_open != old_open:
                out.append((BOOK, seq_o, symbol, side, old_o, level_total))
                if state == AUCTION:
                    self._publish_indicative(book, seq, out)
            return
        buying = side == BUY
        opposite = book.bests[1 - side]
        may_cross = bool(opposite) and (opposite <= price if buying else opposite >= price)
        if may_cross and state == CONTINUOUS and order.post_only:
            code = _RC_POST_ONLY_WOULD_CROSS
            out.append((REJECTED, seq, account, str(order_id), code, f"best opposite {opposite}"))
            return
        levels = book.levels[side]
        if (
            price != old_price
            and price not in levels
            and (state == AUCTION or not may_cross)
            and len(levels) - (len(levels[old_price]) == 1) >= self.limits.max_levels_per_side
        ):
            # it would rest on a new level the side has no room for: refused, the order unchanged
            # (one that trades first has its rest cancelled there, as a new order's would be)
            limit = self.limits.max_levels_per_side
            out.append((REJECTED, seq, account, str(order_id), _RC_TOO_MANY_LEVELS, f"limit {limit} levels a side"))
            return
        # Loses priority: off its level, then in again as if new.
        level = levels[old_o]
        del level[order_id]
        level_total = lots[old_o] - old_open
        if level:
            lots[old_o] = level_total
        else:
            assert level_total == 0, (old_price, level_total)
            book.drop_level(side, old_price)
        out.append((BOOK, seq_o, symbol, side, old_o, level_total))
        order.price_ticks = price
        order.ordered_lots = total
        order.open_lots = new_open
        price_o: Any = price
        out.append((AMENDED, seq_o, order_id, account, symbol, price_o, total, new_open, False))
        if state == AUCTION:
            self._rest_existing(book, order, seq, out)
            self._publish_indicative(book, seq, out)
            return
        if may_cross:
            self._stop_reason = -1
            self._stp_cancelled = 0
            remaining = self._match(book, side, price, new_open, order_id, account, order.stp_mode, seq, out)
            stp_cancelled = self._stp_cancelled
            order.filled_lots += new_open - remaining - stp_cancelled
            order.cancelled_lots += stp_cancelled
            order.open_lots = remaining
            if not remaining or self._stop_reason >= 0:
                del self.orders[order_id]
                del self.account_orders[account][order_id]
                if remaining:
                    order.open_lots = 0
                    order.cancelled_lots += remaining
                    out.append(
                        (CANCELLED, seq, order_id, account, symbol, side, price, remaining, 0, self._stop_reason)
                    )
                return
        new_level = levels.get(price_o)
        if new_level is not None:
            new_level[order_id] = order
            level_total = lots[price_o] + order.open_lots
            lots[price_o] = level_total
            out.append((BOOK, seq_o, symbol, side, price_o, level_total))
            return
        if len(levels) >= self.limits.max_levels_per_side:
            del self.orders[order_id]
            del self.account_orders[account][order_id]
            cancelled = order.open_lots
            order.cancelled_lots += cancelled
            order.open_lots = 0
            out.append((CANCELLED, seq, order_id, account, symbol, side, price, cancelled, 0, _REASON_LEVEL_LIMIT))
            return
        # a new level (Book.add_level, inlined on this hot path)
        levels[price_o] = {order_id: order}
        level_total = lots[price_o] = order.open_lots
        heap = book.heaps[side]
        heappush(heap, -price if buying else price)
        if len(heap) > 2 * len(levels) + 64:
            book.compact(side)
        bests = book.bests
        best = bests[side]
        if not best or (price > best if buying else price < best):
            bests[side] = price
        out.append((BOOK, seq_o, symbol, side, price_o, level_total))

    def _rest_existing(self, book: Book, order: Order, seq: int, out: list[Event]) -> None:
        """Put a registered order that is off its level back at the end of
        the level of its (new) price."""
        side = order.side
        price = order.price_ticks
        level = book.levels[side].get(price)
        if level is None:
            if len(book.levels[side]) >= self.limits.max_levels_per_side:
                del self.orders[order.order_id]
                del self.account_orders[order.account][order.order_id]
                cancelled = order.open_lots
                order.cancelled_lots += cancelled
                order.open_lots = 0
                out.append(
                    (
                        CANCELLED,
                        seq,
                        order.order_id,
                        order.account,
                        book.symbol,
                        side,
                        price,
                        cancelled,
                        0,
                        _REASON_LEVEL_LIMIT,
                    )
                )
                return
            level = book.add_level(side, price)
        level[order.order_id] = order
        lots = book.level_lots[side]
        total = lots[price] + order.open_lots
        lots[price] = total
        out.append((BOOK, seq, book.symbol, side, price, total))

    def _mass_cancel(self, c: MassCancel, seq: int, out: list[Event]) -> None:
        if c.instrument and c.instrument not in self.books:
            out.append((REJECTED, seq, c.account, c.instrument, _RC_UNKNOWN_INSTRUMENT, c.instrument))
            return
        mine = self.account_orders.get(c.account, {})
        for order_id in sorted(mine):
            order = mine[order_id]
            if c.instrument and order.instrument != c.instrument:
                continue
            self._remove(
                self.books[order.instrument], order, order.open_lots, _REASON_MASS, seq, out, publish_level=True
            )
        touched = {self.books[c.instrument]} if c.instrument else set(self.books.values())
        for book in sorted(touched, key=lambda b: b.symbol):
            if book.state == AUCTION:
                self._publish_indicative(book, seq, out)

    # ---------------------------------------------------- sessions, auction

    def _list(self, c: ListInstrument, seq: int, out: list[Event]) -> None:
        inst = c.instrument
        if inst.symbol in self.books:
            out.append((REJECTED, seq, "", inst.symbol, _RC_INSTRUMENT_EXISTS, inst.symbol))
            return
        if len(self.books) >= self.limits.max_instruments:
            out.append((REJECTED, seq, "", inst.symbol, _RC_TOO_MANY_INSTRUMENTS, ""))
            return
        problems = inst.problems()
        if problems:
            out.append((REJECTED, seq, "", inst.symbol, _RC_BAD_INSTRUMENT, "; ".join(problems)))
            return
        self.books[inst.symbol] = Book(inst)
        out.append((LISTED, seq, inst.symbol))
        out.append((STATE, seq, inst.symbol, CLOSED, inst.reference_price_ticks))

    def _set_state(self, c: SetTradingState, seq: int, out: list[Event]) -> None:
        book = self.books.get(c.instrument)
        if book is None:
            out.append((REJECTED, seq, "", c.instrument, _RC_UNKNOWN_INSTRUMENT, c.instrument))
            return
        target = c.state
        if target not in _MOVES or target not in _MOVES[book.state]:
            out.append((REJECTED, seq, "", c.instrument, _RC_BAD_STATE, f"{book.state} -> {target}"))
            return
        previous = book.state
        if target == HALTED:
            book.halted_from = previous
        book.state = target
        if target == CONTINUOUS and book.is_crossed():
            self._uncross(book, seq, out)
        if target == AUCTION:
            self._publish_indicative(book, seq, out)
        elif book.indicative != (0, 0, 0):
            book.indicative = (0, 0, 0)
            out.append((INDICATIVE, seq, book.symbol, 0, 0, 0))
        if target == CLOSED:
            self._close(book, seq, out)
        out.append((STATE, seq, book.symbol, target, book.reference_price_ticks))

    def _close(self, book: Book, seq: int, out: list[Event]) -> None:
        """Expire DAY orders; the last trade price becomes the reference; when
        every instrument is closed the day's client order ids are forgotten.
        Nothing trades."""
        day_orders = sorted(
            order.order_id
            for side in book.levels
            for level in side.values()
            for order in level.values()
            if order.time_in_force == DAY
        )
        for order_id in day_orders:
            order = self.orders[order_id]
            self._remove(book, order, order.open_lots, _REASON_EXPIRED, seq, out, publish_level=True)
        if book.last_price_ticks:
            book.set_reference(book.last_price_ticks)
        if all(b.state == CLOSED for b in self.books.values()):
            self.client_ids.clear()
        # Closing never trades: a book closed from the call auction (or from a halt during it) may
        # stay crossed; its GTC orders wait for the next auction's uncross (or the next move to
        # CONTINUOUS, which uncrosses first).

    def _publish_indicative(self, book: Book, seq: int, out: list[Event]) -> None:
        indicative = uncross(
            list(book.level_lots[BUY].items()), list(book.level_lots[SELL].items()), book.reference_price_ticks
        )
        if indicative != book.indicative:
            book.indicative = indicative
            out.append((INDICATIVE, seq, book.symbol, indicative[0], indicative[1], indicative[2]))

    def _uncross(self, book: Book, seq: int, out: list[Event]) -> None:
        """Trade the crossed part of the book at the uncross price, in
        price-time priority on both sides; every trade prints at that price."""
        price, volume, _ = uncross(
            list(book.level_lots[BUY].items()), list(book.level_lots[SELL].items()), book.reference_price_ticks
        )
        if not volume:
            return
        touched: set[tuple[int, int]] = set()
        left = volume
        while left:
            bid_price = book.best(BUY)
            ask_price = book.best(SELL)
            assert bid_price >= price, (bid_price, price)
            assert 0 < ask_price <= price, (ask_price, price)
            bid_level = book.levels[BUY][bid_price]
            ask_level = book.levels[SELL][ask_price]
            buy = bid_level[next(iter(bid_level))]
            sell = ask_level[next(iter(ask_level))]
            traded = min(left, buy.open_lots, sell.open_lots)
            left -= traded
            for order, level_price in ((buy, bid_price), (sell, ask_price)):
                order.open_lots -= traded
                order.filled_lots += traded
                book.level_lots[order.side][level_price] -= traded
                touched.add((order.side, level_price))
                if not order.open_lots:
                    level = book.levels[order.side][level_price]
                    del level[order.order_id]
                    del self.orders[order.order_id]
                    del self.account_orders[order.account][order.order_id]
                    if not level:
                        book.drop_level(order.side, level_price)
            self.trade_count += 1
            out.append(
                (
                    TRADE,
                    seq,
                    self.trade_count,
                    book.symbol,
                    price,
                    traded,
                    buy.order_id,
                    buy.account,
                    buy.open_lots,
                    sell.order_id,
                    sell.account,
                    sell.open_lots,
                    -1,
                )
            )
        book.last_price_ticks = price
        for side, level_price in sorted(touched):
            out.append((BOOK, seq, book.symbol, side, level_price, book.level_lots[side].get(level_price, 0)))
        assert not book.is_crossed(), book.symbol

    # --------------------------------------------------------------- queries

    def book(self, symbol: str) -> Book:
        return self.books[symbol]

    def depth(self, symbol: str, side: int, levels: int = 0) -> list[tuple[int, int]]:
        """(price_ticks, lots) of `side`, best first; all levels when 0."""
        book = self.books[symbol]
        prices = book.sorted_prices(side)
        if levels:
            prices = prices[:levels]
        lots = book.level_lots[side]
        return [(p, lots[p]) for p in prices]

    def orders_at(self, symbol: str, side: int, price_ticks: int) -> list[Order]:
        level = self.books[symbol].levels[side].get(price_ticks, {})
        return list(level.values())

    def check_invariants(self) -> None:
        """Assert the book invariants (for tests and after replay)."""
        seen = 0
        for book in self.books.values():
            if book.state == CONTINUOUS:
                assert not book.is_crossed(), book.symbol
            for side in (BUY, SELL):
                assert set(book.levels[side]) == set(book.level_lots[side]), book.symbol
                prices = book.levels[side]
                exact = (max(prices) if side == BUY else min(prices)) if prices else 0
                assert book.bests[side] == exact, (book.symbol, side, book.bests[side], exact)
                for price, level in book.levels[side].items():
                    assert level, (book.symbol, side, price)
                    assert sum(o.open_lots for o in level.values()) == book.level_lots[side][price]
                    for order in level.values():
                        assert order.open_lots > 0, order.order_id
                        assert order.price_ticks == price, order.order_id
                        assert order.side == side, order.order_id
                        filled_open_cancelled = order.filled_lots + order.open_lots + order.cancelled_lots
                        assert filled_open_cancelled == order.ordered_lots, order.order_id
                        assert self.orders[order.order_id] is order
                        assert self.account_orders[order.account][order.order_id] is order
                        seen += 1
        assert seen == len(self.orders)
        assert seen == sum(len(m) for m in self.account_orders.values())

    # ------------------------------------------------------ state transfer

    def export_state(self) -> dict[str, Any]:
        """The whole state as plain data, canonical: equal states give equal
        dicts (books by symbol, levels best first, orders in queue order)."""
        books = []
        for symbol in sorted(self.books):
            book = self.books[symbol]
            inst = book.instrument
            books.append(
                {
                    "instrument": _instrument_to_dict(inst),
                    "state": book.state,
                    "halted_from": book.halted_from,
                    "reference_price_ticks": book.reference_price_ticks,
                    "last_price_ticks": book.last_price_ticks,
                    "indicative": list(book.indicative),
                    "sides": [
                        [[o.to_list() for o in book.levels[side][p].values()] for p in book.sorted_prices(side)]
                        for side in (BUY, SELL)
                    ],
                }
            )
        return {
            "books": books,
            "trade_count": self.trade_count,
            # dicts: their keys are sorted where the state becomes bytes (``canonical_json``)
            "client_ids": {
                account: {clid: [first >> _CODE_BITS, first & _CODE_MASK] for clid, first in ids.items()}
                for account, ids in self.client_ids.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], limits: Limits | None = None) -> MatchingEngine:
        engine = cls(limits)
        engine.trade_count = state["trade_count"]
        for entry in state["books"]:
            book = Book(_instrument_from_dict(entry["instrument"]))
            book.state = entry["state"]
            book.halted_from = entry["halted_from"]
            book.set_reference(entry["reference_price_ticks"])
            book.last_price_ticks = entry["last_price_ticks"]
            ind = entry["indicative"]
            book.indicative = (ind[0], ind[1], ind[2])
            engine.books[book.symbol] = book
            for side, levels in enumerate(entry["sides"]):
                for level_orders in levels:
                    for values in level_orders:
                        order = Order(*values)
                        level = book.levels[side].get(order.price_ticks)
                        if level is None:
                            level = book.add_level(side, order.price_ticks)
                        level[order.order_id] = order
                        book.level_lots[side][order.price_ticks] += order.open_lots
                        engine.orders[order.order_id] = order
        for order_id in sorted(engine.orders):
            order = engine.orders[order_id]
            engine.account_orders.setdefault(order.account, {})[order_id] = order
        engine.client_ids = {
            account: {clid: first[0] << _CODE_BITS | first[1] for clid, first in ids.items()}
            for account, ids in state["client_ids"].items()
        }
        return engine


_INSTRUMENT_FIELDS = tuple(f.name for f in fields(Instrument))


def _instrument_to_dict(inst: Instrument) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(inst, name) for name in _INSTRUMENT_FIELDS if name != "sessions"}
    out["sessions"] = [[phase.start_minute, phase.state] for phase in inst.sessions]
    return out


def _instrument_from_dict(data: dict[str, Any]) -> Instrument:
    fields = dict(data)
    fields["sessions"] = tuple(SessionPhase(start, state) for start, state in data["sessions"])
    return Instrument(**fields)
