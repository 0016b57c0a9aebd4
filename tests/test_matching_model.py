"""The matching engine against the simple reference book, step by step.

Hypothesis drives both with the same random commands (all order types,
self-trade prevention modes, amends, cancels, mass cancels) and after every
step compares outcomes, trades and the whole book queue by queue, and checks
the engine's invariants, including filled + open + cancelled = ordered for
every order ever entered (tracked from the events alone).
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from matching import (
    ACCEPTED,
    AMENDED,
    BUY,
    CANCELLED,
    CONTINUOUS,
    DUPLICATE,
    REJECTED,
    SELL,
    TRADE,
    AmendOrder,
    CancelOrder,
    Instrument,
    ListInstrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
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
            if e[0] == ACCEPTED:
                self.tracked[e[2]] = [e[8], 0, 0]
            elif e[0] == TRADE:
                self.trades.append((e[4], e[5], e[6], e[9]))
                self.tracked[e[6]][1] += e[5]
                self.tracked[e[9]][1] += e[5]
            elif e[0] == CANCELLED:
                self.tracked[e[2]][2] += e[7]
            elif e[0] == AMENDED:
                self.tracked[e[2]][0] = e[6]
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
        self.engine.check_invariants()
        for order_id, (ordered, filled, cancelled) in self.tracked.items():
            order = self.engine.orders.get(order_id)
            open_lots = order.open_lots if order else 0
            assert filled + open_lots + cancelled == ordered, (order_id, ordered, filled, open_lots, cancelled)


EngineAgainstModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestEngineAgainstModel = EngineAgainstModel.TestCase
