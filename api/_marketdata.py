"""Public market data, built from the core's events after each commit.

``MarketData`` keeps its own copy of every book's levels (from BOOK events),
the recent trades, the day's statistics and each instrument's trading state
and auction indicative, and publishes five channels per instrument:

    book    full depth: a snapshot on subscribe (or on request), then one delta
            per command that changed the book (changed levels, lots 0 = gone);
            seq per instrument, gapless: a client that sees seq != last + 1
            asks for a snapshot
    top     the best BOOK_TOP_LEVELS levels per side, whole, whenever the book
            changed; its seq is the book seq it reflects (gaps are normal:
            every message is complete)
    trades  the trades of one command; snapshot = the last TRADES_KEPT trades
    ticker  the day's statistics after each trade or state change
    state   trading state, reference price and auction indicative

The day is the exchange's calendar day, China Standard Time (UTC+8). The
statistics roll over to a new day (open, high, low, last, volume, turnover and
trade count start again) whenever a trade, a state change or a ticker message
(published or asked for as a snapshot) falls on a later day than the one they
count: a ticker published at the morning's state change never shows
yesterday's figures.

Sequence numbers of trades, ticker and state count their own messages per
instrument, gapless. Every book and top message carries ``checksum``: the
CRC-32 (unsigned) of the UTF-8 string

    "bids:" + ",".join(f"{price}:{lots}" for the best CHECKSUM_LEVELS bids, best first)
    + ";asks:" + ",".join(... the best CHECKSUM_LEVELS asks, best first)

with prices exactly as on the wire (e.g. ``bids:3500.00:12,3499.00:3;asks:3501.00:4``).

Everything runs on the gateway's event loop: ``apply_batch`` is called with
the sequencer's post-commit batches, ``load`` once at start with the
recovered core and the ``TradeHistory`` that ``Queries.trade_history``
(api/_queries.py) reads from the ``trades`` table (the read model written in the same transaction as
the journal, so it holds exactly the trades of the recovered core): the
current day's statistics and the last TRADES_KEPT trades of each instrument,
as they were before the restart. The core keeps no trades (a deal has no
time), so the table is where they come from; the read is a few indexed
queries whatever the table's size (see ``Queries.trade_history``).
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any, Protocol

import orjson
from sortedcontainers import SortedDict

from api._limits import BOOK_TOP_LEVELS, CHECKSUM_LEVELS, TRADES_KEPT
from exchange import Ack, Core
from matching import (
    AUCTION,
    BOOK,
    BREAK,
    BUY,
    CLOSED,
    CONTINUOUS,
    HALTED,
    INDICATIVE,
    REJECTED,
    SELL,
    STATE,
    TRADE,
    Instrument,
    ListInstrument,
)

__all__ = [
    "STATE_WIRE_NAMES",
    "InstrumentData",
    "MarketData",
    "Subscriber",
    "TradeHistory",
    "book_checksum",
    "exchange_day",
    "exchange_day_start_ns",
]

STATE_WIRE_NAMES = {CLOSED: "closed", AUCTION: "auction", CONTINUOUS: "continuous", HALTED: "halted", BREAK: "break"}
_AGGRESSOR = {0: "buy", 1: "sell", -1: "auction"}
_NS_PER_DAY = 86_400 * 1_000_000_000
_UTC_OFFSET_NS = 8 * 3_600 * 1_000_000_000  # exchange calendar day: China Standard Time
_dumps = orjson.dumps


def exchange_day(ts_ns: int) -> int:
    """The exchange's calendar day (China Standard Time) of a time, as days since 1970-01-01."""
    return (ts_ns + _UTC_OFFSET_NS) // _NS_PER_DAY


def exchange_day_start_ns(day: int) -> int:
    """The first nanosecond (Unix time) of the exchange day `day` (see ``exchange_day``)."""
    return day * _NS_PER_DAY - _UTC_OFFSET_NS


class Subscriber(Protocol):
    def push(self, data: bytes) -> None: ...


def book_checksum(bids: Iterable[tuple[str, int]], asks: Iterable[tuple[str, int]]) -> int:
    """CRC-32 of the canonical top-of-book string (the arguments best first, already cut to the checksum depth)."""
    text = "bids:" + ",".join(f"{p}:{q}" for p, q in bids) + ";asks:" + ",".join(f"{p}:{q}" for p, q in asks)
    return zlib.crc32(text.encode())


