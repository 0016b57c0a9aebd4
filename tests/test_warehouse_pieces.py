"""Steel pieces (coils, bundles) through split, allocation, delivery and residual.

Weight is what is traded; pieces are physical. The rules (docs/warehouse.md,
"Pieces"): a part the core splits off a steel receipt takes its pieces pro
rata, rounded down, but at least one, and leaves at least one on the rest
(and one for every part the lock's open lots may still cut the rest into);
a sell lock passes over, or is refused on, a steel receipt its lots may cut
into more parts than it has pieces; at delivery the operator states any
count from 1 to the pieces of the deal's receipts; the seller keeps a
residual receipt only when both weight and pieces are left over, otherwise
the buyer's receipt takes all of the deal's weight and pieces.

Built like ``tests/test_warehouse_engine.py`` (``Harness``: the engine with a
fake ledger), and the reviewer's case once more through the exchange core.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.test_warehouse_engine import DAY_NS, HRC, T0, Harness, funded
from warehouse import (
    DL_DISPUTED,
    DL_PAID,
    DL_SETTLED,
    LIVE_STATES,
    STEEL,
    W_DELIVERY_STATE,
    W_REJECTED,
    ConfirmDelivery,
    ConfirmReceipt,
    LockReceipts,
    PayDeal,
    RegisterReceipt,
    SweepDeadlines,
    UnlockReceipts,
    WarehouseCode,
)

LOT_KG = 10_000


def coil(h: Harness, number: str, weight_kg: int, pieces: int, holder: str = "A") -> None:
    """Register and confirm a hot-rolled coil receipt at W1."""
    h.ok(
        RegisterReceipt(
            "op1", number, holder, HRC.symbol, weight_kg, pieces, f"HEAT-{number}", f"CERT-{number}", 0, 0, 0,
            "Q235B", "5.75x1500", "bay 3",
        )
    )  # fmt: skip
    h.ok(ConfirmReceipt(number, holder))


def live_pieces(h: Harness) -> int:
    return sum(r.pieces for r in h.eng.receipts.values() if r.state in LIVE_STATES)


def no_empty_steel(h: Harness) -> None:
    for r in h.eng.receipts.values():
        if r.commodity == STEEL:
            assert r.pieces > 0, (r.number, r.weight_kg, r.pieces, r.state)


# receipt weight and pieces, lots sold in one order, then per trade: lots, and the pieces of the
# part split off (pro rata rounded down, at least 1, leaving one for every part still to come)
TABLE = [
    pytest.param(50_000, 2, 1, [(1, 1)], id="reviewer: 50 t, 2 coils, 1 lot"),
    pytest.param(50_000, 5, 1, [(1, 1)], id="50 t, 5 coils, 1 lot"),
    pytest.param(50_000, 5, 3, [(3, 3)], id="50 t, 5 coils, 3 lots at once"),
    pytest.param(25_000, 20, 1, [(1, 8)], id="25 t, 20 bundles, 1 lot: pro rata"),
    pytest.param(10_500, 2, 1, [(1, 1)], id="10.5 t, 2 coils: 500 kg and a coil left"),
    pytest.param(100_000, 3, 2, [(1, 1), (1, 1)], id="100 t, 3 coils, 2 lots one at a time"),
    pytest.param(30_000, 3, 3, [(1, 1), (1, 1), (1, 1)], id="30 t, 3 coils, 3 lots one at a time"),
]


@pytest.mark.parametrize(("weight_kg", "pieces", "lots", "trades"), TABLE)
def test_a_part_of_a_steel_receipt_is_delivered_and_settled(
    weight_kg: int, pieces: int, lots: int, trades: list[tuple[int, int]]
) -> None:
    h = funded(Harness())
    coil(h, "R-1", weight_kg, pieces)
    h.ok(LockReceipts(1, "A", HRC.symbol, lots))
    deal_id = 10
    for trade_lots, part_pieces in trades:
        deal_id += 1
        h.trade(deal_id, 1, "B", trade_lots, 3_800)
        d = h.eng.deliveries[deal_id]
        allocated = [h.eng.receipts[n] for n in d.receipts]
        assert sum(r.pieces for r in allocated) == part_pieces, [(r.number, r.pieces) for r in allocated]
        assert live_pieces(h) == pieces
        no_empty_steel(h)
        h.ok(PayDeal(deal_id, "B"))
        # every count from 1 to the pieces handed over is accepted; 0 and more are not
        h.refused(ConfirmDelivery(deal_id, "op1", trade_lots * LOT_KG, True, 0), WarehouseCode.BAD_PIECES)
        detail = h.refused(
            ConfirmDelivery(deal_id, "op1", trade_lots * LOT_KG, True, part_pieces + 1), WarehouseCode.BAD_PIECES
        )
        assert detail == f"1 to {part_pieces} pieces"
        out = h.ok(ConfirmDelivery(deal_id, "op1", trade_lots * LOT_KG, True, 1))
        assert [e[3] for e in out if e[0] == W_DELIVERY_STATE][-1] == DL_SETTLED
        bought = h.eng.receipts[d.buyer_receipt]
        assert (bought.holder, bought.weight_kg, bought.pieces) == ("B", trade_lots * LOT_KG, part_pieces)
        assert live_pieces(h) == pieces
        no_empty_steel(h)
        h.check()
    # past the delivery deadline nobody is in default: every deal settled
    h.ok(SweepDeadlines("staff1"), ts_ns=T0 + 30 * DAY_NS)
    assert {d.state for d in h.eng.deliveries.values()} == {DL_SETTLED}
    assert not [c for c in h.ledger.calls if c[0] == "default_deal"]


def test_the_reviewers_case_through_the_exchange_core() -> None:
    """1 lot (10 t) of a 50 t, 2-coil receipt: traded, paid, confirmed with 1 coil, settled; the
    seller is paid and not put in default at the deadline."""
    from clearing import BankDeposit, RegisterMember
    from exchange import Core, Settings, load_instruments
    from matching import BUY, CONTINUOUS, SELL, ListInstrument, NewOrder, SetTradingState
    from warehouse import W_DELIVERY, AddOperator, AddWarehouse

    inst = next(i for i in load_instruments(Settings().instruments_file) if i.symbol == "HC-Q235B-5.75")
    core = Core()
    seq = 0

    def do(command: Any, ts_ns: int = T0) -> list[Any]:
        nonlocal seq
        seq += 1
        out: list[Any] = []
        core.apply(command, seq, ts_ns, out)
        return out

    do(ListInstrument(inst))
    do(SetTradingState(inst.symbol, CONTINUOUS))
    for member in ("M1", "M2"):
        do(RegisterMember(member, "ICBC", "SUB-" + member))
        do(BankDeposit("ICBC", "F-" + member, member, 10**11, "2025-03-03"))
    do(AddWarehouse("WH1", "East steel", (inst.warehouse_group,), "staff1"))
    do(AddOperator("op1", "WH1", "staff1"))
    do(
        RegisterReceipt(
            "op1", "R-1", "M2", inst.symbol, 50_000, 2, "LOT1", "CERT1", 0, 0, 0, "Q235B", "5.75x1500", "bay 3"
        )
    )
    do(ConfirmReceipt("R-1", "M2"))
    price = inst.reference_price_ticks
    do(NewOrder("M2", inst.symbol, "s1", SELL, price, 1))
    [opened] = [e for e in do(NewOrder("M1", inst.symbol, "b1", BUY, price, 1)) if e[0] == W_DELIVERY]
    deal_id = opened[2]
    warehouse = core.warehouse
    [part] = [warehouse.receipts[n] for n in warehouse.deliveries[deal_id].receipts]
    assert (part.weight_kg, part.pieces) == (10_000, 1)
    assert (warehouse.receipts["R-1"].weight_kg, warehouse.receipts["R-1"].pieces) == (40_000, 1)
    do(PayDeal(deal_id, "M1"))
    seller_before = sum(core.clearing.ledger.balances["M2"])
    out = do(ConfirmDelivery(deal_id, "op1", 10_000, True, 1))
    assert not [e for e in out if e[0] == W_REJECTED], out
    d = warehouse.deliveries[deal_id]
    assert d.state == DL_SETTLED
    out = do(SweepDeadlines("staff1"), d.delivery_deadline_ns + 1)
    assert d.state == DL_SETTLED
    assert sum(core.clearing.ledger.balances["M2"]) > seller_before  # paid, nothing forfeited
    core.check_invariants()


def test_a_lock_passes_over_or_refuses_a_coil_its_lots_would_cut() -> None:
    h = funded(Harness())
    coil(h, "OLD", 40_000, 1)  # one 40 t coil: no lot can be cut out of it
    coil(h, "NEW", 20_000, 2)
    h.ok(LockReceipts(1, "A", HRC.symbol, 1))  # oldest first, passing over the coil
    assert h.eng.locks[1].receipts == ["NEW"]
    detail = h.refused(LockReceipts(2, "A", HRC.symbol, 1, ("OLD",)), WarehouseCode.INSUFFICIENT_RECEIPTS)
    assert detail == "OLD holds 1 pieces: this order's lots may cut it into 2 parts, each needs a piece"
    h.refused(LockReceipts(2, "A", HRC.symbol, 4, ("OLD",)), WarehouseCode.INSUFFICIENT_RECEIPTS)
    h.ok(UnlockReceipts(1, 1))
    detail = h.refused(LockReceipts(3, "A", HRC.symbol, 3), WarehouseCode.INSUFFICIENT_RECEIPTS)
    assert "a piece for every part" in detail
    coil(h, "ONE", 10_000, 1)  # a 10 t coil sells whole as one lot
    h.ok(LockReceipts(4, "A", HRC.symbol, 1, ("ONE",)))
    # an amend up may not let the lots cut a locked receipt into more parts than it has pieces
    coil(h, "TWO", 30_000, 2)
    h.ok(LockReceipts(5, "A", HRC.symbol, 1, ("TWO",)))
    before = h.eng.export_state()
    events: list[Any] = []
    assert h.eng.grow_lock(5, 1, h.seq + 1, h.ts, events) == (
        WarehouseCode.INSUFFICIENT_RECEIPTS,
        "TWO holds 2 pieces: this order's lots may cut it into 3 parts, each needs a piece",
    )
    assert (events, h.eng.export_state()) == ([], before)
    h.check()


def delivered_part(h: Harness, weight_kg: int, pieces: int) -> int:
    """1 lot of a receipt sold, traded and paid: the deal id."""
    coil(h, "R-1", weight_kg, pieces)
    h.ok(LockReceipts(1, "A", HRC.symbol, 1))
    h.trade(5, 1, "B", 1, 3_800)
    h.ok(PayDeal(5, "B"))
    return 5


@pytest.mark.parametrize(
    ("actual_kg", "stated", "buyer", "residual"),
    [
        pytest.param(9_900, 3, (10_000, 3), None, id="under-weight, every piece: no residual, buyer takes all"),
        pytest.param(9_900, 2, (9_900, 2), (100, 1), id="under-weight, a piece left: residual with it"),
        pytest.param(9_900, 1, (9_900, 1), (100, 2), id="under-weight, one piece handed over"),
        pytest.param(10_000, 2, (10_000, 3), None, id="exact weight, a piece left: it goes with the weight"),
        pytest.param(10_000, 3, (10_000, 3), None, id="exact weight, every piece"),
    ],
)
def test_the_residual_of_a_steel_delivery_never_has_weight_without_pieces(
    actual_kg: int, stated: int, buyer: tuple[int, int], residual: tuple[int, int] | None
) -> None:
    h = funded(Harness())
    deal_id = delivered_part(h, 30_000, 10)  # 10 t with 3 of the 10 coils (pro rata)
    d = h.eng.deliveries[deal_id]
    assert [h.eng.receipts[n].pieces for n in d.receipts] == [3]
    h.ok(ConfirmDelivery(deal_id, "op1", actual_kg, True, stated))
    assert d.state == DL_SETTLED
    assert d.pieces == stated
    bought = h.eng.receipts[d.buyer_receipt]
    assert (bought.weight_kg, bought.pieces) == buyer
    if residual is None:
        assert d.residual_receipt == ""
    else:
        rest = h.eng.receipts[d.residual_receipt]
        assert (rest.holder, rest.weight_kg, rest.pieces) == ("A", *residual)
    # the money is the scale's: the seller is paid for the actual weight
    assert d.amount_fen == actual_kg * d.price_fen_per_t // 1_000
    assert live_pieces(h) == 10
    no_empty_steel(h)
    h.check()


def test_an_over_weight_steel_delivery_moves_book_weight_not_pieces() -> None:
    """The coils handed over weighed more than their receipt says: the extra book weight comes
    from the seller's other receipts here, whole ones with their pieces, and part of the next
    one as weight alone (even of a single coil), so no piece moves without its goods."""
    h = funded(Harness())
    deal_id = delivered_part(h, 10_000, 2)  # the whole receipt, 2 coils
    coil(h, "C1", 200, 1)  # a small coil, taken whole
    coil(h, "C2", 25_000, 1)  # one big coil: gives 100 kg of book weight, keeps its coil
    h.ok(ConfirmDelivery(deal_id, "op1", 10_300, True, 3))
    d = h.eng.deliveries[deal_id]
    assert d.state == DL_SETTLED
    assert d.receipts == ["R-1", "C1"]
    assert (h.eng.receipts["C2"].weight_kg, h.eng.receipts["C2"].pieces) == (24_900, 1)
    assert h.eng.receipts["R-1"].weight_kg == 10_100  # delivered, with the weight moved onto it
    bought = h.eng.receipts[d.buyer_receipt]
    assert (bought.weight_kg, bought.pieces) == (10_300, 3)
    assert live_pieces(h) == 4  # C2's coil and the buyer's 3 (R-1's 2 and C1's)
    no_empty_steel(h)
    h.check()
    # time and again on the same coil: the seller's last coil is never split into pieces it lacks
    h2 = funded(Harness())
    coil(h2, "R-1", 40_000, 4)
    coil(h2, "BIG", 5_000, 1)
    for n in range(4):
        h2.ok(LockReceipts(10 + n, "A", HRC.symbol, 1, ("R-1",) if n < 3 else ()))
        h2.trade(20 + n, 10 + n, "B", 1, 3_800)
        h2.ok(PayDeal(20 + n, "B"))
    for n in range(4):
        h2.ok(ConfirmDelivery(20 + n, "op1", 10_100, True, 1))
        assert h2.eng.deliveries[20 + n].state == DL_SETTLED
    assert (h2.eng.receipts["BIG"].weight_kg, h2.eng.receipts["BIG"].pieces) == (4_600, 1)
    assert live_pieces(h2) == 5
    h2.check()


# --------------------------------------------------------------------------- property

receipt_st = st.tuples(st.integers(2, 120).map(lambda t: t * 500), st.integers(1, 12))  # (kg, pieces)
step_st = st.one_of(
    st.tuples(st.just("sell"), st.integers(1, 6), st.integers(0, 99)),
    st.tuples(st.just("trade"), st.integers(0, 99), st.integers(1, 4)),
    st.tuples(st.just("cancel"), st.integers(0, 99)),
    st.tuples(st.just("deliver"), st.integers(0, 99), st.integers(-500, 400), st.integers(0, 10_000)),
)


@settings(max_examples=400, deadline=None)
@given(receipts=st.lists(receipt_st, min_size=2, max_size=8), steps=st.lists(step_st, min_size=1, max_size=40))
def test_pieces_are_conserved_and_every_delivery_can_be_confirmed(
    receipts: list[tuple[int, int]], steps: list[tuple[Any, ...]]
) -> None:
    """Random coil receipts (any weight, at least one piece) sold in random orders, traded in
    random parts and delivered at random weights (under and over, inside and outside the
    tolerance): after every step the live receipts hold exactly the pieces registered, no steel
    receipt has weight without pieces, and every paid delivery accepts a confirmation with any
    count from 1 to the pieces of its receipts."""
    h = funded(Harness())
    h.ledger.deposit("A", 10**12)
    h.ledger.deposit("B", 10**12)
    total = 0
    for i, (weight_kg, pieces) in enumerate(receipts):
        coil(h, f"R{i}", weight_kg, min(pieces, weight_kg))
        total += min(pieces, weight_kg)
    orders = deals = 0
    for step in steps:
        kind = step[0]
        if kind == "sell":
            orders += 1
            out = h.cmd(LockReceipts(orders, "A", HRC.symbol, step[1]))  # may be refused: nothing changes
            event("sell refused" if out[0][0] == W_REJECTED else "sell locked")
        elif kind == "trade" and h.eng.locks:
            order_id = sorted(h.eng.locks)[step[1] % len(h.eng.locks)]
            lots = min(step[2], h.eng.locks[order_id].open_weight_kg // LOT_KG)
            deals += 1
            h.trade(deals, order_id, "B", lots, 3_800)
            h.ok(PayDeal(deals, "B"))
        elif kind == "cancel" and h.eng.locks:
            order_id = sorted(h.eng.locks)[step[1] % len(h.eng.locks)]
            h.ok(UnlockReceipts(order_id, h.eng.locks[order_id].open_weight_kg // LOT_KG))
        elif kind == "deliver":
            paid = sorted(n for n, d in h.eng.deliveries.items() if d.state == DL_PAID)
            if paid:
                deal_id = paid[step[1] % len(paid)]
                d = h.eng.deliveries[deal_id]
                available = sum(h.eng.receipts[n].pieces for n in d.receipts)
                assert available >= 1
                actual = d.contract_weight_kg + d.contract_weight_kg * step[2] // 10_000
                stated = 1 + step[3] % available
                if actual <= d.contract_weight_kg:  # (over-weight adds the extra receipts' pieces)
                    h.refused(ConfirmDelivery(deal_id, "op1", actual, True, available + 1), WarehouseCode.BAD_PIECES)
                out = h.cmd(ConfirmDelivery(deal_id, "op1", actual, True, stated))
                refused = [e for e in out if e[0] == W_REJECTED]
                if refused:  # only an over-weight the seller's other receipts cannot cover
                    assert actual > d.contract_weight_kg, refused
                    assert refused[0][3] == WarehouseCode.INSUFFICIENT_RECEIPTS, refused
                    out = h.ok(ConfirmDelivery(deal_id, "op1", d.contract_weight_kg, True, stated))
                assert d.state in (DL_SETTLED, DL_DISPUTED), d.state
                event(f"delivery {d.state}, residual: {bool(d.residual_receipt)}")
        assert live_pieces(h) == total
        no_empty_steel(h)
        h.check()
    # every paid delivery still open can be confirmed with any valid count
    for deal_id, d in sorted(h.eng.deliveries.items()):
        if d.state == DL_PAID:
            available = sum(h.eng.receipts[n].pieces for n in d.receipts)
            h.ok(ConfirmDelivery(deal_id, "op1", d.contract_weight_kg, True, available))
            assert d.state == DL_SETTLED
    assert live_pieces(h) == total
    no_empty_steel(h)
    h.check()
