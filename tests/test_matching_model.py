"""The matching engine against reference models, step by step.

``EngineAgainstModel``: one instrument in continuous trading, the simple reference
book of tests/matching_model.py; hypothesis drives both with the same random
commands (all order types, self-trade prevention modes, amends, cancels, mass
cancels) and after every step compares outcomes, trades and the whole book queue
by queue, and checks the engine's invariants, including filled + open +
cancelled = ordered for every order ever entered (tracked from the events alone).

``SessionsAndLimitsAgainstModel``: two instruments through every trading state
(CLOSED, AUCTION and its uncross, CONTINUOUS, HALTED, BREAK; valid and invalid
moves), DAY orders expiring at the close, the reference price moving to the
last trade, the day's client order ids forgotten, mass cancels by account and
by account and instrument, and small ``Limits`` drawn per run, against
``ReferenceExchange`` (below), written from docs/matching.md's rules. It
compares every answer exactly: the reject code, the DUPLICATE's first seq and
outcome, the trades and their aggressor, every cancel with its reason, the
STATE's reference price; and after every step both books queue by queue, the
levels published in BOOK events, the auction's published INDICATIVE, and the
invariants above.

A failing run prints its steps and a @reproduce_failure blob (tests/conftest.py's
profile), which replays it exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from matching import (
    ACCEPTED,
    AMENDED,
    AUCTION,
    BOOK,
    BREAK,
    BUY,
    CANCELLED,
    CLOSED,
    CONTINUOUS,
    DAY,
    DUPLICATE,
    FOK,
    GTC,
    HALTED,
    INDICATIVE,
    IOC,
    LIMIT,
    LISTED,
    MARKET,
    REJECTED,
    SELL,
    STATE,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_DECREMENT,
    STP_NONE,
    TRADE,
    AmendOrder,
    CancelOrder,
    CancelReason,
    Event,
    Instrument,
    Limits,
    ListInstrument,
    MassCancel,
    MatchingCommand,
    MatchingEngine,
    NewOrder,
    RejectCode,
    SetTradingState,
)
from tests.matching_model import ModelBook

INSTRUMENT = Instrument(
    symbol="RB",
    commodity="steel",
    product="rebar",
    grade="HRB400E",
    warehouse_group="east",
    lot_size_t=10,
    tick_fen=100,
    reference_price_ticks=100,
    price_band_bps=1000,
    min_lots=1,
    max_lots=20,
)
ACCOUNTS = ("A", "B", "C")


class EngineAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine()
        out: list[Any] = []
        self.engine.apply(ListInstrument(INSTRUMENT), 1, out)
        self.engine.apply(SetTradingState("RB", CONTINUOUS), 2, out)
        self.model = ModelBook(INSTRUMENT.band_low_ticks, INSTRUMENT.band_high_ticks, 1, 20)
        self.seq = 2
        self.ids: list[tuple[int, str]] = []
        self.tracked: dict[int, list[int]] = {}  # order id -> [ordered, filled, cancelled]
        self.trades: list[tuple[int, int, int, int]] = []

    def _apply(self, command: Any) -> list[Any]:
        self.seq += 1
        out: list[Any] = []
        self.engine.apply(command, self.seq, out)
        for e in out:
            assert e[1] == self.seq
            track_lots(self.tracked, e)
            if e[0] == TRADE:
                self.trades.append((e[4], e[5], e[6], e[9]))
        return out

    @rule(
        account=st.sampled_from(ACCOUNTS),
        clid=st.integers(1, 40),
        side=st.sampled_from((BUY, SELL)),
        price=st.integers(85, 115),
        qty=st.integers(0, 22),
        tif=st.integers(0, 3),
        order_type=st.sampled_from((0, 0, 0, 1)),
        post_only=st.sampled_from((False, False, False, True)),
        stp=st.integers(0, 4),
    )
    def new_order(
        self,
        account: str,
        clid: int,
        side: int,
        price: int,
        qty: int,
        tif: int,
        order_type: int,
        post_only: bool,
        stp: int,
    ) -> None:
        out = self._apply(NewOrder(account, "RB", f"c{clid}", side, price, qty, tif, order_type, post_only, stp))
        expected = self.model.new(self.seq, account, f"c{clid}", side, price, qty, tif, order_type, post_only, stp)
        kinds = {e[0] for e in out}
        got = "duplicate" if DUPLICATE in kinds else "rejected" if REJECTED in kinds else "accepted"
        assert got == expected, (got, expected, out)
        if got == "accepted":
            self.ids.append((self.seq, account))

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), other_account=st.booleans())
    def cancel(self, data: st.DataObject, other_account: bool) -> None:
        order_id, account = data.draw(st.sampled_from(self.ids))
        if other_account:
            account = "B" if account != "B" else "C"
        out = self._apply(CancelOrder(account, order_id))
        ok = self.model.cancel(order_id, account)
        assert (REJECTED not in {e[0] for e in out}) == ok, out

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), price=st.integers(85, 115), total=st.integers(0, 22))
    def amend(self, data: st.DataObject, price: int, total: int) -> None:
        order_id, account = data.draw(st.sampled_from(self.ids))
        out = self._apply(AmendOrder(account, order_id, price, total))
        ok = self.model.amend(order_id, account, price, total)
        assert (REJECTED not in {e[0] for e in out}) == ok, out

    @rule(account=st.sampled_from(ACCOUNTS))
    def mass_cancel(self, account: str) -> None:
        self._apply(MassCancel(account))
        self.model.mass_cancel(account)

    @invariant()
    def same_book_and_trades(self) -> None:
        assert self.trades == self.model.trades
        for side in (BUY, SELL):
            book = self.engine.books["RB"]
            engine_levels = [
                (p, [(o.order_id, o.open_lots) for o in book.levels[side][p].values()])
                for p in book.sorted_prices(side)
            ]
            assert engine_levels == self.model.levels(side), side

    @invariant()
    def engine_invariants(self) -> None:
        assert_conserved(self.engine, self.tracked)


def track_lots(tracked: dict[int, list[int]], e: Any) -> None:
    """Follow one event in `tracked` (order id -> [lots ordered, filled, cancelled])."""
    kind = e[0]
    if kind == ACCEPTED:
        tracked[e[2]] = [e[8], 0, 0]
    elif kind == TRADE:
        tracked[e[6]][1] += e[5]
        tracked[e[9]][1] += e[5]
    elif kind == CANCELLED:
        tracked[e[2]][2] += e[7]
    elif kind == AMENDED:
        tracked[e[2]][0] = e[6]


def assert_conserved(engine: MatchingEngine, tracked: Mapping[int, Sequence[int]]) -> None:
    """The engine's own invariants, and filled + open + cancelled = ordered for every order seen
    (`tracked`: order id -> lots ordered, filled and cancelled, summed from the events)."""
    engine.check_invariants()
    for order_id, (ordered, filled, cancelled) in tracked.items():
        order = engine.orders.get(order_id)
        open_lots = order.open_lots if order else 0
        assert filled + open_lots + cancelled == ordered, (order_id, ordered, filled, open_lots, cancelled)


EngineAgainstModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestEngineAgainstModel = EngineAgainstModel.TestCase


# ---------------------------------------------------------------------------------------------
# Sessions, limits and every answer: a second machine against a reference exchange written from
# docs/matching.md's rules (not from the engine's code): two instruments, every trading state,
# small limits, and the exact answer to every command.


@dataclass(eq=False)  # identity: two orders are never "equal"
class RefOrder:
    """An order as the rules describe it."""

    order_id: int
    account: str
    symbol: str
    side: int
    price: int
    open_lots: int
    filled_lots: int
    cancelled_lots: int
    time_in_force: int
    post_only: bool
    stp: int
    arrival: int  # when it last joined the back of its level: time priority


@dataclass
class RefInstrument:
    symbol: str
    reference: int
    band_bps: int
    min_lots: int
    max_lots: int
    state: int = CLOSED
    last_price: int = 0

    def band(self) -> tuple[int, int]:
        """reference +- reference * band_bps / 10000, the band rounded down."""
        width = self.reference * self.band_bps // 10_000
        return self.reference - width, self.reference + width


@dataclass
class Verdict:
    """What the rules answer: rejected with one of `codes` (a command that breaks several rules
    may name any of them; the docs give no order), a DUPLICATE repeating `duplicate` (first seq,
    first code), or accepted (no codes) with `price` the price the order enters at."""

    codes: set[int] = field(default_factory=set)
    duplicate: tuple[int, int] | None = None
    price: int = 0


# Moves between trading states as docs/matching.md draws and describes them: a closed instrument
# opens into the call auction or straight into continuous trading; the auction uncrosses into
# continuous trading or is closed; continuous trading closes or goes back to an auction; any open
# state may halt, and a halt ends in an auction, continuous trading or the close. BREAK (a
# scheduled pause, "like a halt", matching/_types.py) is not in the diagram: here it interrupts
# continuous trading and ends like a halt, or in a halt.
MOVES: dict[int, set[int]] = {
    CLOSED: {AUCTION, CONTINUOUS},
    AUCTION: {CONTINUOUS, CLOSED, HALTED},
    CONTINUOUS: {CLOSED, AUCTION, HALTED, BREAK},
    HALTED: {AUCTION, CONTINUOUS, CLOSED},
    BREAK: {AUCTION, CONTINUOUS, CLOSED, HALTED},
}


def naive_uncross(bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int) -> tuple[int, int, int]:
    """The uncross rule word for word, over every tick between the lowest and the highest limit
    price: the most executable volume, then the smallest absolute imbalance, then the price
    nearest the reference, then the lower price. (price, volume, buy volume less sell volume),
    (0, 0, 0) when nothing would trade."""
    prices = [p for p, _ in bids] + [p for p, _ in asks]
    if not prices:
        return (0, 0, 0)
    candidates = []
    for p in range(min(prices), max(prices) + 1):
        buy = sum(lots for q, lots in bids if q >= p)
        sell = sum(lots for q, lots in asks if q <= p)
        if min(buy, sell) > 0:
            candidates.append((p, min(buy, sell), buy - sell))
    if not candidates:
        return (0, 0, 0)
    most = max(volume for _, volume, _ in candidates)
    candidates = [c for c in candidates if c[1] == most]
    least = min(abs(imbalance) for _, _, imbalance in candidates)
    candidates = [c for c in candidates if abs(c[2]) == least]
    nearest = min(abs(p - reference) for p, _, _ in candidates)
    candidates = [c for c in candidates if abs(c[0] - reference) == nearest]
    return min(candidates)


class ReferenceExchange:
    """Every instrument's orders in one list; each question answered by filtering and sorting
    that list. Slow and plain, so that each rule reads as the docs state it."""

    def __init__(self, limits: Limits, instruments: list[RefInstrument]) -> None:
        self.limits = limits
        self.instruments = {i.symbol: i for i in instruments}
        self.orders: list[RefOrder] = []  # resting orders
        self.first_answers: dict[str, dict[str, tuple[int, int]]] = {}  # account -> clid -> (seq, code)
        self.clock = 0
        self.trades: list[tuple[str, int, int, int, int, int]] = []  # this command's
        self.cancels: list[tuple[int, int, int]] = []  # this command's (order id, lots, reason)

    def begin(self) -> None:
        self.trades = []
        self.cancels = []

    # ------------------------------------------------------------------ the book

    def side(self, symbol: str, side: int) -> list[RefOrder]:
        """One side's orders in priority: best price first, then arrival."""
        mine = [o for o in self.orders if o.symbol == symbol and o.side == side]
        return sorted(mine, key=lambda o: (-o.price if side == BUY else o.price, o.arrival))

    def queues(self, symbol: str, side: int) -> list[tuple[int, list[tuple[int, int]]]]:
        """[(price, [(order id, open lots), ...]), ...], best price first, queues in arrival order."""
        out: list[tuple[int, list[tuple[int, int]]]] = []
        for o in self.side(symbol, side):
            if not out or out[-1][0] != o.price:
                out.append((o.price, []))
            out[-1][1].append((o.order_id, o.open_lots))
        return out

    def level_totals(self, symbol: str, side: int) -> dict[int, int]:
        totals: dict[int, int] = {}
        for o in self.side(symbol, side):
            totals[o.price] = totals.get(o.price, 0) + o.open_lots
        return totals

    def crossed(self, symbol: str) -> bool:
        bids, asks = self.side(symbol, BUY), self.side(symbol, SELL)
        return bool(bids and asks) and bids[0].price >= asks[0].price

    def uncross_now(self, symbol: str) -> tuple[int, int, int]:
        return naive_uncross(
            [(o.price, o.open_lots) for o in self.side(symbol, BUY)],
            [(o.price, o.open_lots) for o in self.side(symbol, SELL)],
            self.instruments[symbol].reference,
        )

    def _find(self, account: str, order_id: int) -> RefOrder | None:
        for o in self.orders:
            if o.order_id == order_id and o.account == account:
                return o
        return None

    def _takes(self, order: RefOrder, price: int) -> list[RefOrder]:
        """The opposite orders an order at `price` would meet, in the order it meets them."""
        return [
            o
            for o in self.side(order.symbol, 1 - order.side)
            if (o.price <= price if order.side == BUY else o.price >= price)
        ]

    def _cancel(self, order: RefOrder, lots: int, reason: int) -> None:
        order.open_lots -= lots
        order.cancelled_lots += lots
        self.cancels.append((order.order_id, lots, reason))
        if not order.open_lots and order in self.orders:
            self.orders.remove(order)

    def _trade(self, price: int, lots: int, buy: RefOrder, sell: RefOrder, aggressor: int) -> None:
        for o in (buy, sell):
            o.open_lots -= lots
            o.filled_lots += lots
            if not o.open_lots and o in self.orders:
                self.orders.remove(o)
        self.trades.append((buy.symbol, price, lots, buy.order_id, sell.order_id, aggressor))
        self.instruments[buy.symbol].last_price = price

    def _rest(self, order: RefOrder) -> None:
        """Join the back of its level; the part that would open a level too many is cancelled."""
        prices = {o.price for o in self.orders if o.symbol == order.symbol and o.side == order.side}
        if order.price not in prices and len(prices) >= self.limits.max_levels_per_side:
            self._cancel(order, order.open_lots, CancelReason.LEVEL_LIMIT)
            return
        self.clock += 1
        order.arrival = self.clock
        self.orders.append(order)

    def _match(self, taker: RefOrder) -> int | None:
        """Trade an incoming order against the book (continuous trading); the reason its rest
        may not rest, or None."""
        fills = 0
        while taker.open_lots:
            makers = self._takes(taker, taker.price)
            if not makers:
                return None
            maker = makers[0]
            if maker.account == taker.account and taker.stp != STP_NONE:
                if taker.stp == STP_CANCEL_NEWEST:
                    return CancelReason.SELF_TRADE
                if taker.stp == STP_DECREMENT:
                    cut = min(taker.open_lots, maker.open_lots)
                    self._cancel(maker, cut, CancelReason.SELF_TRADE)
                    self._cancel(taker, cut, CancelReason.SELF_TRADE)
                    continue
                self._cancel(maker, maker.open_lots, CancelReason.SELF_TRADE)
                if taker.stp == STP_CANCEL_BOTH:
                    return CancelReason.SELF_TRADE
                continue  # CANCEL_OLDEST
            lots = min(taker.open_lots, maker.open_lots)
            buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
            self._trade(maker.price, lots, buy, sell, taker.side)
            fills += 1
            if fills == self.limits.max_fills_per_order and taker.open_lots:
                return CancelReason.FILL_LIMIT
        return None

    def _enter(self, order: RefOrder) -> None:
        """An incoming order in continuous trading: trade, then rest or cancel the rest."""
        stop = self._match(order)
        if not order.open_lots:
            return
        if stop is None and order.time_in_force in (IOC, FOK):
            stop = CancelReason.IOC_REMAINDER
        if stop is None:
            self._rest(order)
        else:
            self._cancel(order, order.open_lots, stop)

    def _fills_in_full(self, order: RefOrder) -> bool:
        """FOK: would matching fill it in full? Tried on a copy of the whole exchange."""
        trial = copy.deepcopy(self, {id(self.limits): self.limits})  # (a compiled Limits does not copy)
        taker = copy.deepcopy(order)
        trial._match(taker)
        return taker.filled_lots == order.open_lots

    # ------------------------------------------------------------------ commands

    def _order_faults(self, c: NewOrder, ids_used: int, clid_ok: bool) -> set[int]:
        """Every validation rule the new order breaks."""
        codes: set[int] = set()
        tif = c.time_in_force
        if not clid_ok:
            codes.add(RejectCode.BAD_CLIENT_ORDER_ID)
        if ids_used >= self.limits.max_client_order_ids_per_account:
            codes.add(RejectCode.TOO_MANY_ORDERS)
        if c.side not in (BUY, SELL):
            codes.add(RejectCode.BAD_SIDE)
        if tif not in (GTC, DAY, IOC, FOK):
            codes.add(RejectCode.BAD_TIME_IN_FORCE)
        if c.order_type not in (LIMIT, MARKET):
            codes.add(RejectCode.BAD_ORDER_TYPE)
        if c.stp_mode not in (STP_NONE, STP_CANCEL_NEWEST, STP_CANCEL_OLDEST, STP_CANCEL_BOTH, STP_DECREMENT):
            codes.add(RejectCode.BAD_STP_MODE)
        if c.order_type == MARKET and tif not in (IOC, FOK):
            codes.add(RejectCode.MARKET_ORDER_NEEDS_IOC_FOK)
        if c.post_only and (c.order_type != LIMIT or tif not in (GTC, DAY)):
            codes.add(RejectCode.POST_ONLY_NEEDS_LIMIT)
        if tif in (GTC, DAY) and sum(o.account == c.account for o in self.orders) >= (
            self.limits.max_open_orders_per_account
        ):
            codes.add(RejectCode.TOO_MANY_ORDERS)
        inst = self.instruments.get(c.instrument)
        if inst is None:
            codes.add(RejectCode.UNKNOWN_INSTRUMENT)
            return codes
        if inst.state == HALTED:
            codes.add(RejectCode.MARKET_HALTED)
        elif inst.state not in (AUCTION, CONTINUOUS):
            codes.add(RejectCode.MARKET_CLOSED)  # closed, or a break (tests/test_matching_engine.py)
        if inst.state == AUCTION and (tif in (IOC, FOK) or c.order_type == MARKET):
            codes.add(RejectCode.BAD_TIME_IN_FORCE)  # the auction refuses IOC, FOK and market orders
        if c.quantity_lots < inst.min_lots:
            codes.add(RejectCode.QUANTITY_BELOW_MIN)
        if c.quantity_lots > inst.max_lots:
            codes.add(RejectCode.QUANTITY_ABOVE_MAX)
        if c.order_type == LIMIT:
            low, high = inst.band()
            if c.price_ticks <= 0:
                codes.add(RejectCode.PRICE_NOT_POSITIVE)
            if not low <= c.price_ticks <= high:
                codes.add(RejectCode.PRICE_OUT_OF_BAND)
        return codes

    def new_order(self, seq: int, c: NewOrder) -> Verdict:
        clid = c.client_order_id
        clid_ok = 0 < len(clid) <= 36 and clid.isprintable()
        memory = self.first_answers.setdefault(c.account, {})
        if clid_ok and clid in memory:
            return Verdict(duplicate=memory[clid])
        codes = self._order_faults(c, len(memory), clid_ok)
        inst = self.instruments.get(c.instrument)
        if codes or inst is None:
            return self._refuse(memory, clid if clid_ok else "", seq, codes)
        price = c.price_ticks
        if c.order_type == MARKET:  # protected by the band
            price = inst.band()[1] if c.side == BUY else inst.band()[0]
        order = RefOrder(
            seq, c.account, c.instrument, c.side, price, c.quantity_lots, 0, 0, c.time_in_force, c.post_only,
            c.stp_mode, 0,
        )  # fmt: skip
        if inst.state == CONTINUOUS and c.post_only and self._takes(order, price):
            return self._refuse(memory, clid, seq, {RejectCode.POST_ONLY_WOULD_CROSS})
        if inst.state == CONTINUOUS and c.time_in_force == FOK and not self._fills_in_full(order):
            return self._refuse(memory, clid, seq, {RejectCode.FOK_NOT_FILLABLE})
        memory[clid] = (seq, 0)
        if inst.state == AUCTION:
            self._rest(order)  # collects without matching
        else:
            self._enter(order)
        return Verdict(price=price)

    def _refuse(self, memory: dict[str, tuple[int, int]], clid: str, seq: int, codes: set[int]) -> Verdict:
        """A rejected order changes nothing but the memory of its (valid) client order id, while
        that memory is below the account's limit of ids (it is bounded: past it a repeat is refused
        again rather than answered as a duplicate); the code it remembers is the one the engine
        answered (see remember_code)."""
        if clid and len(memory) < self.limits.max_client_order_ids_per_account:
            memory[clid] = (seq, -1)
        return Verdict(codes)

    def remember_code(self, account: str, clid: str, code: int) -> None:
        """The first answer to a rejected order: the engine's code (checked to be one of the
        model's) is what a repeat must carry."""
        memory = self.first_answers.get(account, {})
        if clid in memory:  # an invalid client order id is not remembered
            seq, pending = memory[clid]
            assert pending == -1, (account, clid)
            memory[clid] = (seq, code)

    def cancel(self, c: CancelOrder) -> Verdict:
        order = self._find(c.account, c.order_id)  # another account's order is not found either
        if order is None:
            return Verdict({RejectCode.UNKNOWN_ORDER})
        self._cancel(order, order.open_lots, CancelReason.REQUESTED)  # in any trading state
        return Verdict()

    def amend(self, c: AmendOrder) -> Verdict:
        order = self._find(c.account, c.order_id)
        if order is None:
            return Verdict({RejectCode.UNKNOWN_ORDER})
        inst = self.instruments[order.symbol]
        # The docs say "at or below what has already been filled"; lots a self-trade decrement
        # cancelled are done too (the new total less them all is what stays open).
        done = order.filled_lots + order.cancelled_lots
        total, price = c.quantity_lots, c.price_ticks
        codes: set[int] = set()
        if inst.state == HALTED:
            codes.add(RejectCode.MARKET_HALTED)
        elif inst.state not in (AUCTION, CONTINUOUS):
            codes.add(RejectCode.MARKET_CLOSED)
        low, high = inst.band()
        if not low <= price <= high:
            codes.add(RejectCode.PRICE_OUT_OF_BAND)
        if total > inst.max_lots:
            codes.add(RejectCode.QUANTITY_ABOVE_MAX)
        if done < total < inst.min_lots:
            codes.add(RejectCode.QUANTITY_BELOW_MIN)
        if codes:
            return Verdict(codes)
        if total <= done:  # ends the order rather than failing
            self._cancel(order, order.open_lots, CancelReason.AMENDED_BELOW_FILLED)
            return Verdict()
        new_open = total - done
        if price == order.price and new_open <= order.open_lots:  # keeps its place
            order.open_lots = new_open
            return Verdict()
        crosses = inst.state == CONTINUOUS and bool(self._takes(order, price))
        if crosses and order.post_only:
            return Verdict({RejectCode.POST_ONLY_WOULD_CROSS})
        # Refused TOO_MANY_LEVELS when it would rest on a new level of a full side (its own
        # level, if only it is there, is freed first). One whose new price crosses trades first,
        # and the rest it could not rest is cancelled (level_limit), as a new order's would be:
        # the docs' "would rest" read as "would rest without trading first".
        others = {o.price for o in self.orders if o is not order and o.symbol == order.symbol and o.side == order.side}
        if not crosses and price not in others and len(others) >= self.limits.max_levels_per_side:
            return Verdict({RejectCode.TOO_MANY_LEVELS})
        self.orders.remove(order)  # to the back of its new level, as if new
        order.price = price
        order.open_lots = new_open
        if crosses:
            self._enter(order)
        else:
            self._rest(order)
        return Verdict()

    def mass_cancel(self, c: MassCancel) -> Verdict:
        if c.instrument and c.instrument not in self.instruments:
            return Verdict({RejectCode.UNKNOWN_INSTRUMENT})
        for order in list(self.orders):
            if order.account == c.account and c.instrument in ("", order.symbol):
                self._cancel(order, order.open_lots, CancelReason.MASS_CANCEL)
        return Verdict()

    def set_state(self, c: SetTradingState) -> Verdict:
        inst = self.instruments.get(c.instrument)
        if inst is None:
            return Verdict({RejectCode.UNKNOWN_INSTRUMENT})
        if c.state not in MOVES[inst.state]:
            return Verdict({RejectCode.BAD_STATE})
        inst.state = c.state
        if c.state == CONTINUOUS and self.crossed(inst.symbol):
            self._uncross(inst)
        if c.state == CLOSED:
            for order in list(self.orders):
                if order.symbol == inst.symbol and order.time_in_force == DAY:
                    self._cancel(order, order.open_lots, CancelReason.EXPIRED)
            if inst.last_price:
                inst.reference = inst.last_price
            if all(i.state == CLOSED for i in self.instruments.values()):
                self.first_answers.clear()  # a new trading day
        return Verdict()

    def _uncross(self, inst: RefInstrument) -> None:
        """The call auction's uncross: both sides in priority, every trade at one price, no
        self-trade prevention."""
        price, volume, _ = self.uncross_now(inst.symbol)
        while volume:
            buy, sell = self.side(inst.symbol, BUY)[0], self.side(inst.symbol, SELL)[0]
            assert buy.price >= price >= sell.price
            lots = min(volume, buy.open_lots, sell.open_lots)
            self._trade(price, lots, buy, sell, -1)
            volume -= lots