class InstrumentData:
    """Everything published about one instrument."""

    __slots__ = (
        "asks",
        "bids",
        "book_seq",
        "day",
        "high_ticks",
        "indicative",
        "instrument",
        "last_ticks",
        "low_ticks",
        "open_ticks",
        "reference_ticks",
        "state",
        "state_seq",
        "ticker_seq",
        "trade_count",
        "trades",
        "trades_seq",
        "turnover_fen",
        "volume_lots",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.bids: SortedDict = SortedDict()  # price_ticks -> lots; best = last
        self.asks: SortedDict = SortedDict()  # best = first
        self.book_seq = 0
        self.trades_seq = 0
        self.ticker_seq = 0
        self.state_seq = 0
        self.state = CLOSED
        self.reference_ticks = instrument.reference_price_ticks
        self.indicative: tuple[int, int, int] = (0, 0, 0)
        self.trades: deque[dict[str, Any]] = deque(maxlen=TRADES_KEPT)
        self.day = -1
        self.open_ticks = 0
        self.high_ticks = 0
        self.low_ticks = 0
        self.last_ticks = 0
        self.volume_lots = 0
        self.turnover_fen = 0
        self.trade_count = 0

    def price(self, ticks: int) -> str:
        return self.instrument.ticks_to_price(ticks)

    def top(self, depth: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        bids = self.bids
        asks = self.asks
        price = self.instrument.ticks_to_price
        top_bids = [(price(p), bids[p]) for p in islice(reversed(bids), depth)]
        top_asks = [(price(p), asks[p]) for p in islice(asks, depth)]
        return top_bids, top_asks

    def checksum(self) -> int:
        bids, asks = self.top(CHECKSUM_LEVELS)
        return book_checksum(bids, asks)

    def band(self) -> tuple[int, int]:
        ref = self.reference_ticks
        bps = self.instrument.price_band_bps
        return max(1, ref - ref * bps // 10_000), ref + ref * bps // 10_000


class TradeHistory:
    """What the trades table says at the start (``Queries.trade_history``): the statistics of the
    day `day` per instrument (``totals``: open, high, low and last price in ticks, volume in lots,
    the sum of price_ticks * quantity_lots, trade count; instruments without a trade that day are
    absent) and each instrument's last TRADES_KEPT trades, oldest first (``recent``: trade_id,
    ts_ns, price_ticks, quantity_lots, aggressor as in the table)."""

    __slots__ = ("day", "recent", "totals")

    def __init__(
        self,
        day: int,
        totals: dict[str, tuple[int, int, int, int, int, int, int]],
        recent: dict[str, list[tuple[int, int, int, int, int]]],
    ) -> None:
        self.day = day
        self.totals = totals
        self.recent = recent


def _roll(data: InstrumentData, ts_ns: int) -> None:
    """Start a new day's statistics when `ts_ns` falls on a later exchange day than they count."""
    day = exchange_day(ts_ns)
    if day > data.day:
        data.day = day
        data.open_ticks = data.high_ticks = data.low_ticks = data.last_ticks = 0
        data.volume_lots = data.turnover_fen = data.trade_count = 0


def _restore(data: InstrumentData, history: TradeHistory) -> None:
    """The day's statistics and the recent trades of one instrument, from the trades table."""
    symbol = data.instrument.symbol
    price = data.price
    for trade_id, ts_ns, price_ticks, quantity_lots, aggressor in history.recent.get(symbol, []):
        data.trades.append(
            {
                "trade_id": trade_id,
                "ts_ns": ts_ns,
                "price": price(price_ticks),
                "quantity_lots": quantity_lots,
                "aggressor": _AGGRESSOR[aggressor],
            }
        )
    data.day = history.day
    totals = history.totals.get(symbol)
    if totals is not None:
        data.open_ticks, data.high_ticks, data.low_ticks, data.last_ticks = totals[0], totals[1], totals[2], totals[3]
        data.volume_lots = totals[4]
        data.turnover_fen = data.instrument.notional_fen(totals[5], 1)
        data.trade_count = totals[6]


class MarketData:
    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.instruments: dict[str, InstrumentData] = {}
        self.subscribers: dict[tuple[str, str], set[Subscriber]] = {}
        # when a ticker snapshot is built (for the day roll-over); published messages use their command's stamp
        self.clock_ns = clock_ns

    # ------------------------------------------------------------ building

    def load(self, core: Core, history: TradeHistory | None = None) -> None:
        """Take the books, states and indicatives of the recovered core (before the writer thread
        starts) and, from `history` (``Queries.trade_history`` on the same database), the day's
        statistics and the recent trades. Without a history they start empty."""
        for symbol, book in core.matching.books.items():
            data = InstrumentData(book.instrument)
            data.state = book.state
            data.reference_ticks = book.reference_price_ticks or book.instrument.reference_price_ticks
            data.indicative = tuple(book.indicative)  # type: ignore[assignment]
            for price, lots in book.level_lots[BUY].items():
                if lots:
                    data.bids[price] = lots
            for price, lots in book.level_lots[SELL].items():
                if lots:
                    data.asks[price] = lots
            if history is not None:
                _restore(data, history)
            self.instruments[symbol] = data

    def apply_batch(self, batch: Sequence[tuple[Any, Ack]]) -> None:
        for command, ack in batch:
            self.apply(command, ack)

    def apply(self, command: Any, ack: Ack) -> None:
        """Fold one command's events in and publish what changed."""
        book_changes: dict[str, tuple[dict[int, int], dict[int, int]]] | None = None
        trades: dict[str, list[dict[str, Any]]] | None = None
        states: set[str] | None = None
        instruments = self.instruments
        ts_ns = ack.ts_ns
        if (
            type(command) is ListInstrument
            and command.instrument.symbol not in instruments
            and not any(e[0] == REJECTED for e in ack.events)
        ):
            # known before its events: the listing's own STATE event names it
            instruments[command.instrument.symbol] = InstrumentData(command.instrument)
        for event in ack.events:
            kind = event[0]
            if kind == BOOK:
                _, _seq, symbol, side, price, lots = event
                if book_changes is None:
                    book_changes = {}
                changes = book_changes.get(symbol)
                if changes is None:
                    changes = book_changes[symbol] = ({}, {})
                changes[side][price] = lots
                levels = instruments[symbol].bids if side == BUY else instruments[symbol].asks
                if lots:
                    levels[price] = lots
                else:
                    levels.pop(price, None)
            elif kind == TRADE:
                symbol = event[3]
                data = instruments[symbol]
                price, qty = event[4], event[5]
                trade = {
                    "trade_id": event[2],
                    "ts_ns": ts_ns,
                    "price": data.price(price),
                    "quantity_lots": qty,
                    "aggressor": _AGGRESSOR[event[12]],
                }
                data.trades.append(trade)
                self._count_trade(data, price, qty, ts_ns)
                if trades is None:
                    trades = {}
                trades.setdefault(symbol, []).append(trade)
            elif kind == STATE:
                data = instruments[event[2]]
                _roll(data, ts_ns)
                data.state = event[3]
                data.reference_ticks = event[4]
                if states is None:
                    states = set()
                states.add(event[2])
            elif kind == INDICATIVE:
                data = instruments[event[2]]
                data.indicative = (event[3], event[4], event[5])
                if states is None:
                    states = set()
                states.add(event[2])
        if book_changes is not None:
            for symbol, (bid_changes, ask_changes) in book_changes.items():
                self._publish_book(instruments[symbol], bid_changes, ask_changes)
        if trades is not None:
            for symbol, items in trades.items():
                data = instruments[symbol]
                data.trades_seq += 1
                self._send(("trades", symbol), lambda d=data, t=items: self._trades_message(d, t, False))
                self._publish_ticker(data, ts_ns)
        if states is not None:
            for symbol in states:
                data = instruments[symbol]
                data.state_seq += 1
                self._send(("state", symbol), lambda d=data: self._state_message(d))
                if trades is None or symbol not in trades:
                    self._publish_ticker(data, ts_ns)

    def _count_trade(self, data: InstrumentData, price: int, qty: int, ts_ns: int) -> None:
        _roll(data, ts_ns)
        if data.trade_count == 0:
            data.open_ticks = data.high_ticks = data.low_ticks = price
        else:
            data.high_ticks = max(data.high_ticks, price)
            data.low_ticks = min(data.low_ticks, price)
        data.last_ticks = price
        data.volume_lots += qty
        data.turnover_fen += data.instrument.notional_fen(price, qty)
        data.trade_count += 1

    # ---------------------------------------------------------- publishing

    def _send(self, key: tuple[str, str], build: Any) -> None:
        subscribers = self.subscribers.get(key)
        if not subscribers:
            return
        data = build()
        for subscriber in tuple(subscribers):
            subscriber.push(data)

    def _publish_book(self, data: InstrumentData, bid_changes: dict[int, int], ask_changes: dict[int, int]) -> None:
        data.book_seq += 1
        symbol = data.instrument.symbol
        book_subs = self.subscribers.get(("book", symbol))
        top_subs = self.subscribers.get(("top", symbol))
        if not book_subs and not top_subs:
            return
        checksum = data.checksum()
        if book_subs:
            price = data.price
            message = _dumps(
                {
                    "type": "book",
                    "instrument": symbol,
                    "seq": data.book_seq,
                    "snapshot": False,
                    "bids": [(price(p), q) for p, q in sorted(bid_changes.items(), reverse=True)],
                    "asks": [(price(p), q) for p, q in sorted(ask_changes.items())],
                    "checksum": checksum,
                }
            )
            for subscriber in tuple(book_subs):
                subscriber.push(message)
        if top_subs:
            message = self.top_message(data, checksum)
            for subscriber in tuple(top_subs):
                subscriber.push(message)

    def _publish_ticker(self, data: InstrumentData, ts_ns: int) -> None:
        _roll(data, ts_ns)
        data.ticker_seq += 1
        self._send(("ticker", data.instrument.symbol), lambda: self._ticker_message(data))

    # ------------------------------------------------------------ messages

    def snapshot(self, channel: str, symbol: str) -> bytes:
        """The snapshot message of a public channel (book, top, trades, ticker, state)."""
        data = self.instruments[symbol]
        if channel == "book":
            price = data.price
            return _dumps(
                {
                    "type": "book",
                    "instrument": symbol,
                    "seq": data.book_seq,
                    "snapshot": True,
                    "bids": [(price(p), data.bids[p]) for p in reversed(data.bids)],
                    "asks": [(price(p), q) for p, q in data.asks.items()],
                    "checksum": data.checksum(),
                }
            )
        if channel == "top":
            return self.top_message(data, data.checksum())
        if channel == "trades":
            return self._trades_message(data, list(data.trades), True)
        if channel == "ticker":
            _roll(data, self.clock_ns())
            return self._ticker_message(data)
        assert channel == "state", channel
        return self._state_message(data)

    def last_seq(self, channel: str, symbol: str) -> int:
        data = self.instruments[symbol]
        if channel in ("book", "top"):
            return data.book_seq
        if channel == "trades":
            return data.trades_seq
        if channel == "ticker":
            return data.ticker_seq
        assert channel == "state", channel
        return data.state_seq

    @staticmethod
    def top_message(data: InstrumentData, checksum: int) -> bytes:
        bids, asks = data.top(BOOK_TOP_LEVELS)
        return _dumps(
            {
                "type": "top",
                "instrument": data.instrument.symbol,
                "seq": data.book_seq,
                "bids": bids,
                "asks": asks,
                "checksum": checksum,
            }
        )

    @staticmethod
    def _trades_message(data: InstrumentData, trades: list[dict[str, Any]], snapshot: bool) -> bytes:
        return _dumps(
            {
                "type": "trades",
                "instrument": data.instrument.symbol,
                "seq": data.trades_seq,
                "snapshot": snapshot,
                "trades": trades,
            }
        )

    @staticmethod
    def _ticker_message(data: InstrumentData) -> bytes:
        price = data.price
        traded = data.trade_count > 0
        best_bid = data.bids.peekitem(-1)[0] if data.bids else 0
        best_ask = data.asks.peekitem(0)[0] if data.asks else 0
        turnover = data.turnover_fen
        return _dumps(
            {
                "type": "ticker",
                "instrument": data.instrument.symbol,
                "seq": data.ticker_seq,
                "last": price(data.last_ticks) if traded else None,
                "open": price(data.open_ticks) if traded else None,
                "high": price(data.high_ticks) if traded else None,
                "low": price(data.low_ticks) if traded else None,
                "volume_lots": data.volume_lots,
                "turnover": f"{turnover // 100}.{turnover % 100:02d}",
                "trade_count": data.trade_count,
                "best_bid": price(best_bid) if best_bid else None,
                "best_ask": price(best_ask) if best_ask else None,
                "reference_price": price(data.reference_ticks),
            }
        )

    @staticmethod
    def _state_message(data: InstrumentData) -> bytes:
        price_ticks, volume, imbalance = data.indicative
        return _dumps(
            {
                "type": "state",
                "instrument": data.instrument.symbol,
                "seq": data.state_seq,
                "state": STATE_WIRE_NAMES[data.state],
                "reference_price": data.price(data.reference_ticks),
                "indicative_price": data.price(price_ticks) if price_ticks else None,
                "indicative_volume_lots": volume,
                "indicative_imbalance_lots": imbalance,
            }
        )

    # --------------------------------------------------------- subscribers

    def subscribe(self, channel: str, symbol: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault((channel, symbol), set()).add(subscriber)

    def unsubscribe(self, channel: str, symbol: str, subscriber: Subscriber) -> None:
        subs = self.subscribers.get((channel, symbol))
        if subs is not None:
            subs.discard(subscriber)
            if not subs:
                del self.subscribers[(channel, symbol)]
