"""Rules at the edges of the order book: an FOK within the fill limit, closing a call auction
(which never trades), amends refused below the minimum size and at the level limit, and a new
order refused by pre-trade risk or the warehouse remembered by its client order id exactly as
matching's own refusals are."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing import BankDeposit, RegisterMember
from exchange import Core
from matching import (
    ACCEPTED,
    AMENDED,
    AUCTION,
    BOOK,
    BUY,
    CANCELLED,
    CLOSED,
    CONTINUOUS,
    DAY,
    DUPLICATE,
    FOK,
    GTC,
    HALTED,
    REJECTED,
    SELL,
    STP_CANCEL_OLDEST,
    STP_NONE,
    TRADE,
    AmendOrder,
    Instrument,
    Limits,
    ListInstrument,
    NewOrder,
    RejectCode,
    SetTradingState,
)
from tests.test_matching_engine import Venue as EngineVenue
from tests.test_matching_engine import kinds

RB5 = Instrument("RB", "steel", "rebar", "HRB400E 20mm", "east", 10, 100, 3500, 700, 5, 500)
"""Minimum order 5 lots, maximum 500."""


class Venue(EngineVenue):
    """An engine with RB5 listed (minimum order 5 lots) and open."""

    def __init__(self, limits: Limits | None = None, state: int = CONTINUOUS) -> None:
        super().__init__(limits, state, RB5)


# --------------------------------------------------------------- FOK and the fill limit


@pytest.mark.parametrize("stp", [STP_NONE, STP_CANCEL_OLDEST])
def test_an_fok_that_would_need_more_fills_than_the_limit_is_rejected_whole(stp: int) -> None:
    venue = Venue(Limits(max_fills_per_order=2))
    for n in range(3):
        venue.order(f"S{n}", f"s{n}", SELL, 3500 + n, 5)  # three makers of 5 lots
    before = venue.engine.export_state()
    out = venue.order("B", "f", BUY, 3502, 15, time_in_force=FOK, stp_mode=stp)
    assert kinds(out) == [REJECTED], "15 lots need three fills, the limit allows two"
    assert out[0][4] == RejectCode.FOK_NOT_FILLABLE
    after = venue.engine.export_state()
    after["client_ids"] = before["client_ids"]
    assert after == before, "nothing traded, nothing cancelled"
    # within the limit it fills in full: two fills for 10 lots
    out = venue.order("B", "f2", BUY, 3502, 10, time_in_force=FOK, stp_mode=stp)
    assert [e[5] for e in out if e[0] == TRADE] == [5, 5]
    assert CANCELLED not in kinds(out)


@settings(max_examples=150, deadline=None, print_blob=True)
@given(
    makers=st.lists(st.integers(5, 9), min_size=1, max_size=8),
    qty=st.integers(5, 60),
    limit=st.integers(1, 5),
)
def test_an_fok_fills_in_full_or_not_at_all_under_any_fill_limit(makers: list[int], qty: int, limit: int) -> None:
    venue = Venue(Limits(max_fills_per_order=limit))
    for n, lots in enumerate(makers):
        venue.order(f"S{n}", f"s{n}", SELL, 3500 + n % 3, lots)
    out = venue.order("B", "f", BUY, 3502, qty, time_in_force=FOK)
    traded = sum(e[5] for e in out if e[0] == TRADE)
    assert CANCELLED not in kinds(out), "an FOK is never partly filled and cancelled"
    # the makers in the book's order (price, then time), taken one fill each until qty is reached
    taken = fills = 0
    for n in sorted(range(len(makers)), key=lambda n: (n % 3, n)):
        if taken >= qty:
            break
        taken += makers[n]
        fills += 1
    fillable = taken >= qty and fills <= limit
    assert traded == (qty if fillable else 0), (makers, qty, limit, fills)
    assert len([e for e in out if e[0] == TRADE]) == (fills if fillable else 0)


# ------------------------------------------------------------------ closing never trades


@pytest.mark.parametrize("halt_first", [False, True])
def test_closing_a_crossed_call_auction_trades_nothing_and_the_next_auction_uncrosses(halt_first: bool) -> None:
    venue = Venue(state=AUCTION)
    venue.order("A", "b", BUY, 3510, 5, time_in_force=GTC)
    venue.order("C", "s", SELL, 3490, 5, time_in_force=GTC)
    venue.order("A", "bd", BUY, 3520, 5, time_in_force=DAY)
    assert venue.engine.books["RB"].is_crossed()
    if halt_first:
        assert kinds(venue.do(SetTradingState("RB", HALTED)))[-1] != REJECTED
    out = venue.do(SetTradingState("RB", CLOSED))
    assert TRADE not in kinds(out), "closing never trades"
    assert [(e[2], e[7]) for e in out if e[0] == CANCELLED] == [(5, 5)], "the DAY order expired"
    assert venue.engine.books["RB"].is_crossed(), "the GTC orders wait for the next auction"
    assert venue.engine.books["RB"].reference_price_ticks == 3500, "no trade: the reference stays"
    venue.engine.check_invariants()
    venue.do(SetTradingState("RB", AUCTION))
    out = venue.do(SetTradingState("RB", CONTINUOUS))
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == [(3500, 5)], "the next uncross trades them"
    assert not venue.engine.books["RB"].is_crossed()


# ----------------------------------------------------------------------------- amends


def test_an_amend_below_the_minimum_size_is_refused_unless_it_ends_the_order() -> None:
    venue = Venue()
    venue.order("A", "a", SELL, 3500, 10)
    order_id = venue.seq
    before = venue.engine.export_state()
    out = venue.do(AmendOrder("A", order_id, 3500, 4))  # 4 < the minimum 5, nothing filled yet
    assert kinds(out) == [REJECTED]
    assert out[0][4] == RejectCode.QUANTITY_BELOW_MIN
    assert venue.engine.export_state() == before, "the order is unchanged"
    venue.order("B", "b", BUY, 3500, 6)  # 6 of the 10 lots fill
    out = venue.do(AmendOrder("A", order_id, 3500, 8))  # a total of 8 >= 5: 2 lots open
    assert kinds(out) == [AMENDED, BOOK]
    assert venue.engine.orders[order_id].open_lots == 2
    # at or below what is done the amend ends the order, whatever the minimum
    out = venue.do(AmendOrder("A", order_id, 3500, 3))
    assert kinds(out)[0] == AMENDED
    assert [e[7] for e in out if e[0] == CANCELLED] == [2]
    assert order_id not in venue.engine.orders


def test_an_amend_that_would_need_a_new_level_on_a_full_side_is_refused_and_the_order_kept() -> None:
    venue = Venue(Limits(max_levels_per_side=2))
    venue.order("A", "a1", SELL, 3500, 5)  # order 3, alone at its level
    venue.order("A", "a2", SELL, 3501, 5)  # order 4
    venue.order("A", "a3", SELL, 3501, 5)  # order 5
    before = venue.engine.export_state()
    out = venue.do(AmendOrder("A", 4, 3505, 5))  # 3500 and 3501 fill the side; 3505 would be a third
    assert kinds(out) == [REJECTED]
    assert out[0][4] == RejectCode.TOO_MANY_LEVELS
    assert venue.engine.export_state() == before, "the order stays where it was, with its priority"
    # an order alone at its level may move: its level goes, the new one takes its place
    out = venue.do(AmendOrder("A", 3, 3503, 5))
    assert kinds(out) == [BOOK, AMENDED, BOOK]
    assert sorted(venue.engine.books["RB"].levels[SELL]) == [3501, 3503]
    # a size change at the same price or a move to an existing level never needs a new one
    assert AMENDED in kinds(venue.do(AmendOrder("A", 4, 3501, 6)))
    assert AMENDED in kinds(venue.do(AmendOrder("A", 5, 3503, 7)))
    assert [o.order_id for o in venue.engine.orders_at("RB", SELL, 3503)] == [3, 5]
    venue.engine.check_invariants()


# ------------------------------------------- refusals by pre-trade risk and the warehouse


def test_a_repeat_of_an_order_refused_by_pre_trade_risk_gets_the_first_answer() -> None:
    inst = dataclasses.replace(RB5, min_lots=1, receipts_required=False)
    core = Core()
    out: list[Any] = []
    date = "2026-12-07"
    for seq, command in enumerate(
        [
            ListInstrument(inst),
            SetTradingState(inst.symbol, CONTINUOUS),
            RegisterMember("M1", "ICBC", "S1"),
            BankDeposit("ICBC", "D1", "M1", 1_000, date),
        ],
        1,
    ):
        core.apply(command, seq, 0, out)
    price = inst.reference_price_ticks
    out.clear()
    core.apply(NewOrder("M1", inst.symbol, "x1", BUY, price, 1), 5, 0, out)
    assert [e[4] for e in out if e[0] == REJECTED] == [RejectCode.INSUFFICIENT_FUNDS]
    core.apply(BankDeposit("ICBC", "D2", "M1", 10**12, date), 6, 0, out)
    out.clear()
    core.apply(NewOrder("M1", inst.symbol, "x1", BUY, price, 1), 7, 0, out)
    assert kinds(out) == [DUPLICATE], "answered with the first answer, applied nowhere"
    assert out[0][4:] == (5, RejectCode.INSUFFICIENT_FUNDS)
    assert not core.matching.orders
    assert not core.clearing.orders
    out.clear()
    core.apply(NewOrder("M1", inst.symbol, "x2", BUY, price, 1), 8, 0, out)
    assert ACCEPTED in kinds(out), "a new id is a new order"
    core.check_invariants()
