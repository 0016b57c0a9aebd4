"""Events of the warehouse core.

Plain tuples like matching's and clearing's events: the first item a kind
code (warehouse codes start at 201 so they never collide with matching's
1.. or clearing's 101..), the second the sequence number of the command that
caused it. The money legs of a delivery are clearing's events, appended by
the ledger to the same list. Layouts, item by item:

    W_REJECTED       (201, seq, reference, code, detail)
                     reference: the receipt number, order id, deal id,
                     warehouse or operator id the command named; code a
                     WarehouseCode; nothing was changed
    W_WAREHOUSE      (202, seq, warehouse_id, name, groups)
                     groups: the designated instrument groups, comma-joined
    W_OPERATOR       (203, seq, operator_id, warehouse_id)
    W_RECEIPT        (204, seq, number, origin, warehouse_id, holder, commodity,
                      group, grade, weight_kg, pieces, lot_numbers,
                      certificate_no, calorific_kcal_per_kg, moisture_bps,
                      sulphur_bps, steel_grade, dimensions, location, state)
                     a receipt came into being; origin: "registered",
                     "split:<parent>", "merged", "delivery:<deal>" (the
                     buyer's receipt), "residual:<deal>" (the seller's
                     undelivered rest), "extra:<deal>" (drawn for an
                     over-weight delivery) or "part:<deal>" (the allocated
                     part of a split at allocation)
    W_RECEIPT_STATE  (205, seq, number, transition, state, holder, weight_kg,
                      actor, ref)
                     a receipt moved (or changed weight); transition names the
                     step (TRANSITIONS), state is the state after it; ref is
                     the order, deal, bank, or other receipt concerned
    W_LOCK           (206, seq, order_id, member, instrument, warehouse_id,
                      open_weight_kg, locked_weight_kg, receipts)
                     the receipts locked for a sell order after the command;
                     receipts comma-joined; all zero/empty when the lock ended
    W_DELIVERY       (207, seq, deal_id, instrument, warehouse_id, order_id,
                      buyer, seller, price_ticks, quantity_lots,
                      contract_weight_kg, payment_deadline_ns,
                      delivery_deadline_ns, receipts)
                     a delivery record opened at the trade
    W_DELIVERY_STATE (208, seq, deal_id, state, actual_weight_kg, quality_pass,
                      amount_fen, refund_fen, extra_fen, detail)
                     the delivery moved to `state`; amount_fen is what the
                     seller is paid before fees (settled), refund/extra the
                     buyer's side of the tolerance settlement; detail: the
                     defaulter ("buyer"/"seller"), the dispute reason, or
                     clearing's refusal when a settlement has to wait
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "TRANSITIONS",
    "WAREHOUSE_EVENT_FIELDS",
    "WAREHOUSE_EVENT_NAMES",
    "W_DELIVERY",
    "W_DELIVERY_STATE",
    "W_LOCK",
    "W_OPERATOR",
    "W_RECEIPT",
    "W_RECEIPT_STATE",
    "W_REJECTED",
    "W_WAREHOUSE",
    "Event",
    "warehouse_event_to_dict",
]

Event = tuple[Any, ...]

W_REJECTED: Final = 201
W_WAREHOUSE: Final = 202
W_OPERATOR: Final = 203
W_RECEIPT: Final = 204
W_RECEIPT_STATE: Final = 205
W_LOCK: Final = 206
W_DELIVERY: Final = 207
W_DELIVERY_STATE: Final = 208

TRANSITIONS: Final = (
    "registered",  # created by the operator: registered (awaiting the holder)
    "issued",  # created by the core: a split part, a merge, a delivery's or a residual receipt
    "confirmed",  # the holder confirmed: active, counted as taken in
    "voided",  # the operator withdrew an unconfirmed registration
    "locked",  # locked to a sell order
    "unlocked",  # released by the order's cancel or fill
    "allocated",  # moved from the order to a deal at the trade
    "pledged",  # pledged to a bank
    "released",  # the bank released the pledge
    "frozen",  # staff froze it, or a delivery dispute did
    "unfrozen",  # staff unfroze it
    "split",  # weight split off into a new receipt
    "weight_moved",  # book weight moved to or from another of the holder's receipts (ref: the other)
    "merged",  # merged into a new receipt (the source ends)
    "load_out_requested",
    "load_out_withdrawn",
    "loaded_out",  # the operator confirmed the load-out: cancelled
    "delivered",  # title passed to the buyer (the source ends)
    "returned",  # a deal ended without delivery: back to the seller, active
)

WAREHOUSE_EVENT_FIELDS: dict[int, tuple[str, ...]] = {
    W_REJECTED: ("kind", "seq", "reference", "code", "detail"),
    W_WAREHOUSE: ("kind", "seq", "warehouse_id", "name", "groups"),
    W_OPERATOR: ("kind", "seq", "operator_id", "warehouse_id"),
    W_RECEIPT: (
        "kind",
        "seq",
        "number",
        "origin",
        "warehouse_id",
        "holder",
        "commodity",
        "group",
        "grade",
        "weight_kg",
        "pieces",
        "lot_numbers",
        "certificate_no",
        "calorific_kcal_per_kg",
        "moisture_bps",
        "sulphur_bps",
        "steel_grade",
        "dimensions",
        "location",
        "state",
    ),
    W_RECEIPT_STATE: ("kind", "seq", "number", "transition", "state", "holder", "weight_kg", "actor", "ref"),
    W_LOCK: (
        "kind",
        "seq",
        "order_id",
        "member",
        "instrument",
        "warehouse_id",
        "open_weight_kg",
        "locked_weight_kg",
        "receipts",
    ),
    W_DELIVERY: (
        "kind",
        "seq",
        "deal_id",
        "instrument",
        "warehouse_id",
        "order_id",
        "buyer",
        "seller",
        "price_ticks",
        "quantity_lots",
        "contract_weight_kg",
        "payment_deadline_ns",
        "delivery_deadline_ns",
        "receipts",
    ),
    W_DELIVERY_STATE: (
        "kind",
        "seq",
        "deal_id",
        "state",
        "actual_weight_kg",
        "quality_pass",
        "amount_fen",
        "refund_fen",
        "extra_fen",
        "detail",
    ),
}

WAREHOUSE_EVENT_NAMES: dict[int, str] = {
    W_REJECTED: "warehouse_rejected",
    W_WAREHOUSE: "warehouse",
    W_OPERATOR: "operator",
    W_RECEIPT: "receipt",
    W_RECEIPT_STATE: "receipt_state",
    W_LOCK: "receipt_lock",
    W_DELIVERY: "delivery",
    W_DELIVERY_STATE: "delivery_state",
}


def warehouse_event_to_dict(event: Event) -> dict[str, Any]:
    """The event with its items named (kind as its name), for the edges."""
    fields = WAREHOUSE_EVENT_FIELDS[event[0]]
    assert len(fields) == len(event), event
    out = dict(zip(fields, event, strict=True))
    out["kind"] = WAREHOUSE_EVENT_NAMES[event[0]]
    return out
