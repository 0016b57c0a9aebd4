"""Audits of the warehouse state: the stock report, the goods conservation
check, and every invariant of receipts, locks and deliveries (asserted by
the tests after every step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from warehouse._model import (
    ACTIVE,
    CANCELLED,
    DELIVERED,
    DL_AWAITING_PAYMENT,
    DL_PAID,
    DL_SETTLED,
    ENDED_DELIVERY_STATES,
    FROZEN,
    LIVE_STATES,
    LOADING,
    LOCKED,
    MERGED,
    PLEDGED,
    REGISTERED,
    STEEL,
    VOID,
    lot_cuts,
)

if TYPE_CHECKING:
    from warehouse._engine import WarehouseEngine

__all__ = ["check_invariants", "conservation_problems", "stock_report"]


def stock_report(eng: WarehouseEngine) -> list[dict[str, Any]]:
    """Per warehouse and instrument group, in kg: taken in, loaded out
    (receipt weight) and scale weight out; live receipts, of which
    active, locked to sell orders, in delivery, pledged, frozen by staff
    and waiting for load-out; and registrations awaiting confirmation."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(key: tuple[str, str]) -> dict[str, Any]:
        found = rows.get(key)
        if found is None:
            taken_in, loaded_out, scale_out = eng.stock.get(key, [0, 0, 0])
            found = rows[key] = {
                "warehouse_id": key[0],
                "group": key[1],
                "taken_in_kg": taken_in,
                "loaded_out_kg": loaded_out,
                "scale_out_kg": scale_out,
                "live_kg": 0,
                "active_kg": 0,
                "locked_kg": 0,
                "in_delivery_kg": 0,
                "pledged_kg": 0,
                "frozen_kg": 0,
                "loading_kg": 0,
                "pending_kg": 0,
            }
        return found

    for key in eng.stock:
        row(key)
    for r in eng.receipts.values():
        if r.state == REGISTERED:
            row(r.stock_key)["pending_kg"] += r.weight_kg
            continue
        if r.state not in LIVE_STATES:
            continue
        item = row(r.stock_key)
        item["live_kg"] += r.weight_kg
        if r.deal_id:
            item["in_delivery_kg"] += r.weight_kg
        elif r.state == ACTIVE:
            item["active_kg"] += r.weight_kg
        elif r.state == LOCKED:
            item["locked_kg"] += r.weight_kg
        elif r.state == PLEDGED:
            item["pledged_kg"] += r.weight_kg
        elif r.state == FROZEN:
            item["frozen_kg"] += r.weight_kg
        else:
            assert r.state == LOADING, r.state
            item["loading_kg"] += r.weight_kg
    return [rows[k] for k in sorted(rows)]


def conservation_problems(eng: WarehouseEngine) -> list[str]:
    """Goods conservation: per warehouse and instrument group, the live
    receipts weigh taken in less loaded out. Empty when it holds."""
    live: dict[tuple[str, str], int] = {}
    for r in eng.receipts.values():
        if r.state in LIVE_STATES:
            live[r.stock_key] = live.get(r.stock_key, 0) + r.weight_kg
    problems = []
    for key in sorted(set(live) | set(eng.stock)):
        taken_in, loaded_out, _ = eng.stock.get(key, [0, 0, 0])
        if live.get(key, 0) != taken_in - loaded_out:
            problems.append(f"{key[0]}/{key[1]}: live {live.get(key, 0)} kg != {taken_in} - {loaded_out} kg")
    return problems


