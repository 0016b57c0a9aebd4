"""Commands of the warehouse core.

A command is a plain record; the sequencer gives it a sequence number and a
timestamp (``ts_ns``, the only clock the core knows: deadlines are checked
against it) and hands it to ``WarehouseEngine.apply``. Every field is an
int, str, bool or a tuple of str, in declaration order, so the journal can
store a command as a list of values.

Who sends what (the edge authenticates; the core checks what it can):
- staff: AddWarehouse, AddOperator, FreezeReceipt, UnfreezeReceipt,
  ResolveDispute, SettleDelivery, DeclareDefault, SweepDeadlines
- operator (its own warehouse only, checked here): RegisterReceipt,
  VoidReceipt, ConfirmDelivery, ConfirmLoadOut
- holder (a member; checked against the receipt): ConfirmReceipt,
  PledgeReceipt, SplitReceipt, MergeReceipts, RequestLoadOut,
  WithdrawLoadOut; buyer: PayDeal
- bank: ReleasePledge
- the core itself, on orders and trades: LockReceipts, UnlockReceipts,
  AllocateDeal (also callable as engine methods)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "WAREHOUSE_COMMANDS",
    "AddOperator",
    "AddWarehouse",
    "AllocateDeal",
    "ConfirmDelivery",
    "ConfirmLoadOut",
    "ConfirmReceipt",
    "DeclareDefault",
    "FreezeReceipt",
    "LockReceipts",
    "MergeReceipts",
    "PayDeal",
    "PledgeReceipt",
    "RegisterReceipt",
    "ReleasePledge",
    "RequestLoadOut",
    "ResolveDispute",
    "SettleDelivery",
    "SplitReceipt",
    "SweepDeadlines",
    "UnfreezeReceipt",
    "UnlockReceipts",
    "VoidReceipt",
    "WarehouseCommand",
    "WithdrawLoadOut",
]


@dataclass(slots=True)
class AddWarehouse:
    """Staff add a warehouse designated for instrument groups
    (``Instrument.warehouse_group`` values)."""

    KIND: ClassVar[str] = "add_warehouse"
    warehouse_id: str
    name: str
    groups: tuple[str, ...]
    staff: str


@dataclass(slots=True)
class AddOperator:
    """Staff open an operator account acting for one warehouse."""

    KIND: ClassVar[str] = "add_operator"
    operator_id: str
    warehouse_id: str
    staff: str


@dataclass(slots=True)
class RegisterReceipt:
    """The operator registers goods taken in, after inspection, for `holder`.

    The instrument's group must be one the operator's warehouse is
    designated for; commodity, grade and group come from the instrument.
    Coal: calorific value (kcal/kg), moisture and sulphur (basis points),
    pieces 0, steel fields empty. Steel: pieces (or bundles) > 0, certified
    steel grade and dimensions, coal fields 0. The receipt waits in
    `registered` until the holder confirms it.
    """

    KIND: ClassVar[str] = "register_receipt"
    operator: str
    number: str
    holder: str
    instrument: str
    weight_kg: int
    pieces: int
    lot_numbers: str
    certificate_no: str
    calorific_kcal_per_kg: int
    moisture_bps: int
    sulphur_bps: int
    steel_grade: str
    dimensions: str
    location: str


@dataclass(slots=True)
class ConfirmReceipt:
    """The holder confirms a registered receipt: it becomes active and its
    weight counts as taken in."""

    KIND: ClassVar[str] = "confirm_receipt"
    number: str
    member: str


@dataclass(slots=True)
class VoidReceipt:
    """The operator withdraws a registration the holder has not confirmed."""

    KIND: ClassVar[str] = "void_receipt"
    number: str
    operator: str


@dataclass(slots=True)
class PledgeReceipt:
    KIND: ClassVar[str] = "pledge_receipt"
    number: str
    member: str
    bank: str


@dataclass(slots=True)
class ReleasePledge:
    """The bank the receipt is pledged to releases it."""

    KIND: ClassVar[str] = "release_pledge"
    number: str
    bank: str


@dataclass(slots=True)
class FreezeReceipt:
    """Staff freeze an active or pledged receipt (a dispute over the goods)."""

    KIND: ClassVar[str] = "freeze_receipt"
    number: str
    staff: str
    reason: str


@dataclass(slots=True)
class UnfreezeReceipt:
    """Staff lift their freeze: the receipt returns to the state it was frozen from."""

    KIND: ClassVar[str] = "unfreeze_receipt"
    number: str
    staff: str
    reason: str


@dataclass(slots=True)
class SplitReceipt:
    """The holder splits `weight_kg` (and `pieces`) off an active receipt
    into a new active receipt numbered ``<warehouse>#<serial>``."""

    KIND: ClassVar[str] = "split_receipt"
    number: str
    member: str
    weight_kg: int
    pieces: int


@dataclass(slots=True)
class MergeReceipts:
    """The holder merges 2 or more active receipts of the same warehouse,
    group, commodity and grade into one new receipt. The merged certificate
    is the least favourable of the sources: coal the lowest calorific
    value and highest moisture and sulphur; steel grade and dimensions must
    be equal."""

    KIND: ClassVar[str] = "merge_receipts"
    numbers: tuple[str, ...]
    member: str


