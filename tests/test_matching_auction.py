"""Call auction: worked uncross cases, the uncross against a brute force
over every price, and the auction phase through the engine."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import (
    AUCTION,
    BUY,
    CONTINUOUS,
    INDICATIVE,
    IOC,
    REJECTED,
    SELL,
    TRADE,
    AmendOrder,
    CancelOrder,
    Instrument,
    ListInstrument,
    MatchingEngine,
    NewOrder,
    RejectCode,
    SetTradingState,
    uncross,
)

CASES = [
    # (bids, asks, reference, expected (price, volume, imbalance), why)
    ([(101, 5), (100, 5)], [(99, 4), (100, 6)], 100, (100, 10, 0), "maximum volume"),
    ([(102, 10)], [(98, 10)], 100, (100, 10, 0), "flat volume: the reference price inside the range"),
    ([(102, 10)], [(98, 10)], 97, (98, 10, 0), "flat volume: the end nearest a reference below"),
    ([(102, 10)], [(98, 10)], 150, (102, 10, 0), "flat volume: the end nearest a reference above"),
    ([(101, 6), (99, 4)], [(98, 6), (100, 3)], 100, (100, 6, -3), "volume tie: smallest imbalance, then reference"),
    ([(101, 6), (99, 4)], [(98, 6), (100, 3)], 105, (101, 6, -3), "volume tie: smallest imbalance, then nearer"),
    ([(105, 3)], [(100, 1), (104, 1)], 90, (104, 2, 1), "more volume beats less imbalance"),
    ([(99, 5)], [(100, 5)], 100, (0, 0, 0), "not crossed: no uncross"),
    ([], [(100, 5)], 100, (0, 0, 0), "one side empty"),
    ([(103, 4), (100, 4)], [(100, 2), (101, 2), (103, 4)], 95, (101, 4, 0), "imbalance 0 at 101 only"),
]


@pytest.mark.parametrize(("bids", "asks", "reference", "expected", "why"), CASES)
def test_worked_uncross_cases(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int, expected: tuple[int, int, int], why: str
) -> None:
    assert uncross(bids, asks, reference) == expected, why


def brute_force(bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int) -> tuple[int, int, int]:
    best: tuple[tuple[int, int, int, int], tuple[int, int, int]] | None = None
    prices = [p for p, _ in bids] + [p for p, _ in asks]
    if not prices:
        return (0, 0, 0)
    for p in range(min(prices), max(prices) + 1):
        buy = sum(lots for price, lots in bids if price >= p)
        sell = sum(lots for price, lots in asks if price <= p)
        volume = min(buy, sell)
        if volume <= 0:
            continue
        key = (-volume, abs(buy - sell), abs(p - reference), p)
        if best is None or key < best[0]:
            best = (key, (p, volume, buy - sell))
    return best[1] if best else (0, 0, 0)


levels = st.dictionaries(st.integers(90, 110), st.integers(1, 30), max_size=8).map(lambda d: sorted(d.items()))


@settings(max_examples=500, deadline=None)
@given(bids=levels, asks=levels, reference=st.integers(80, 120))
def test_uncross_equals_brute_force(bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int) -> None:
    assert uncross(bids, asks, reference) == brute_force(bids, asks, reference)


INSTRUMENT = Instrument("CK", "coal", "coking coal", "A10", "north", 50, 100, 100, 1000, 1, 100)


def _engine() -> tuple[MatchingEngine, list[Any]]:
    engine = MatchingEngine()
    out: list[Any] = []
    engine.apply(ListInstrument(INSTRUMENT), 1, out)
    engine.apply(SetTradingState("CK", AUCTION), 2, out)
    return engine, out


def test_auction_collects_publishes_indicative_and_uncrosses_in_priority_order() -> None:
    engine, out = _engine()
    orders = [
        NewOrder("A", "CK", "a1", BUY, 101, 5),
        NewOrder("B", "CK", "b1", BUY, 100, 5),
        NewOrder("C", "CK", "c1", SELL, 99, 4),
        NewOrder("D", "CK", "d1", SELL, 100, 6),
        NewOrder("E", "CK", "e1", SELL, 103, 2),
    ]
    indicatives = []
    for seq, order in enumerate(orders, start=10):
        out.clear()
        engine.apply(order, seq, out)
        assert not [e for e in out if e[0] == TRADE], "no trades during the auction"
        indicatives += [e[3:] for e in out if e[0] == INDICATIVE]
    # after C: volume 4 at 99..101, least imbalance (1) at 101; after D: 10 lots at 100
    assert indicatives == [(101, 4, 1), (100, 10, 0)]
    assert engine.books["CK"].is_crossed()
    out.clear()
    engine.apply(SetTradingState("CK", CONTINUOUS), 20, out)
    trades = [(e[4], e[5], e[6], e[9]) for e in out if e[0] == TRADE]
    # bids 101 (id 10) then 100 (id 11); asks 99 (id 12) then 100 (id 13); all at 100
    assert trades == [(100, 4, 10, 12), (100, 1, 10, 13), (100, 5, 11, 13)]
    assert all(e[12] == -1 for e in out if e[0] == TRADE)
    assert not engine.books["CK"].is_crossed()
    assert engine.depth("CK", SELL) == [(103, 2)]
    assert engine.depth("CK", BUY) == []
    engine.check_invariants()
    assert [e for e in out if e[0] == INDICATIVE][-1][3:] == (0, 0, 0)


def test_auction_remainder_carries_into_continuous_trading() -> None:
    engine, out = _engine()
    engine.apply(NewOrder("A", "CK", "a1", BUY, 102, 10), 10, out)
    engine.apply(NewOrder("B", "CK", "b1", SELL, 98, 4), 11, out)
    engine.apply(SetTradingState("CK", CONTINUOUS), 12, out)
    assert engine.depth("CK", BUY) == [(102, 6)]
    out.clear()
    engine.apply(NewOrder("C", "CK", "c1", SELL, 101, 6), 13, out)
    trades = [(e[4], e[5]) for e in out if e[0] == TRADE]
    assert trades == [(102, 6)], "continuous trades print at the resting order's price"


def test_auction_refuses_ioc_and_tracks_cancel_and_amend() -> None:
    engine, out = _engine()
    engine.apply(NewOrder("A", "CK", "a1", BUY, 101, 5, IOC), 10, out)
    assert out[-1][0] == REJECTED
    assert out[-1][4] == RejectCode.BAD_TIME_IN_FORCE
    engine.apply(NewOrder("A", "CK", "a2", BUY, 101, 5), 11, out)
    engine.apply(NewOrder("B", "CK", "b1", SELL, 100, 5), 12, out)
    out.clear()
    engine.apply(AmendOrder("B", 12, 100, 3), 13, out)
    assert [e[3:] for e in out if e[0] == INDICATIVE] == [(100, 3, 2)]  # 3 lots at 100 or 101; nearer the reference
    out.clear()
    engine.apply(CancelOrder("A", 11), 14, out)
    assert [e[3:] for e in out if e[0] == INDICATIVE] == [(0, 0, 0)]