def check_invariants(eng: WarehouseEngine) -> None:
    """Assert every invariant of the warehouse state (tests call this after every step)."""
    assert not conservation_problems(eng), conservation_problems(eng)
    active: dict[str, dict[str, None]] = {}
    locked_by_order: dict[int, set[str]] = {}
    in_deal: dict[int, set[str]] = {}
    for number, r in eng.receipts.items():
        assert r.number == number
        assert r.weight_kg > 0, number
        if r.commodity == STEEL:  # pieces are physical: a steel receipt with weight has some
            assert r.pieces > 0, number
        else:
            assert r.pieces == 0, number
        if r.state == ACTIVE:
            active.setdefault(r.holder, {})[number] = None
        assert (r.state == PLEDGED or (r.state == FROZEN and r.frozen_from == PLEDGED)) == bool(r.pledgee), number
        if r.order_id:
            assert r.state == LOCKED, number
            assert not r.deal_id, number
            locked_by_order.setdefault(r.order_id, set()).add(number)
        if r.deal_id:
            d = eng.deliveries[r.deal_id]
            if d.state in ENDED_DELIVERY_STATES:
                assert r.state == DELIVERED, number
            else:
                assert r.state in (LOCKED, FROZEN), number
                in_deal.setdefault(r.deal_id, set()).add(number)
        if r.state == LOCKED:
            assert bool(r.order_id) != bool(r.deal_id), number
        assert (r.state == FROZEN) == bool(r.frozen_from), number
        if r.state == FROZEN:
            assert r.frozen_from in (ACTIVE, PLEDGED, LOCKED), number
            assert (r.frozen_from == LOCKED) == bool(r.deal_id), number
        if r.state == DELIVERED:
            assert r.deal_id, number
            assert eng.deliveries[r.deal_id].state == DL_SETTLED, number
        if r.state in (ACTIVE, REGISTERED, VOID, MERGED, CANCELLED, LOADING, PLEDGED):
            assert not r.order_id, number
            assert not r.deal_id, number
    assert {h: set(n) for h, n in active.items() if n} == {h: set(n) for h, n in eng.active_by_holder.items() if n}
    by_goods: dict[tuple[str, str, str, str], list[tuple[int, str]]] = {}
    for r in eng.receipts.values():
        if r.state == ACTIVE:
            by_goods.setdefault((r.holder, r.group, r.commodity, r.grade), []).append(r.age_key)
    assert {k: sorted(v) for k, v in by_goods.items()} == {k: list(v) for k, v in eng.active_by_goods.items()}
    for order_id, lock in eng.locks.items():
        assert lock.open_weight_kg > 0, order_id
        assert set(lock.receipts) == locked_by_order.get(order_id, set()), order_id
        assert len(lock.receipts) == len(set(lock.receipts)), order_id
        weights = [eng.receipts[n].weight_kg for n in lock.receipts]
        assert sum(weights) >= lock.open_weight_kg, order_id
        assert sum(weights) - weights[-1] < lock.open_weight_kg, order_id
        lot_kg = eng.instruments[lock.instrument].lot_weight_kg
        start_kg = 0
        for n in lock.receipts:
            r = eng.receipts[n]
            assert r.warehouse_id == lock.warehouse_id, order_id
            if r.commodity == STEEL:  # a piece for every part the open lots may cut it into
                assert r.pieces > lot_cuts(start_kg, r.weight_kg, lock.open_weight_kg, lot_kg), (order_id, n)
            start_kg += r.weight_kg
    assert set(locked_by_order) <= set(eng.locks)
    for deal_id, d in eng.deliveries.items():
        assert (deal_id in eng.open_deals) == (d.state not in ENDED_DELIVERY_STATES), deal_id
        if d.state not in ENDED_DELIVERY_STATES:
            assert set(d.receipts) == in_deal.get(deal_id, set()), deal_id
            weight = sum(eng.receipts[n].weight_kg for n in d.receipts)
            if d.state in (DL_AWAITING_PAYMENT, DL_PAID):
                assert weight == d.contract_weight_kg, deal_id
            else:
                assert weight >= d.actual_weight_kg, deal_id
        elif d.state == DL_SETTLED:
            assert d.buyer_receipt in eng.receipts, deal_id
    assert set(in_deal) <= set(eng.open_deals)
