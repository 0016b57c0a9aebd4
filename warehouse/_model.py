"""Records of the warehouse core: warehouses, instrument terms, receipts,
sell-order locks and delivery records, with their states and limits.

Every record turns into a list of primitives (``to_list``) and back
(``from_list``) for ``export_state``; the order of the items is the order of
the slots.

Receipt life cycle (every step checks the state it starts from)::

    registered ──confirm (holder)──► active ◄──────────────────────────┐
        │                             │  ▲                             │
        └─void (operator)─► void      │  │ unlock / returned           │
                                      ├─lock (order)─► locked ─allocate─► locked (deal)
                                      │                                  │   │ dispute
                                      │                                  │   ▼
                                      │                                  │ frozen (deal) ─cancel─► active
                                      │                                  └─settle / adjust─► delivered
                                      ├─pledge (holder)─► pledged ─release (bank)─► active
                                      ├─freeze (staff)─► frozen ─unfreeze (staff)─► active / pledged
                                      ├─request load-out─► loading ─withdraw─► active
                                      │                      └─confirm (operator)─► cancelled
                                      ├─split: weight moves to a new active receipt
                                      └─merge: sources end as merged, a new active receipt holds the sum

Live states (counted in stock): active, locked, pledged, frozen, loading.
Ended states: void, delivered, merged, cancelled. A registered receipt is
pending: not yet taken in.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "COAL",
    "DELIVERED",
    "DELIVERY_STATES",
    "DL_AWAITING_PAYMENT",
    "DL_CANCELLED",
    "DL_DEFAULTED",
    "DL_DELIVERY_CONFIRMED",
    "DL_DISPUTED",
    "DL_PAID",
    "DL_SETTLED",
    "ENDED_DELIVERY_STATES",
    "FROZEN",
    "LIVE_STATES",
    "LOADING",
    "LOCKED",
    "MERGED",
    "PLEDGED",
    "RECEIPT_STATES",
    "REGISTERED",
    "STEEL",
    "VOID",
    "Delivery",
    "InstrumentTerms",
    "OrderLock",
    "Receipt",
    "Warehouse",
    "WarehouseLimits",
    "lot_cuts",
]

REGISTERED: Final = "registered"
ACTIVE: Final = "active"
LOCKED: Final = "locked"
PLEDGED: Final = "pledged"
FROZEN: Final = "frozen"
LOADING: Final = "loading"
VOID: Final = "void"
DELIVERED: Final = "delivered"
MERGED: Final = "merged"
CANCELLED: Final = "cancelled"

RECEIPT_STATES: Final = (REGISTERED, ACTIVE, LOCKED, PLEDGED, FROZEN, LOADING, VOID, DELIVERED, MERGED, CANCELLED)
LIVE_STATES: Final = frozenset((ACTIVE, LOCKED, PLEDGED, FROZEN, LOADING))

DL_AWAITING_PAYMENT: Final = "awaiting_payment"
DL_PAID: Final = "paid"
DL_DELIVERY_CONFIRMED: Final = "delivery_confirmed"
DL_SETTLED: Final = "settled"
DL_DISPUTED: Final = "disputed"
DL_DEFAULTED: Final = "defaulted"
DL_CANCELLED: Final = "cancelled"

DELIVERY_STATES: Final = (
    DL_AWAITING_PAYMENT,
    DL_PAID,
    DL_DELIVERY_CONFIRMED,
    DL_SETTLED,
    DL_DISPUTED,
    DL_DEFAULTED,
    DL_CANCELLED,
)
ENDED_DELIVERY_STATES: Final = frozenset((DL_SETTLED, DL_DEFAULTED, DL_CANCELLED))

STEEL: Final = "steel"
COAL: Final = "coal"


def lot_cuts(start_kg: int, weight_kg: int, open_kg: int, lot_kg: int) -> int:
    """How many places a sell order's trades may still cut a receipt that holds
    ``[start_kg, start_kg + weight_kg)`` of the order's locked weight (counted
    from the front of the lock) while `open_kg` stay open: trades take whole
    lots from the front, so the cuts fall at multiples of `lot_kg` up to
    `open_kg`, and a cut at either end of the receipt splits nothing. A steel
    receipt needs one piece more than its cuts, so every part keeps one."""
    assert start_kg >= 0, start_kg
    assert weight_kg > 0, weight_kg
    assert lot_kg > 0, lot_kg
    end_kg = min(start_kg + weight_kg - 1, open_kg)
    return max(0, end_kg // lot_kg - start_kg // lot_kg)


@dataclass(frozen=True, slots=True)
class WarehouseLimits:
    """Limits of the warehouse core. Each is enforced and answered with a
    refusal, never a crash.

    max_weight_kg: one receipt (and one delivery) weighs at most this
    (100 000 t). max_history: a receipt keeps its first transition and the
    latest ones up to this count (the journal keeps them all).
    max_load_out_difference_bps: the scale weight at load-out may differ
    from the receipt's weight by at most this (10 %), to catch typing errors.
    day_ns: length of a deadline day; payment_days and delivery_days count
    calendar days from the trade (a business-day calendar belongs at the
    edge, which then passes explicit deadlines with the allocation).
    """

    max_warehouses: int = 1_000
    max_operators: int = 10_000
    max_receipts: int = 2_000_000
    max_open_deliveries: int = 1_000_000
    max_receipts_per_list: int = 100
    max_weight_kg: int = 100_000_000
    max_amount_fen: int = 10**15
    max_history: int = 32
    max_text_chars: int = 200
    max_lot_numbers_chars: int = 1_000
    max_id_chars: int = 64
    max_receipt_number_chars: int = 40
    max_groups_per_warehouse: int = 16
    max_defaults_per_sweep: int = 1_000
    max_load_out_difference_bps: int = 1_000
    day_ns: int = 86_400 * 1_000_000_000

    def to_list(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(frozen=True, slots=True)
class InstrumentTerms:
    """What the warehouse needs of a listed instrument."""

    symbol: str
    commodity: str
    grade: str
    group: str
    lot_size_t: int
    tick_fen: int
    weight_tolerance_bps: int
    payment_days: int
    delivery_days: int

    @property
    def lot_weight_kg(self) -> int:
        return self.lot_size_t * 1_000

    def to_list(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]


@dataclass(slots=True)
class Warehouse:
    warehouse_id: str
    name: str
    groups: tuple[str, ...]

    def to_list(self) -> list[Any]:
        return [self.warehouse_id, self.name, list(self.groups)]

    @classmethod
    def from_list(cls, items: list[Any]) -> Warehouse:
        return cls(items[0], items[1], tuple(items[2]))


class Receipt:
    """One electronic warehouse receipt.

    `since_seq` orders receipts oldest first (the seq of the registration;
    a split part inherits its parent's, a merged receipt its oldest
    source's). `order_id`/`deal_id` say what a locked (or dispute-frozen)
    receipt is locked to; `frozen_from` the state a staff freeze returns
    to; `pledgee` the bank of a pledge. `history` holds transitions as
    [transition, actor, seq, ts_ns].
    """

    __slots__ = (
        "number",
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
        "since_seq",
        "order_id",
        "deal_id",
        "pledgee",
        "frozen_from",
        "scale_weight_kg",
        "history_count",
        "history",
    )

    def __init__(
        self,
        number: str,
        warehouse_id: str,
        holder: str,
        commodity: str,
        group: str,
        grade: str,
        weight_kg: int,
        pieces: int,
        lot_numbers: str,
        certificate_no: str,
        calorific_kcal_per_kg: int,
        moisture_bps: int,
        sulphur_bps: int,
        steel_grade: str,
        dimensions: str,
        location: str,
        state: str,
        since_seq: int,
    ) -> None:
        self.number = number
        self.warehouse_id = warehouse_id
        self.holder = holder
        self.commodity = commodity
        self.group = group
        self.grade = grade
        self.weight_kg = weight_kg
        self.pieces = pieces
        self.lot_numbers = lot_numbers
        self.certificate_no = certificate_no
        self.calorific_kcal_per_kg = calorific_kcal_per_kg
        self.moisture_bps = moisture_bps
        self.sulphur_bps = sulphur_bps
        self.steel_grade = steel_grade
        self.dimensions = dimensions
        self.location = location
        self.state = state
        self.since_seq = since_seq
        self.order_id = 0
        self.deal_id = 0
        self.pledgee = ""
        self.frozen_from = ""
        self.scale_weight_kg = 0
        self.history_count = 0
        self.history: list[list[Any]] = []

    @property
    def stock_key(self) -> tuple[str, str]:
        return (self.warehouse_id, self.group)

    @property
    def age_key(self) -> tuple[int, str]:
        """Sort key: oldest first, then by number."""
        return (self.since_seq, self.number)

    def describe(self) -> tuple[Any, ...]:
        """The descriptive items of a W_RECEIPT event, from warehouse_id to location."""
        return (
            self.warehouse_id,
            self.holder,
            self.commodity,
            self.group,
            self.grade,
            self.weight_kg,
            self.pieces,
            self.lot_numbers,
            self.certificate_no,
            self.calorific_kcal_per_kg,
            self.moisture_bps,
            self.sulphur_bps,
            self.steel_grade,
            self.dimensions,
            self.location,
        )

    def copy_as(self, number: str, holder: str, weight_kg: int, pieces: int, since_seq: int) -> Receipt:
        """A new receipt for part (or all) of these goods, with the same description."""
        return Receipt(
            number,
            self.warehouse_id,
            holder,
            self.commodity,
            self.group,
            self.grade,
            weight_kg,
            pieces,
            self.lot_numbers,
            self.certificate_no,
            self.calorific_kcal_per_kg,
            self.moisture_bps,
            self.sulphur_bps,
            self.steel_grade,
            self.dimensions,
            self.location,
            ACTIVE,
            since_seq,
        )

    def record(self, transition: str, actor: str, seq: int, ts_ns: int, max_history: int) -> None:
        """Append a transition to the history, keeping the first and the latest ones."""
        self.history.append([transition, actor, seq, ts_ns])
        self.history_count += 1
        if len(self.history) > max_history:
            del self.history[1]

    def to_list(self) -> list[Any]:
        return [getattr(self, name) for name in self.__slots__]

    @classmethod
    def from_list(cls, items: list[Any]) -> Receipt:
        r = cls(*items[:18])
        r.order_id, r.deal_id, r.pledgee, r.frozen_from, r.scale_weight_kg, r.history_count = items[18:24]
        r.history = [list(h) for h in items[24]]
        return r


class OrderLock:
    """The receipts locked for one sell order. `open_weight_kg` is the
    weight the order may still sell (open lots x lot weight); the locked
    receipts weigh at least that, the last one possibly more (it is split
    when a trade needs only part of it)."""

    __slots__ = ("order_id", "member", "instrument", "warehouse_id", "open_weight_kg", "receipts")

    def __init__(
        self, order_id: int, member: str, instrument: str, warehouse_id: str, open_weight_kg: int, receipts: list[str]
    ) -> None:
        self.order_id = order_id
        self.member = member
        self.instrument = instrument
        self.warehouse_id = warehouse_id
        self.open_weight_kg = open_weight_kg
        self.receipts = receipts

    def to_list(self) -> list[Any]:
        return [
            self.order_id,
            self.member,
            self.instrument,
            self.warehouse_id,
            self.open_weight_kg,
            list(self.receipts),
        ]

    @classmethod
    def from_list(cls, items: list[Any]) -> OrderLock:
        return cls(items[0], items[1], items[2], items[3], items[4], list(items[5]))


class Delivery:
    """The delivery record of one deal (see ``_engine`` for its life cycle)."""

    __slots__ = (
        "deal_id",
        "instrument",
        "warehouse_id",
        "order_id",
        "buyer",
        "seller",
        "price_ticks",
        "quantity_lots",
        "contract_weight_kg",
        "price_fen_per_t",
        "tolerance_bps",
        "payment_deadline_ns",
        "delivery_deadline_ns",
        "receipts",
        "state",
        "actual_weight_kg",
        "pieces",
        "quality_pass",
        "amount_fen",
        "refund_fen",
        "extra_fen",
        "detail",
        "buyer_receipt",
        "residual_receipt",
    )

    def __init__(
        self,
        deal_id: int,
        instrument: str,
        warehouse_id: str,
        order_id: int,
        buyer: str,
        seller: str,
        price_ticks: int,
        quantity_lots: int,
        contract_weight_kg: int,
        price_fen_per_t: int,
        tolerance_bps: int,
        payment_deadline_ns: int,
        delivery_deadline_ns: int,
        receipts: list[str],
    ) -> None:
        self.deal_id = deal_id
        self.instrument = instrument
        self.warehouse_id = warehouse_id
        self.order_id = order_id
        self.buyer = buyer
        self.seller = seller
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots
        self.contract_weight_kg = contract_weight_kg
        self.price_fen_per_t = price_fen_per_t
        self.tolerance_bps = tolerance_bps
        self.payment_deadline_ns = payment_deadline_ns
        self.delivery_deadline_ns = delivery_deadline_ns
        self.receipts = receipts
        self.state = DL_AWAITING_PAYMENT
        self.actual_weight_kg = 0
        self.pieces = 0
        self.quality_pass = False
        self.amount_fen = 0
        self.refund_fen = 0
        self.extra_fen = 0
        self.detail = ""
        self.buyer_receipt = ""
        self.residual_receipt = ""

    def to_list(self) -> list[Any]:
        items = [getattr(self, name) for name in self.__slots__]
        items[13] = list(self.receipts)
        return items

    @classmethod
    def from_list(cls, items: list[Any]) -> Delivery:
        d = cls(*items[:14])
        d.receipts = list(d.receipts)
        (
            d.state,
            d.actual_weight_kg,
            d.pieces,
            d.quality_pass,
            d.amount_fen,
            d.refund_fen,
            d.extra_fen,
            d.detail,
            d.buyer_receipt,
            d.residual_receipt,
        ) = items[14:]
        return d
