"""The two limits of docs/matching.md's table that tests/test_matching_engine.py does not take to
their edge: ``max_instruments`` and ``max_client_order_ids_per_account``. At each edge the last
one allowed succeeds, the next is rejected with the documented code, and nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest

from matching import (
    ACCEPTED,
    AMENDED,
    AUCTION,
    BOOK,
    BUY,
    CANCELLED,
    CLOSED,
    CONTINUOUS,
    DUPLICATE,
    IOC,
    LISTED,
    REJECTED,
    SELL,
    STATE,
    AmendOrder,
    CancelOrder,
    Event,
    Instrument,
    Limits,
    ListInstrument,
    MatchingCommand,
    MatchingEngine,
    NewOrder,
    RejectCode,
    SetTradingState,
)


def instrument(symbol: str, reference_price_ticks: int = 3500) -> Instrument:
    return Instrument(symbol, "steel", "rebar", "HRB400E", "east", 10, 100, reference_price_ticks, 700, 1, 500)


class Venue:
    """An engine and a sequence counter."""

    def __init__(self, limits: Limits) -> None:
        self.engine = MatchingEngine(limits)
        self.seq = 0

    def do(self, command: MatchingCommand) -> list[Event]:
        self.seq += 1
        out: list[Event] = []
        self.engine.apply(command, self.seq, out)
        return out


def kinds(out: list[Event]) -> list[int]:
    return [e[0] for e in out]


def without_client_ids(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key != "client_ids"}


# ------------------------------------------------------------------------- max_instruments


@pytest.mark.parametrize("limit", [1, 3, 256])  # 256: the default
def test_max_instruments_the_last_is_listed_and_the_next_rejected(limit: int) -> None:
    venue = Venue(Limits(max_instruments=limit) if limit != 256 else Limits())
    assert venue.engine.limits.max_instruments == limit
    for n in range(limit):
        out = venue.do(ListInstrument(instrument(f"S{n}")))
        assert out == [(LISTED, venue.seq, f"S{n}"), (STATE, venue.seq, f"S{n}", CLOSED, 3500)]
    before = venue.engine.export_state()
    out = venue.do(ListInstrument(instrument("NEXT")))
    assert kinds(out) == [REJECTED]
    assert out[0][3:5] == ("NEXT", RejectCode.TOO_MANY_INSTRUMENTS)
    assert venue.engine.export_state() == before, "a refused listing changes nothing"
    # NEXT does not exist; the last one listed does, and trades
    for command in (SetTradingState("NEXT", CONTINUOUS), NewOrder("A", "NEXT", "n1", BUY, 3500, 1)):
        out = venue.do(command)
        assert kinds(out) == [REJECTED]
        assert out[0][4] == RejectCode.UNKNOWN_INSTRUMENT
    last = f"S{limit - 1}"
    assert kinds(venue.do(SetTradingState(last, CONTINUOUS))) == [STATE]
    assert kinds(venue.do(NewOrder("A", last, "a1", SELL, 3500, 2))) == [ACCEPTED, BOOK]
    venue.engine.check_invariants()


def test_refused_listings_take_no_place_under_max_instruments() -> None:
    venue = Venue(Limits(max_instruments=2))
    assert kinds(venue.do(ListInstrument(instrument("RB")))) == [LISTED, STATE]
    bad = venue.do(ListInstrument(instrument("BAD", reference_price_ticks=0)))
    assert [(e[0], e[4]) for e in bad] == [(REJECTED, RejectCode.BAD_INSTRUMENT)]
    again = venue.do(ListInstrument(instrument("RB")))
    assert [(e[0], e[4]) for e in again] == [(REJECTED, RejectCode.INSTRUMENT_EXISTS)]
    assert kinds(venue.do(ListInstrument(instrument("HC")))) == [LISTED, STATE], "the last one allowed"
    out = venue.do(ListInstrument(instrument("WR")))
    assert [(e[0], e[4]) for e in out] == [(REJECTED, RejectCode.TOO_MANY_INSTRUMENTS)]
    assert sorted(venue.engine.books) == ["HC", "RB"]


# ------------------------------------------------------ max_client_order_ids_per_account


def open_venue(limit: int, state: int) -> Venue:
    """RB and HC listed and in `state`; A has a resting order in each, and one rejected order:
    three client order ids used."""
    venue = Venue(Limits(max_client_order_ids_per_account=limit))
    for symbol in ("RB", "HC"):
        venue.do(ListInstrument(instrument(symbol)))
        venue.do(SetTradingState(symbol, state))
    assert kinds(venue.do(NewOrder("A", "RB", "a1", SELL, 3510, 5)))[0] == ACCEPTED  # order 5
    assert kinds(venue.do(NewOrder("A", "HC", "a2", BUY, 3490, 5)))[0] == ACCEPTED  # order 6
    assert kinds(venue.do(NewOrder("A", "RB", "a3", BUY, 1, 5))) == [REJECTED]  # remembered: counts
    return venue


@pytest.mark.parametrize("state", [CONTINUOUS, AUCTION])  # the engine's fast path, its checked path
def test_max_client_order_ids_the_last_is_accepted_and_the_next_rejected(state: int) -> None:
    venue = open_venue(4, state)
    out = venue.do(NewOrder("A", "HC", "a4", SELL, 3520, 1))  # the 4th id: the last allowed
    assert kinds(out)[0] == ACCEPTED
    before = venue.engine.export_state()
    out = venue.do(NewOrder("A", "RB", "a5", BUY, 3500, 1))
    assert kinds(out) == [REJECTED]
    assert out[0][2:5] == ("A", "a5", RejectCode.TOO_MANY_ORDERS)
    after = venue.engine.export_state()
    assert without_client_ids(after) == without_client_ids(before), "no order, no trade, no book change"
    remembered = dict(after["client_ids"]["A"])
    remembered.pop("a5", None)  # a rejected order may leave the memory of its client order id
    assert remembered == before["client_ids"]["A"]
    assert after["client_ids"].keys() == before["client_ids"].keys()


def test_max_client_order_ids_counts_every_remembered_id_once_and_only_them() -> None:
    """Accepted and rejected orders count, whatever the instrument; repeats (DUPLICATE) and
    invalid ids (never remembered) do not; other accounts have their own count; cancels and
    amends use no new id."""
    venue = open_venue(4, CONTINUOUS)  # 3 ids used
    assert venue.do(NewOrder("A", "RB", "a1", BUY, 3500, 1)) == [(DUPLICATE, venue.seq, "A", "a1", 5, 0)]
    out = venue.do(NewOrder("A", "RB", "a3", BUY, 3500, 1))
    assert out == [(DUPLICATE, venue.seq, "A", "a3", 7, RejectCode.PRICE_OUT_OF_BAND)]
    out = venue.do(NewOrder("A", "RB", "", BUY, 3500, 1))
    assert [(e[0], e[4]) for e in out] == [(REJECTED, RejectCode.BAD_CLIENT_ORDER_ID)]
    assert kinds(venue.do(AmendOrder("A", 5, 3511, 4))) == [BOOK, AMENDED, BOOK]
    assert kinds(venue.do(CancelOrder("A", 6))) == [CANCELLED, BOOK]
    out = venue.do(NewOrder("A", "RB", "a4", BUY, 3500, 2, IOC))  # the 4th id: the last allowed
    assert kinds(out) == [ACCEPTED, CANCELLED]
    out = venue.do(NewOrder("A", "HC", "a5", BUY, 3500, 1))
    assert [(e[0], e[4]) for e in out] == [(REJECTED, RejectCode.TOO_MANY_ORDERS)]
    assert venue.do(NewOrder("A", "RB", "a1", BUY, 3500, 1))[0][0] == DUPLICATE, "repeats are still answered"
    for n in range(1, 5):
        assert kinds(venue.do(NewOrder("B", "RB", f"b{n}", BUY, 3400 + n, 1)))[0] == ACCEPTED, "B has its own"
    assert kinds(venue.do(CancelOrder("A", 5))) == [CANCELLED, BOOK], "A can still cancel"
    venue.engine.check_invariants()


def test_max_client_order_ids_is_a_daily_limit() -> None:
    """The ids are forgotten when every instrument has closed: the count starts again."""
    venue = open_venue(3, CONTINUOUS)
    assert venue.do(NewOrder("A", "RB", "a4", BUY, 3500, 1))[0][4] == RejectCode.TOO_MANY_ORDERS
    venue.do(SetTradingState("RB", CLOSED))
    assert venue.do(NewOrder("A", "HC", "a5", BUY, 3480, 1))[0][4] == RejectCode.TOO_MANY_ORDERS, "HC is open"
    venue.do(SetTradingState("HC", CLOSED))
    venue.do(SetTradingState("RB", CONTINUOUS))
    for n in (1, 2, 3):
        assert kinds(venue.do(NewOrder("A", "RB", f"a{n}", BUY, 3400 + n, 1)))[0] == ACCEPTED, n
    assert venue.do(NewOrder("A", "RB", "a4", BUY, 3400, 1))[0][4] == RejectCode.TOO_MANY_ORDERS


def test_max_client_order_ids_bounds_the_memory_of_client_order_ids() -> None:
    venue = open_venue(3, CONTINUOUS)
    for n in range(4, 104):
        out = venue.do(NewOrder("A", "RB", f"a{n}", BUY, 3500, 1))
        assert out[0][4] == RejectCode.TOO_MANY_ORDERS
    assert len(venue.engine.client_ids["A"]) == 3