RB2 = Instrument("RB", "steel", "rebar", "HRB400E", "east", 10, 100, 100, 1000, 1, 20)  # band 90..110
HC2 = Instrument("HC", "steel", "hot-rolled coil", "Q235B", "east", 10, 100, 60, 1500, 2, 12)  # band 51..69
SYMBOLS = ("RB", "RB", "HC", "XX")  # XX is not listed
STATES = (CLOSED, AUCTION, CONTINUOUS, HALTED, BREAK)
CLIENT_ORDER_IDS = ("", "x" * 37, *(f"c{i}" for i in range(1, 31)))  # two invalid ones


def small_or_default(small: tuple[int, ...], default: int) -> st.SearchStrategy[int]:
    """A small limit (hit within a run) in half the runs, else the default."""
    return st.sampled_from((*small, *(default,) * len(small)))


LIMITS = st.builds(
    Limits,
    max_open_orders_per_account=small_or_default((2, 4, 6), 10_000),
    max_levels_per_side=small_or_default((1, 2, 3), 10_000),
    max_fills_per_order=small_or_default((1, 2, 3), 1_000),
    max_client_order_ids_per_account=small_or_default((6, 12, 24), 1_000_000),
)


class SessionsAndLimitsAgainstModel(RuleBasedStateMachine):
    """The engine against ReferenceExchange, command by command: the answer (accepted, the
    reject code, the DUPLICATE's first seq and outcome), the trades (with their aggressor),
    the cancels with their reasons, the STATE's reference price; after every step both books
    queue by queue, the published BOOK levels, the auction's published indicative uncross, and
    the invariants (never crossed in continuous trading, priority, conservation)."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine()
        self.model = ReferenceExchange(Limits(), [])
        self.seq = 0
        self.entered: list[tuple[int, str]] = []  # (order id, account) of every accepted order
        self.tracked: dict[int, list[int]] = {}  # order id -> [ordered, filled, cancelled], from events
        self.published: dict[tuple[str, int], dict[int, int]] = {}  # (symbol, side) -> the BOOK feed's levels
        self.indicative: dict[str, tuple[int, int, int]] = {}  # symbol -> last INDICATIVE

    @initialize(limits=LIMITS, rb_state=st.sampled_from((AUCTION, CONTINUOUS)), hc_state=st.sampled_from(STATES[:3]))
    def open_the_day(self, limits: Limits, rb_state: int, hc_state: int) -> None:
        self.engine = MatchingEngine(limits)
        self.model = ReferenceExchange(
            limits,
            [
                RefInstrument(i.symbol, i.reference_price_ticks, i.price_band_bps, i.min_lots, i.max_lots)
                for i in (RB2, HC2)
            ],
        )
        for inst in (RB2, HC2):
            out = self._apply(ListInstrument(inst))
            listed = (STATE, self.seq, inst.symbol, CLOSED, inst.reference_price_ticks)
            assert out == [(LISTED, self.seq, inst.symbol), listed], out
        self._set_state("RB", rb_state)
        self._set_state("HC", hc_state)

    def _apply(self, command: MatchingCommand) -> list[Event]:
        self.seq += 1
        self.model.begin()
        out: list[Event] = []
        self.engine.apply(command, self.seq, out)
        for e in out:
            assert e[1] == self.seq, e
            track_lots(self.tracked, e)
            if e[0] == BOOK:
                levels = self.published.setdefault((e[2], e[3]), {})
                if e[5]:
                    levels[e[4]] = e[5]
                else:
                    assert e[4] in levels, ("a level that was never published is gone", e)
                    del levels[e[4]]
            elif e[0] == INDICATIVE:
                self.indicative[e[2]] = (e[3], e[4], e[5])
        return out

    def _compare(self, out: list[Event], verdict: Verdict, account: str | None, reference: str) -> None:
        kinds = [e[0] for e in out]
        if verdict.duplicate is not None:
            assert account is not None
            assert out == [(DUPLICATE, self.seq, account, reference, *verdict.duplicate)], (out, verdict)
        elif verdict.codes:
            assert kinds == [REJECTED], (out, verdict)
            assert out[0][4] in verdict.codes, (RejectCode(out[0][4]), sorted(map(RejectCode, verdict.codes)))
            assert out[0][3] == reference, out
            if account is not None:
                assert out[0][2] == account, out
        else:
            assert REJECTED not in kinds, (out, verdict)
            assert DUPLICATE not in kinds, (out, verdict)
        trades = [(e[3], e[4], e[5], e[6], e[9], e[12]) for e in out if e[0] == TRADE]
        assert trades == self.model.trades, (trades, self.model.trades)
        cancels = sorted((e[2], e[7], e[9]) for e in out if e[0] == CANCELLED)
        assert cancels == sorted(self.model.cancels), (cancels, sorted(self.model.cancels))

    def _new_order(self, command: NewOrder) -> None:
        out = self._apply(command)
        verdict = self.model.new_order(self.seq, command)
        self._compare(out, verdict, command.account, command.client_order_id)
        if verdict.codes:
            self.model.remember_code(command.account, command.client_order_id, out[0][4])
        if not verdict.codes and verdict.duplicate is None:
            c = command
            expected = (ACCEPTED, self.seq, self.seq, c.account, c.instrument, c.client_order_id, c.side, verdict.price)
            assert out[0] == (*expected, c.quantity_lots, c.time_in_force), out
            self.entered.append((self.seq, c.account))

    def _price(self, symbol: str, offset: int) -> int:
        inst = self.model.instruments.get(symbol)
        return (inst.reference if inst else 100) + offset

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from(SYMBOLS),
        clid=st.sampled_from(CLIENT_ORDER_IDS),
        side=st.sampled_from((BUY, SELL, BUY, SELL, BUY, SELL, 2)),
        offset=st.integers(-12, 12),
        qty=st.integers(0, 22),
        tif=st.sampled_from((GTC, DAY, IOC, FOK, GTC, DAY, IOC, FOK, 7)),
        order_type=st.sampled_from((LIMIT, LIMIT, LIMIT, LIMIT, MARKET, 5)),
        post_only=st.sampled_from((False, False, False, True)),
        stp=st.sampled_from((0, 1, 2, 3, 4, 9)),
    )
    def new_order(
        self,
        account: str,
        symbol: str,
        clid: str,
        side: int,
        offset: int,
        qty: int,
        tif: int,
        order_type: int,
        post_only: bool,
        stp: int,
    ) -> None:
        price = self._price(symbol, offset)
        self._new_order(NewOrder(account, symbol, clid, side, price, qty, tif, order_type, post_only, stp))

    @rule(
        symbol=st.sampled_from(("RB", "HC")),
        orders=st.lists(
            st.tuples(
                st.sampled_from(ACCOUNTS),
                st.integers(1, 200),
                st.sampled_from((BUY, SELL)),
                st.integers(-2, 6),
                st.integers(1, 12),
                st.sampled_from((GTC, GTC, DAY)),
                st.sampled_from((STP_NONE, STP_CANCEL_NEWEST, STP_NONE, STP_DECREMENT)),
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def resting_orders(self, symbol: str, orders: list[tuple[str, int, int, int, int, int, int]]) -> None:
        """Plain limit orders `distance` ticks from the reference on their own side (a few cross
        it), to build the books up; the books are compared after each."""
        for account, n, side, distance, qty, tif, stp in orders:
            price = self._price(symbol, -distance if side == BUY else distance)
            self._new_order(NewOrder(account, symbol, f"r{n}", side, price, qty, tif, LIMIT, False, stp))
            self.same_books()
            self.conservation()

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from(("RB", "RB", "HC")),
        n=st.integers(1, 200),
        side=st.sampled_from((BUY, SELL)),
        through=st.integers(0, 10),
        qty=st.integers(1, 24),
        sweep=st.sampled_from((None, None, -1, 0, 0, 1)),
        tif_and_type=st.sampled_from(((IOC, LIMIT), (FOK, LIMIT), (GTC, LIMIT), (IOC, MARKET), (FOK, MARKET))),
        stp=st.sampled_from((STP_NONE, STP_NONE, STP_CANCEL_NEWEST, STP_CANCEL_OLDEST, STP_CANCEL_BOTH, STP_DECREMENT)),
    )
    def aggressive_order(
        self,
        account: str,
        symbol: str,
        n: int,
        side: int,
        through: int,
        qty: int,
        sweep: int | None,
        tif_and_type: tuple[int, int],
        stp: int,
    ) -> None:
        """An order priced `through` ticks past the reference towards the other side: it sweeps
        levels (and meets the fill limit, self-trade prevention and FOK's check). With `sweep`
        its size is what the other side offers up to its price, plus `sweep` lots."""
        price = self._price(symbol, through if side == BUY else -through)
        tif, order_type = tif_and_type
        if sweep is not None:
            other = [o for o in self.model.orders if o.symbol == symbol and o.side != side]
            offered = sum(o.open_lots for o in other if (o.price <= price if side == BUY else o.price >= price))
            qty = max(1, offered + sweep)
        self._new_order(NewOrder(account, symbol, f"t{n}", side, price, qty, tif, order_type, False, stp))

    def _pick(self, data: st.DataObject, other_account: bool) -> tuple[int, str]:
        """Mostly an order still open, else any order ever accepted (maybe gone), else any id."""
        live = [(o.order_id, o.account) for o in self.model.orders]
        if live and data.draw(st.sampled_from((True, True, True, False)), label="open order"):
            order_id, account = data.draw(st.sampled_from(live), label="order")
        elif self.entered:
            order_id, account = data.draw(st.sampled_from(self.entered), label="order")
        else:
            return data.draw(st.integers(1, self.seq + 1), label="order id"), "A"
        if other_account:
            account = "B" if account != "B" else "C"
        return order_id, account

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data(), other_account=st.sampled_from((False, False, False, True)))
    def cancel(self, data: st.DataObject, other_account: bool) -> None:
        order_id, account = self._pick(data, other_account)
        out = self._apply(CancelOrder(account, order_id))
        self._compare(out, self.model.cancel(CancelOrder(account, order_id)), account, str(order_id))

    @precondition(lambda self: self.model.orders)
    @rule(
        data=st.data(),
        other_account=st.sampled_from((False, False, False, False, True)),
        distance=st.integers(-5, 14),
        same_price=st.sampled_from((False, False, True)),
        change=st.integers(-3, 10),
        total=st.sampled_from((None, None, None, 0, 1, 21, 22)),
    )
    def amend(
        self, data: st.DataObject, other_account: bool, distance: int, same_price: bool, change: int, total: int | None
    ) -> None:
        """A new price `distance` ticks from the reference on the order's side (negative: across
        it) or its own price, and a new total `change` lots from what it has open (or `total`)."""
        order_id, account = self._pick(data, other_account)
        order = next((o for o in self.model.orders if o.order_id == order_id), None)
        if order is None:
            price, new_total = self._price("RB", distance), change
        else:
            price = (
                order.price if same_price else self._price(order.symbol, -distance if order.side == BUY else distance)
            )
            new_total = order.filled_lots + order.cancelled_lots + order.open_lots + change
        command = AmendOrder(account, order_id, price, max(0, new_total) if total is None else total)
        out = self._apply(command)
        self._compare(out, self.model.amend(command), account, str(order_id))

    @precondition(lambda self: self.model.orders)
    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(("", "", "RB", "HC", "XX")))
    def mass_cancel(self, account: str, symbol: str) -> None:
        out = self._apply(MassCancel(account, symbol))
        self._compare(out, self.model.mass_cancel(MassCancel(account, symbol)), account, symbol)

    @rule(
        data=st.data(),
        symbol=st.sampled_from(("RB", "RB", "RB", "HC", "HC", "HC", "XX")),
        allowed=st.sampled_from((True, True, False)),
    )
    def set_state(self, data: st.DataObject, symbol: str, allowed: bool) -> None:
        """Mostly a move the rules allow (so that every state is reached), else any target."""
        inst = self.model.instruments.get(symbol)
        if allowed and inst is not None:
            state = data.draw(st.sampled_from(sorted(MOVES[inst.state])), label="state")
        else:
            state = data.draw(st.sampled_from((*STATES, 9)), label="state")
        self._set_state(symbol, state)

    def _set_state(self, symbol: str, state: int) -> None:
        out = self._apply(SetTradingState(symbol, state))
        verdict = self.model.set_state(SetTradingState(symbol, state))
        self._compare(out, verdict, None, symbol)
        if not verdict.codes:
            assert out[-1] == (STATE, self.seq, symbol, state, self.model.instruments[symbol].reference), out

    @invariant()
    def same_books(self) -> None:
        for symbol, inst in self.model.instruments.items():
            book = self.engine.books[symbol]
            assert book.state == inst.state, symbol
            assert book.reference_price_ticks == inst.reference, symbol
            for side in (BUY, SELL):
                queues = [
                    (p, [(o.order_id, o.open_lots) for o in book.levels[side][p].values()])
                    for p in book.sorted_prices(side)
                ]
                assert queues == self.model.queues(symbol, side), (symbol, side)  # price-time priority
                published = self.published.get((symbol, side), {})
                assert published == self.model.level_totals(symbol, side), (symbol, side, "BOOK feed")
            if inst.state == CONTINUOUS:
                bids, asks = self.engine.depth(symbol, BUY, 1), self.engine.depth(symbol, SELL, 1)
                assert not (bids and asks and bids[0][0] >= asks[0][0]), (symbol, "crossed in continuous trading")
            if inst.state == AUCTION:
                published_indicative = self.indicative.get(symbol, (0, 0, 0))
                assert published_indicative == self.model.uncross_now(symbol), (symbol, "INDICATIVE")

    @invariant()
    def conservation(self) -> None:
        assert_conserved(self.engine, self.tracked)


SessionsAndLimitsAgainstModel.TestCase.settings = settings(max_examples=400, stateful_step_count=60, deadline=None)
TestSessionsAndLimitsAgainstModel = SessionsAndLimitsAgainstModel.TestCase


@pytest.mark.parametrize("how", ["new order", "amend"])
def test_a_trade_before_a_self_trade_stop_sets_the_last_trade_price(how: str) -> None:
    """Found by SessionsAndLimitsAgainstModel. B's buy trades 4 lots with C at 99, then meets B's
    own sell at 99 and is stopped by self-trade prevention: the last trade price is 99, so the
    close makes 99 the next reference price (docs/matching.md, CLOSED)."""
    engine = MatchingEngine()
    out: list[Event] = []
    engine.apply(ListInstrument(RB2), 1, out)  # reference 100, band 90..110
    engine.apply(SetTradingState("RB", CONTINUOUS), 2, out)
    engine.apply(NewOrder("C", "RB", "c1", SELL, 99, 4), 3, out)
    engine.apply(NewOrder("B", "RB", "b1", SELL, 99, 1), 4, out)
    out.clear()
    if how == "new order":
        engine.apply(NewOrder("B", "RB", "b2", BUY, 99, 11, stp_mode=STP_CANCEL_NEWEST), 5, out)
    else:
        engine.apply(NewOrder("B", "RB", "b2", BUY, 95, 11, stp_mode=STP_CANCEL_BOTH), 5, out)
        engine.apply(AmendOrder("B", 5, 99, 11), 6, out)
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == [(99, 4)]
    assert [e[9] for e in out if e[0] == CANCELLED][-1] == CancelReason.SELF_TRADE
    out.clear()
    engine.apply(SetTradingState("RB", CLOSED), 7, out)
    assert out[-1] == (STATE, 7, "RB", CLOSED, 99), "the last trade price becomes the next reference"