@dataclass(slots=True)
class RequestLoadOut:
    KIND: ClassVar[str] = "request_load_out"
    number: str
    member: str


@dataclass(slots=True)
class WithdrawLoadOut:
    KIND: ClassVar[str] = "withdraw_load_out"
    number: str
    member: str


@dataclass(slots=True)
class ConfirmLoadOut:
    """The operator confirms the goods left: `weight_kg` is the scale
    weight actually loaded out. The receipt is cancelled."""

    KIND: ClassVar[str] = "confirm_load_out"
    number: str
    operator: str
    weight_kg: int


@dataclass(slots=True)
class LockReceipts:
    """Lock receipts for a sell order of `quantity_lots`. `numbers` names
    the receipts (all of one warehouse); empty: oldest first, from the
    first warehouse (by its oldest receipt) that can cover the quantity."""

    KIND: ClassVar[str] = "lock_receipts"
    order_id: int
    member: str
    instrument: str
    quantity_lots: int
    numbers: tuple[str, ...] = ()


@dataclass(slots=True)
class UnlockReceipts:
    """`cancelled_lots` of the sell order were cancelled: receipts no longer
    needed are unlocked (all of them when nothing stays open)."""

    KIND: ClassVar[str] = "unlock_receipts"
    order_id: int
    cancelled_lots: int


@dataclass(slots=True)
class AllocateDeal:
    """A trade of `quantity_lots` against sell order `order_id`: the locked
    weight moves to a new delivery record for deal `deal_id` (a receipt is
    split where the deal needs only part of it). Deadlines of 0 are
    computed from the instrument's payment_days and delivery_days."""

    KIND: ClassVar[str] = "allocate_deal"
    deal_id: int
    order_id: int
    buyer: str
    quantity_lots: int
    price_ticks: int
    payment_deadline_ns: int = 0
    delivery_deadline_ns: int = 0


@dataclass(slots=True)
class PayDeal:
    """The buyer pays: clearing escrows the rest of the price."""

    KIND: ClassVar[str] = "pay_deal"
    deal_id: int
    member: str


@dataclass(slots=True)
class ConfirmDelivery:
    """The operator confirms delivery of a paid deal with the weight actually
    delivered, the quality result and the pieces handed over (steel: 1 to
    the pieces of the deal's receipts; coal: 0). Within tolerance and
    passed: settled at once (delivery versus payment). Outside tolerance or
    failed: disputed."""

    KIND: ClassVar[str] = "confirm_delivery"
    deal_id: int
    operator: str
    actual_weight_kg: int
    quality_pass: bool
    pieces: int


@dataclass(slots=True)
class SettleDelivery:
    """Retry the settlement of a confirmed delivery whose money leg clearing refused."""

    KIND: ClassVar[str] = "settle_delivery"
    deal_id: int
    staff: str


@dataclass(slots=True)
class ResolveDispute:
    """Staff resolve a disputed delivery: "adjust" settles at `amount_fen`
    (paid to the seller before fees) for the delivered weight; "cancel"
    cancels the deal, releases the holds and returns the receipts."""

    KIND: ClassVar[str] = "resolve_dispute"
    deal_id: int
    staff: str
    resolution: str
    amount_fen: int = 0


@dataclass(slots=True)
class DeclareDefault:
    """Declare the party that missed a deadline of this deal in default."""

    KIND: ClassVar[str] = "declare_default"
    deal_id: int
    staff: str


@dataclass(slots=True)
class SweepDeadlines:
    """Declare every deal whose deadline has passed in default (in deal id
    order, at most ``max_defaults_per_sweep`` per command)."""

    KIND: ClassVar[str] = "sweep_deadlines"
    staff: str


WarehouseCommand = (
    AddWarehouse
    | AddOperator
    | RegisterReceipt
    | ConfirmReceipt
    | VoidReceipt
    | PledgeReceipt
    | ReleasePledge
    | FreezeReceipt
    | UnfreezeReceipt
    | SplitReceipt
    | MergeReceipts
    | RequestLoadOut
    | WithdrawLoadOut
    | ConfirmLoadOut
    | LockReceipts
    | UnlockReceipts
    | AllocateDeal
    | PayDeal
    | ConfirmDelivery
    | SettleDelivery
    | ResolveDispute
    | DeclareDefault
    | SweepDeadlines
)

WAREHOUSE_COMMANDS: dict[str, type[WarehouseCommand]] = {
    cls.KIND: cls
    for cls in (
        AddWarehouse,
        AddOperator,
        RegisterReceipt,
        ConfirmReceipt,
        VoidReceipt,
        PledgeReceipt,
        ReleasePledge,
        FreezeReceipt,
        UnfreezeReceipt,
        SplitReceipt,
        MergeReceipts,
        RequestLoadOut,
        WithdrawLoadOut,
        ConfirmLoadOut,
        LockReceipts,
        UnlockReceipts,
        AllocateDeal,
        PayDeal,
        ConfirmDelivery,
        SettleDelivery,
        ResolveDispute,
        DeclareDefault,
        SweepDeadlines,
    )
}
