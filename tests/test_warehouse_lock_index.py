"""The sell lock's choice of receipts from the per-goods age index equals the
plain reference: sort all of the seller's active deliverable receipts by age,
group them by warehouse (warehouses by their oldest receipt) and take the
oldest-first cover of the first warehouse that covers within the list limit.

A steel receipt the order's lots may cut into more parts than it has
pieces is passed over (a locked receipt that would be: the grow is refused).

Random receipt sets are built by random steps (registrations in two
warehouses, three instruments and two holders, splits, pledges and
releases, locks and unlocks, so receipts come back active out of age
order), and every lock, grow and refusal is compared with the reference
computed from the state before it. Hypothesis prints the falsifying steps
(and a reproduction blob) when they disagree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_warehouse_engine import COAL, HRC, REBAR, Harness
from warehouse import (
    ACTIVE,
    W_REJECTED,
    LockReceipts,
    PledgeReceipt,
    ReleasePledge,
    SplitReceipt,
    UnlockReceipts,
    WarehouseCode,
    WarehouseLimits,
)
from warehouse._model import InstrumentTerms, Receipt

HOLDERS = ("A", "B")
OPERATOR_OF = {"REBAR": ("op1", "op2"), "HRC": ("op1", "op2"), "COAL": ("op2", "op3")}
BY_NAME = {"REBAR": REBAR, "HRC": HRC, "COAL": COAL}


def cuts_inside(start_kg: int, weight_kg: int, open_kg: int, lot_kg: int) -> int:
    """Lot boundaries (multiples of the lot up to the open weight) strictly inside a receipt
    holding [start_kg, start_kg + weight_kg) of a lock: where trades may cut it."""
    return sum(1 for m in range(1, open_kg // lot_kg + 1) if start_kg < m * lot_kg < start_kg + weight_kg)


def too_few_pieces(r: Receipt, start_kg: int, open_kg: int, lot_kg: int) -> bool:
    """A steel receipt needs a piece for every part the lock's lots may cut it into."""
    return r.commodity == "steel" and r.pieces <= cuts_inside(start_kg, r.weight_kg, open_kg, lot_kg)


def reference_cover(h: Harness, holder: str, inst: InstrumentTerms, need_kg: int) -> tuple[int, list[str]]:
    """(0, numbers) as the lock chose before the index, else (refusal code, [])."""
    eng = h.eng
    found = sorted(
        (
            r
            for r in eng.receipts.values()
            if r.state == ACTIVE
            and r.holder == holder
            and (r.group, r.commodity, r.grade) == (inst.group, inst.commodity, inst.grade)
        ),
        key=lambda r: r.age_key,
    )
    by_warehouse: dict[str, list[Receipt]] = {}
    for r in found:
        by_warehouse.setdefault(r.warehouse_id, []).append(r)
    too_many = False
    for candidates in by_warehouse.values():
        taken, have = [], 0
        for r in candidates:
            if have >= need_kg:
                break
            if too_few_pieces(r, have, need_kg, inst.lot_weight_kg):
                continue
            taken.append(r)
            have += r.weight_kg
        if have < need_kg:
            continue
        if len(taken) > eng.limits.max_receipts_per_list:
            too_many = True
            continue
        return 0, [r.number for r in taken]
    return (WarehouseCode.TOO_MANY_IN_LIST if too_many else WarehouseCode.INSUFFICIENT_RECEIPTS), []


def reference_grow(h: Harness, order_id: int, extra_kg: int) -> tuple[int, list[str]]:
    eng = h.eng
    lock = eng.locks[order_id]
    inst = eng.instruments[lock.instrument]
    open_kg = lock.open_weight_kg + extra_kg
    locked_kg = sum(eng.receipts[n].weight_kg for n in lock.receipts)
    need = open_kg - locked_kg
    start = 0
    for n in lock.receipts:
        if too_few_pieces(eng.receipts[n], start, open_kg, inst.lot_weight_kg):
            return WarehouseCode.INSUFFICIENT_RECEIPTS, []
        start += eng.receipts[n].weight_kg
    if need <= 0:
        return 0, []
    candidates = sorted(
        (
            r
            for r in eng.receipts.values()
            if r.state == ACTIVE
            and r.holder == lock.member
            and r.warehouse_id == lock.warehouse_id
            and (r.group, r.commodity, r.grade) == (inst.group, inst.commodity, inst.grade)
        ),
        key=lambda r: r.age_key,
    )
    taken, have = [], 0
    for r in candidates:
        if have >= need:
            break
        if too_few_pieces(r, locked_kg + have, open_kg, inst.lot_weight_kg):
            continue
        taken.append(r)
        have += r.weight_kg
    if have < need:
        return WarehouseCode.INSUFFICIENT_RECEIPTS, []
    if len(lock.receipts) + len(taken) > eng.limits.max_receipts_per_list:
        return WarehouseCode.TOO_MANY_IN_LIST, []
    return 0, [r.number for r in taken]


register = st.tuples(
    st.just("register"),
    st.sampled_from(HOLDERS),
    st.sampled_from(sorted(BY_NAME)),
    st.integers(0, 1),
    st.integers(1, 30),
)
step = st.one_of(
    register,
    st.tuples(st.just("lock"), st.sampled_from(HOLDERS), st.sampled_from(sorted(BY_NAME)), st.integers(1, 5)),
    st.tuples(st.just("grow"), st.integers(0, 50), st.integers(1, 4)),
    st.tuples(st.just("unlock"), st.integers(0, 50)),
    st.tuples(st.just("split"), st.integers(0, 500), st.integers(1, 99)),
    st.tuples(st.just("pledge"), st.integers(0, 500)),
)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(
    stock=st.lists(register, min_size=8, max_size=40),
    steps=st.lists(step, min_size=10, max_size=60),
    max_list=st.sampled_from((2, 3, 100)),
)
def test_index_choice_equals_sorting_everything(
    stock: list[tuple[Any, ...]], steps: list[tuple[Any, ...]], max_list: int
) -> None:
    h = Harness(WarehouseLimits(max_receipts_per_list=max_list))
    eng = h.eng
    serial = 0
    order_id = 1_000
    for s in stock + steps:
        kind = s[0]
        if kind == "register":
            _, holder, name, which, tonnes = s
            inst = BY_NAME[name]
            operator = OPERATOR_OF[name][which]
            serial += 1
            number = f"N{serial}"
            if inst is COAL:
                h.coal(number, holder, tonnes * 5_000, operator=operator)
            else:
                h.steel(number, holder, tonnes * 1_000, operator=operator, instrument=inst.symbol)
        elif kind == "lock":
            _, holder, name, lots = s
            terms = eng.instruments[BY_NAME[name].symbol]
            order_id += 1
            expected = reference_cover(h, holder, terms, lots * terms.lot_weight_kg)
            out = h.cmd(LockReceipts(order_id, holder, terms.symbol, lots))
            refused = [e for e in out if e[0] == W_REJECTED]
            choice = (refused[0][3], []) if refused else (0, list(eng.locks[order_id].receipts))
            assert choice == expected, (s, choice, expected)
        elif kind == "grow" and eng.locks:
            _, i, lots = s
            lock_id = sorted(eng.locks)[i % len(eng.locks)]
            lock = eng.locks[lock_id]
            extra_kg = lots * eng.instruments[lock.instrument].lot_weight_kg
            before = list(lock.receipts)
            code, new = reference_grow(h, lock_id, extra_kg)
            events: list[Any] = []
            got, _detail = eng.grow_lock(lock_id, lots, h.seq + 1, h.ts, events)
            h.seq += 1
            assert got == code, (s, got, code)
            if not got:
                assert eng.locks[lock_id].receipts == before + new, (s, eng.locks[lock_id].receipts, before, new)
        elif kind == "unlock" and eng.locks:
            lock_id = sorted(eng.locks)[s[1] % len(eng.locks)]
            lock = eng.locks[lock_id]
            lots = lock.open_weight_kg // eng.instruments[lock.instrument].lot_weight_kg
            h.ok(UnlockReceipts(lock_id, lots))
        elif kind in ("split", "pledge"):
            active = sorted(n for n, r in eng.receipts.items() if r.state == ACTIVE)
            pledged = sorted(n for n, r in eng.receipts.items() if r.pledgee)
            if kind == "pledge" and pledged and s[1] % 2:
                number = pledged[s[1] % len(pledged)]
                h.ok(ReleasePledge(number, "BANK1"))
            elif active:
                r = eng.receipts[active[s[1] % len(active)]]
                if kind == "pledge":
                    h.ok(PledgeReceipt(r.number, r.holder, "BANK1"))
                elif r.weight_kg > 1:
                    part = max(1, r.weight_kg * s[2] // 100)
                    if part < r.weight_kg and (r.commodity == "coal" or r.pieces > 1):
                        pieces = 0 if r.commodity == "coal" else max(1, r.pieces * s[2] // 100)
                        if r.commodity == "coal" or pieces < r.pieces:
                            h.ok(SplitReceipt(r.number, r.holder, part, pieces))
        eng.check_invariants()  # includes: the index equals the active receipts sorted by age


def test_over_weight_taking_exactly_whole_receipts_splits_none() -> None:
    """The extra weight of an over-weight delivery comes oldest first from the
    seller's other receipts here; when it equals whole receipts none is split."""
    from tests.test_warehouse_engine import funded
    from warehouse import DELIVERED, DL_SETTLED, ConfirmDelivery, PayDeal

    h = Harness()
    funded(h)
    h.steel("R1", "A", 20_000, pieces=10)
    h.steel("R2", "A", 200, pieces=1)
    h.steel("R3", "A", 400, pieces=1)
    h.steel("R4", "A", 5_000, pieces=4)
    h.ok(LockReceipts(1, "A", REBAR.symbol, 2, ("R1",)))
    h.trade(5, 1, "B", 2, 3_500)
    h.ok(PayDeal(5, "B"))
    receipts_before = len(h.eng.receipts)
    h.ok(ConfirmDelivery(5, "op1", 20_600, True, 12))  # +3 %: R2 and R3 whole
    d = h.eng.deliveries[5]
    assert d.state == DL_SETTLED
    assert d.receipts == ["R1", "R2", "R3"]
    assert [h.state(n) for n in ("R1", "R2", "R3", "R4")] == [DELIVERED, DELIVERED, DELIVERED, ACTIVE]
    assert len(h.eng.receipts) == receipts_before + 1  # the buyer's receipt, no split part
    h.check()
