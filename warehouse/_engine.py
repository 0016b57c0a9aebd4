"""The warehouse engine: receipts, sell-order locks and deliveries, driven by commands.

Pure and deterministic: ``apply(command, seq, ts_ns, out)`` validates the
command, changes the state and appends event tuples (see ``_events``) to
`out`. It reads no clock and does no I/O; `ts_ns` is the command's time,
against which deadlines are checked. The money legs are the ledger's
(``DeliveryLedger``); the ledger appends its own events to the same `out`.

Delivery life cycle (every step checks the state it starts from)::

    awaiting_payment ──pay (buyer, by the payment deadline)──► paid
        │                                                       │
        │ payment deadline passed: buyer defaults               │ operator confirms weight + quality
        ▼                                                       ▼   (by the delivery deadline)
    defaulted ◄── delivery deadline passed: seller defaults ── paid
        ▲                                                       │
        │                      within tolerance, passed ────────┼──► delivery_confirmed ──settle──► settled
        │                                                       │         │ (clearing refused: retry
        └── delivery deadline passed: buyer defaults ───────────┼─────────┘  with SettleDelivery)
                                                                │
                          outside tolerance or failed quality ──┴──► disputed
                                                                        ├─ staff adjust ──► settled
                                                                        └─ staff cancel ──► cancelled

Settlement is one atomic step: everything of the warehouse's own is
checked first, then clearing is asked to settle the money; only when it
agrees do the receipts move (the seller's receipts end as delivered, the
buyer gets a new receipt for the delivered weight, the seller a residual
receipt for any allocated weight not delivered). A refusal anywhere
changes nothing.

Goods are counted in receipt ("book") weight: a receipt's weight is taken
in when its holder confirms it and loaded out when the operator confirms
the load-out (the scale weight is recorded beside it). Splits, merges and
deliveries move book weight between receipts and never create or destroy
it, so per warehouse and instrument group the live receipts weigh exactly
taken in less loaded out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sortedcontainers import SortedList

from matching import Instrument
from warehouse._audit import check_invariants, conservation_problems, stock_report
from warehouse._commands import (
    AddOperator,
    AddWarehouse,
    AllocateDeal,
    ConfirmDelivery,
    ConfirmLoadOut,
    ConfirmReceipt,
    DeclareDefault,
    FreezeReceipt,
    LockReceipts,
    MergeReceipts,
    PayDeal,
    PledgeReceipt,
    RegisterReceipt,
    ReleasePledge,
    RequestLoadOut,
    ResolveDispute,
    SettleDelivery,
    SplitReceipt,
    SweepDeadlines,
    UnfreezeReceipt,
    UnlockReceipts,
    VoidReceipt,
    WarehouseCommand,
    WithdrawLoadOut,
)
from warehouse._errors import WarehouseCode
from warehouse._events import (
    W_DELIVERY,
    W_DELIVERY_STATE,
    W_LOCK,
    W_OPERATOR,
    W_RECEIPT,
    W_RECEIPT_STATE,
    W_REJECTED,
    W_WAREHOUSE,
    Event,
)
from warehouse._ledger import BUYER_SIDE, SELLER_SIDE, DeliveryLedger
from warehouse._model import (
    ACTIVE,
    CANCELLED,
    COAL,
    DELIVERED,
    DL_AWAITING_PAYMENT,
    DL_CANCELLED,
    DL_DEFAULTED,
    DL_DELIVERY_CONFIRMED,
    DL_DISPUTED,
    DL_PAID,
    DL_SETTLED,
    ENDED_DELIVERY_STATES,
    FROZEN,
    LOADING,
    LOCKED,
    MERGED,
    PLEDGED,
    REGISTERED,
    STEEL,
    VOID,
    Delivery,
    InstrumentTerms,
    OrderLock,
    Receipt,
    Warehouse,
    WarehouseLimits,
    lot_cuts,
)
from warehouse._tolerance import BPS, settle_weight

__all__ = ["ADJUST", "CANCEL", "EXCHANGE_ACTOR", "WarehouseEngine"]

_OK = 0
ADJUST = "adjust"
CANCEL = "cancel"
EXCHANGE_ACTOR = "exchange"
"""The actor recorded for steps the core takes itself (allocation at a trade)."""

_MAX_CALORIFIC_KCAL_PER_KG = 10_000
_MORE = ",+more"

Outcome = tuple[int, str]
_DONE: Outcome = (_OK, "")


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_bool(value: object) -> bool:
    return type(value) is bool


def _printable(text: object, max_chars: int) -> bool:
    return type(text) is str and 0 < len(text) <= max_chars and text.isprintable()


def _join_unique(parts: Iterable[str], max_chars: int) -> str:
    """Comma-join the distinct non-empty parts (in order); cut at a part
    boundary with a ",+more" marker when longer than `max_chars`."""
    seen: dict[str, None] = {}
    for part in parts:
        for item in part.split(","):
            if item:
                seen[item] = None
    text = ",".join(seen)
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - len(_MORE)]
    cut = cut[: cut.rfind(",")] if "," in cut else ""
    return cut + _MORE if cut else _MORE[1:]


class WarehouseEngine:
    """Receipts, sell-order locks and delivery records of every warehouse."""

    def __init__(self, ledger: DeliveryLedger, limits: WarehouseLimits | None = None) -> None:
        self.ledger = ledger
        self.limits = limits if limits is not None else WarehouseLimits()
        self.instruments: dict[str, InstrumentTerms] = {}
        self.warehouses: dict[str, Warehouse] = {}
        self.operators: dict[str, str] = {}  # operator id -> warehouse id
        self.receipts: dict[str, Receipt] = {}
        self.active_by_holder: dict[str, dict[str, None]] = {}  # holder -> numbers of its active receipts
        # (holder, group, commodity, grade) -> (since_seq, number) of the holder's active receipts of
        # those goods, oldest first: a sell order's lock reads only the receipts it takes
        self.active_by_goods: dict[tuple[str, str, str, str], SortedList] = {}
        self.locks: dict[int, OrderLock] = {}  # sell order id -> its lock
        self.deliveries: dict[int, Delivery] = {}  # deal id -> delivery record (open and ended)
        self.open_deals: dict[int, None] = {}
        self.stock: dict[tuple[str, str], list[int]] = {}  # (warehouse, group) -> [taken in, loaded out, scale out]
        self.next_serial = 1
        self._handlers: dict[type, Callable[[Any, int, int, list[Event]], None]] = {
            AddWarehouse: self._add_warehouse,
            AddOperator: self._add_operator,
            RegisterReceipt: self._register,
            ConfirmReceipt: self._confirm_receipt,
            VoidReceipt: self._void,
            PledgeReceipt: self._pledge,
            ReleasePledge: self._release,
            FreezeReceipt: self._freeze,
            UnfreezeReceipt: self._unfreeze,
            SplitReceipt: self._split,
            MergeReceipts: self._merge,
            RequestLoadOut: self._request_load_out,
            WithdrawLoadOut: self._withdraw_load_out,
            ConfirmLoadOut: self._confirm_load_out,
            LockReceipts: self._lock_command,
            UnlockReceipts: self._unlock_command,
            AllocateDeal: self._allocate_command,
            PayDeal: self._pay,
            ConfirmDelivery: self._confirm_delivery,
            SettleDelivery: self._settle_command,
            ResolveDispute: self._resolve,
            DeclareDefault: self._declare_default,
            SweepDeadlines: self._sweep,
        }

    # ------------------------------------------------------------------ entry

    def apply(self, command: WarehouseCommand, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Apply one warehouse command with sequence number `seq` at time `ts_ns`, appending its events."""
        self._handlers[type(command)](command, seq, ts_ns, out)

    def list_instrument(self, inst: Instrument) -> None:
        """Take an instrument's delivery terms (call when matching lists it)."""
        self.instruments[inst.symbol] = InstrumentTerms(
            inst.symbol,
            inst.commodity,
            inst.grade,
            inst.warehouse_group,
            inst.lot_size_t,
            inst.tick_fen,
            inst.weight_tolerance_bps,
            inst.payment_days,
            inst.delivery_days,
        )

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _reject(out: list[Event], seq: int, reference: str, code: int, detail: str = "") -> None:
        out.append((W_REJECTED, seq, reference, code, detail))

    def _valid_id(self, text: object) -> bool:
        return _printable(text, self.limits.max_id_chars) and "," not in str(text)

    def _valid_number(self, text: object) -> bool:
        return (
            _printable(text, self.limits.max_receipt_number_chars)
            and " " not in str(text)
            and "," not in str(text)
            and "#" not in str(text)
        )

    def _new_number(self, warehouse_id: str) -> str:
        """A number for a receipt the core issues: ``<warehouse>#<serial>``
        (registered numbers never contain '#', so these never collide)."""
        number = f"{warehouse_id}#{self.next_serial}"
        self.next_serial += 1
        assert number not in self.receipts, number
        return number

    def _stock_row(self, key: tuple[str, str]) -> list[int]:
        row = self.stock.get(key)
        if row is None:
            row = self.stock[key] = [0, 0, 0]
        return row

    def _index_active(self, r: Receipt) -> None:
        self.active_by_holder.setdefault(r.holder, {})[r.number] = None
        key = (r.holder, r.group, r.commodity, r.grade)
        index = self.active_by_goods.get(key)
        if index is None:
            index = self.active_by_goods[key] = SortedList()
        index.add((r.since_seq, r.number))

    def _unindex_active(self, r: Receipt) -> None:
        del self.active_by_holder[r.holder][r.number]
        key = (r.holder, r.group, r.commodity, r.grade)
        index = self.active_by_goods[key]
        index.remove((r.since_seq, r.number))
        if not index:
            del self.active_by_goods[key]

    def _set_state(self, r: Receipt, state: str) -> None:
        """Every change of a receipt's state goes through here (the active indexes follow it;
        a receipt's holder, goods and since_seq never change while it is active)."""
        if r.state == ACTIVE:
            self._unindex_active(r)
        if state == ACTIVE:
            self._index_active(r)
        r.state = state

    def _move(
        self, r: Receipt, transition: str, state: str, actor: str, ref: str, seq: int, ts_ns: int, out: list[Event]
    ) -> None:
        """Move a receipt to `state`, record the transition and announce it."""
        self._set_state(r, state)
        r.record(transition, actor, seq, ts_ns, self.limits.max_history)
        out.append((W_RECEIPT_STATE, seq, r.number, transition, state, r.holder, r.weight_kg, actor, ref))

    def _add(self, r: Receipt, origin: str, actor: str, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Put a new receipt in the registry and announce it."""
        assert r.number not in self.receipts, r.number
        self.receipts[r.number] = r
        if r.state == ACTIVE:
            self._index_active(r)
        r.record("registered" if r.state == REGISTERED else "issued", actor, seq, ts_ns, self.limits.max_history)
        out.append((W_RECEIPT, seq, r.number, origin, *r.describe(), r.state))

    def _operator_warehouse(self, operator: str, reference: str, seq: int, out: list[Event]) -> str | None:
        warehouse_id = self.operators.get(operator)
        if warehouse_id is None:
            self._reject(
                out, seq, reference, WarehouseCode.UNKNOWN_OPERATOR, operator if self._valid_id(operator) else ""
            )
        return warehouse_id

    def _receipt_of(
        self, number: str, seq: int, out: list[Event], member: str | None = None, states: tuple[str, ...] = ()
    ) -> Receipt | None:
        """The receipt, after checking (in this order) that it exists, that
        `member` holds it (when given) and that it is in one of `states`
        (when given); else a refusal and None."""
        r = self.receipts.get(number) if type(number) is str else None
        if r is None:
            self._reject(out, seq, str(number)[:64], WarehouseCode.UNKNOWN_RECEIPT)
            return None
        if member is not None and r.holder != member:
            self._reject(out, seq, number, WarehouseCode.NOT_YOUR_RECEIPT)
            return None
        if states and r.state not in states:
            code = (
                WarehouseCode.RECEIPT_IN_DISPUTE if r.state == FROZEN and r.deal_id else WarehouseCode.BAD_RECEIPT_STATE
            )
            self._reject(out, seq, number, code, r.state)
            return None
        return r

    def _deliverable(self, r: Receipt, inst: InstrumentTerms) -> bool:
        return r.group == inst.group and r.commodity == inst.commodity and r.grade == inst.grade

    def _same_goods(self, r: Receipt, other: Receipt) -> bool:
        return (
            r.warehouse_id == other.warehouse_id
            and r.group == other.group
            and r.commodity == other.commodity
            and r.grade == other.grade
        )

    @staticmethod
    def _pieces_part(r: Receipt, weight_kg: int, keep: int) -> int:
        """Pieces that go with `weight_kg` split off `r` by the core (at a trade,
        or for an over-weight delivery): none for coal; for steel pro rata,
        rounded down, but at least 1, and never more than leaves `keep` (at
        least 1) on the rest. Pieces are never created: the parts sum to `r`'s."""
        if r.commodity != STEEL:
            return 0
        assert 0 < weight_kg < r.weight_kg, (r.number, weight_kg, r.weight_kg)
        assert 1 <= keep < r.pieces, (r.number, keep, r.pieces)
        return max(1, min(r.pieces * weight_kg // r.weight_kg, r.pieces - keep))

    @staticmethod
    def _can_cut(r: Receipt, start_kg: int, open_kg: int, lot_kg: int) -> bool:
        """Whether `r`, holding ``[start_kg, start_kg + weight)`` of a lock with `open_kg`
        open, has a piece for every part that trades of `lot_kg` may cut it into
        (``lot_cuts``); coal has no pieces and can always be cut."""
        return r.commodity != STEEL or r.pieces > lot_cuts(start_kg, r.weight_kg, open_kg, lot_kg)

    def _cut_refusal(self, numbers: list[str], open_kg: int, lot_kg: int) -> Outcome:
        """The refusal of a lock whose receipts (in lock order) cannot all be cut into
        its lots; _DONE when they can."""
        start_kg = 0
        for number in numbers:
            r = self.receipts[number]
            if not self._can_cut(r, start_kg, open_kg, lot_kg):
                parts = lot_cuts(start_kg, r.weight_kg, open_kg, lot_kg) + 1
                return (
                    WarehouseCode.INSUFFICIENT_RECEIPTS,
                    f"{r.number} holds {r.pieces} pieces: this order's lots may cut it into {parts} parts, "
                    f"each needs a piece",
                )
            start_kg += r.weight_kg
        return _DONE

    def _split_off(
        self, r: Receipt, weight_kg: int, pieces: int, origin: str, actor: str, seq: int, ts_ns: int, out: list[Event]
    ) -> Receipt:
        """Split `weight_kg` off `r` into a new active receipt of the same holder (no checks: callers check)."""
        assert 0 < weight_kg < r.weight_kg, (weight_kg, r.weight_kg)
        if r.commodity == STEEL:  # both parts keep a piece
            assert 0 < pieces < r.pieces, (r.number, pieces, r.pieces)
        else:
            assert pieces == 0, (r.number, pieces)
        child = r.copy_as(self._new_number(r.warehouse_id), r.holder, weight_kg, pieces, r.since_seq)
        r.weight_kg -= weight_kg
        r.pieces -= pieces
        r.record("split", actor, seq, ts_ns, self.limits.max_history)
        out.append((W_RECEIPT_STATE, seq, r.number, "split", r.state, r.holder, r.weight_kg, actor, child.number))
        self._add(child, origin, actor, seq, ts_ns, out)
        return child

    def _move_weight(
        self, source: Receipt, target: Receipt, weight_kg: int, actor: str, seq: int, ts_ns: int, out: list[Event]
    ) -> None:
        """Move `weight_kg` of book weight from `source` to `target`, two receipts of the same
        holder and goods, pieces unchanged: the steel a delivery handed over weighed more on the
        scale than its receipts say, so the holder's other goods weigh that much less."""
        assert 0 < weight_kg < source.weight_kg, (source.number, weight_kg, source.weight_kg)
        assert source.holder == target.holder, (source.number, target.number)
        assert self._same_goods(source, target), (source.number, target.number)
        source.weight_kg -= weight_kg
        target.weight_kg += weight_kg
        for r, other in ((source, target), (target, source)):
            r.record("weight_moved", actor, seq, ts_ns, self.limits.max_history)
            out.append(
                (W_RECEIPT_STATE, seq, r.number, "weight_moved", r.state, r.holder, r.weight_kg, actor, other.number)
            )

    def _plan_take(self, receipts: list[Receipt], need_kg: int) -> tuple[list[Receipt], int] | None:
        """Oldest-first cover of `need_kg` from `receipts` (already in order):
        the receipts taken whole and the weight to split off the next one
        (0: no split). None when they do not cover the need."""
        whole: list[Receipt] = []
        remaining = need_kg
        for r in receipts:
            if remaining == 0:
                break
            if r.weight_kg <= remaining:
                whole.append(r)
                remaining -= r.weight_kg
            else:
                return whole, remaining
        if remaining:
            return None
        return whole, 0

    def _oldest_first(self, holder: str, inst: InstrumentTerms) -> Iterator[Receipt]:
        """The holder's active receipts deliverable on `inst`, oldest first (by ``age_key``),
        read from the index as far as the caller goes (it must not change them meanwhile)."""
        index = self.active_by_goods.get((holder, inst.group, inst.commodity, inst.grade))
        if not index:
            return iter(())
        receipts = self.receipts
        return (receipts[number] for _, number in index)

    @staticmethod
    def _cover(
        receipts: Iterable[Receipt], need_kg: int, fits: Callable[[Receipt, int], bool] | None = None
    ) -> tuple[list[Receipt], int] | None:
        """The shortest oldest-first cover of `need_kg` from `receipts` (in order), and the
        weight to split off its last receipt (0: it is taken whole); None when they all
        weigh less. A receipt for which ``fits(receipt, kg already taken)`` is false is
        passed over (a steel receipt without a piece for every part it would be cut
        into). Reads no further than it takes."""
        taken: list[Receipt] = []
        remaining = need_kg
        for r in receipts:
            if fits is not None and not fits(r, need_kg - remaining):
                continue
            taken.append(r)
            if r.weight_kg >= remaining:
                return taken, (0 if r.weight_kg == remaining else remaining)
            remaining -= r.weight_kg
        return None

    def _oldest_cover(self, holder: str, inst: InstrumentTerms, need_kg: int) -> list[Receipt] | None:
        """The receipts an unnamed sell lock takes: the oldest-first cover of `need_kg`
        from the first warehouse, by its oldest receipt, whose cover needs at most
        ``max_receipts_per_list`` receipts (None: no warehouse can). A steel receipt the
        order's lots may cut into more parts than it has pieces is passed over. The
        same choice as planning every warehouse over the whole sorted list, reading the
        holder's receipts only until the choice is certain."""
        max_list = self.limits.max_receipts_per_list
        lot_kg = inst.lot_weight_kg
        order: list[list[Any]] = []  # per warehouse, by its oldest receipt: [status, weight_kg, taken]
        by_warehouse: dict[str, list[Any]] = {}
        open_, covered, failed = 0, 1, 2
        for r in self._oldest_first(holder, inst):
            entry = by_warehouse.get(r.warehouse_id)
            if entry is None:
                entry = by_warehouse[r.warehouse_id] = [open_, 0, []]
                order.append(entry)
            elif entry[0] != open_:
                continue
            if not self._can_cut(r, entry[1], need_kg, lot_kg):
                continue  # a steel receipt with too few pieces for the parts this order may cut it into
            entry[2].append(r)
            entry[1] += r.weight_kg
            if entry[1] >= need_kg:
                entry[0] = covered if len(entry[2]) <= max_list else failed
            elif len(entry[2]) >= max_list:
                entry[0] = failed  # its cover would take more receipts than a list may name
            else:
                continue
            for e in order:  # decided when no older warehouse is still open
                if e[0] == covered:
                    taken: list[Receipt] = e[2]
                    return taken
                if e[0] == open_:
                    break
        for e in order:  # all read: a warehouse still open cannot cover
            if e[0] == covered:
                last: list[Receipt] = e[2]
                return last
        return None

    # ------------------------------------------------------------------ setup

    def _add_warehouse(self, c: AddWarehouse, seq: int, ts_ns: int, out: list[Event]) -> None:
        del ts_ns
        limits = self.limits
        ref = c.warehouse_id if self._valid_id(c.warehouse_id) else ""
        groups = c.groups
        if not (
            self._valid_id(c.warehouse_id)
            and "#" not in c.warehouse_id
            and _printable(c.name, limits.max_text_chars)
            and type(groups) is tuple
            and 0 < len(groups) <= limits.max_groups_per_warehouse
            and all(self._valid_id(g) for g in groups)
            and len(set(groups)) == len(groups)
        ):
            self._reject(out, seq, ref, WarehouseCode.BAD_WAREHOUSE)
        elif not self._valid_id(c.staff):
            self._reject(out, seq, ref, WarehouseCode.BAD_ID, "staff")
        elif c.warehouse_id in self.warehouses:
            self._reject(out, seq, ref, WarehouseCode.WAREHOUSE_EXISTS)
        elif len(self.warehouses) >= limits.max_warehouses:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_WAREHOUSES)
        else:
            self.warehouses[c.warehouse_id] = Warehouse(c.warehouse_id, c.name, tuple(groups))
            out.append((W_WAREHOUSE, seq, c.warehouse_id, c.name, ",".join(groups)))

    def _add_operator(self, c: AddOperator, seq: int, ts_ns: int, out: list[Event]) -> None:
        del ts_ns
        ref = c.operator_id if self._valid_id(c.operator_id) else ""
        if not self._valid_id(c.operator_id) or not self._valid_id(c.staff):
            self._reject(out, seq, ref, WarehouseCode.BAD_ID)
        elif c.warehouse_id not in self.warehouses:
            self._reject(out, seq, ref, WarehouseCode.UNKNOWN_WAREHOUSE)
        elif c.operator_id in self.operators:
            self._reject(out, seq, ref, WarehouseCode.OPERATOR_EXISTS)
        elif len(self.operators) >= self.limits.max_operators:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_OPERATORS)
        else:
            self.operators[c.operator_id] = c.warehouse_id
            out.append((W_OPERATOR, seq, c.operator_id, c.warehouse_id))

    # --------------------------------------------------------------- receipts

    def _check_certificate(self, c: RegisterReceipt, commodity: str) -> tuple[int, str]:
        limits = self.limits
        if commodity == COAL:
            if c.pieces != 0 or not _is_int(c.pieces):
                return WarehouseCode.BAD_PIECES, "coal has no pieces: send 0"
            if not (
                _is_int(c.calorific_kcal_per_kg)
                and _is_int(c.moisture_bps)
                and _is_int(c.sulphur_bps)
                and 0 < c.calorific_kcal_per_kg <= _MAX_CALORIFIC_KCAL_PER_KG
                and 0 <= c.moisture_bps <= BPS
                and 0 <= c.sulphur_bps <= BPS
                and c.steel_grade == ""
                and c.dimensions == ""
            ):
                return WarehouseCode.BAD_CERTIFICATE, "coal"
        else:
            if not _is_int(c.pieces) or not (0 < c.pieces <= c.weight_kg):
                return WarehouseCode.BAD_PIECES, "steel needs pieces or bundles"
            if not (
                _printable(c.steel_grade, limits.max_text_chars)
                and _printable(c.dimensions, limits.max_text_chars)
                and c.calorific_kcal_per_kg == 0
                and c.moisture_bps == 0
                and c.sulphur_bps == 0
            ):
                return WarehouseCode.BAD_CERTIFICATE, "steel"
        return _DONE

    def _register(self, c: RegisterReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        limits = self.limits
        ref = c.number if self._valid_number(c.number) else ""
        warehouse_id = self._operator_warehouse(c.operator, ref, seq, out)
        if warehouse_id is None:
            return
        inst = self.instruments.get(c.instrument)
        if not ref:
            self._reject(out, seq, ref, WarehouseCode.BAD_RECEIPT_NUMBER)
        elif c.number in self.receipts:
            self._reject(out, seq, ref, WarehouseCode.RECEIPT_EXISTS)
        elif not self._valid_id(c.holder):
            self._reject(out, seq, ref, WarehouseCode.BAD_ID, "holder")
        elif inst is None:
            self._reject(out, seq, ref, WarehouseCode.UNKNOWN_INSTRUMENT)
        elif inst.group not in self.warehouses[warehouse_id].groups:
            self._reject(out, seq, ref, WarehouseCode.GROUP_NOT_DESIGNATED, inst.group)
        elif inst.commodity not in (STEEL, COAL):
            self._reject(out, seq, ref, WarehouseCode.UNSUPPORTED_COMMODITY, inst.commodity)
        elif not _is_int(c.weight_kg) or not (0 < c.weight_kg <= limits.max_weight_kg):
            self._reject(out, seq, ref, WarehouseCode.BAD_WEIGHT)
        elif not (
            _printable(c.lot_numbers, limits.max_lot_numbers_chars)
            and _printable(c.certificate_no, limits.max_text_chars)
            and _printable(c.location, limits.max_text_chars)
        ):
            self._reject(out, seq, ref, WarehouseCode.BAD_TEXT, "lot_numbers, certificate_no and location")
        elif (problem := self._check_certificate(c, inst.commodity))[0]:
            self._reject(out, seq, ref, problem[0], problem[1])
        elif len(self.receipts) >= limits.max_receipts:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_RECEIPTS)
        else:
            r = Receipt(
                c.number,
                warehouse_id,
                c.holder,
                inst.commodity,
                inst.group,
                inst.grade,
                c.weight_kg,
                c.pieces,
                c.lot_numbers,
                c.certificate_no,
                c.calorific_kcal_per_kg,
                c.moisture_bps,
                c.sulphur_bps,
                c.steel_grade,
                c.dimensions,
                c.location,
                REGISTERED,
                seq,
            )
            self._add(r, "registered", c.operator, seq, ts_ns, out)

    def _confirm_receipt(self, c: ConfirmReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        r = self._receipt_of(c.number, seq, out, c.member, (REGISTERED,))
        if r is not None:
            self._stock_row(r.stock_key)[0] += r.weight_kg
            self._move(r, "confirmed", ACTIVE, c.member, "", seq, ts_ns, out)

    def _void(self, c: VoidReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        warehouse_id = self._operator_warehouse(c.operator, str(c.number)[:64], seq, out)
        if warehouse_id is None:
            return
        r = self._receipt_of(c.number, seq, out)
        if r is None:
            return
        if r.warehouse_id != warehouse_id:
            self._reject(out, seq, r.number, WarehouseCode.NOT_YOUR_WAREHOUSE)
        elif r.state != REGISTERED:
            self._reject(out, seq, r.number, WarehouseCode.BAD_RECEIPT_STATE, r.state)
        else:
            self._move(r, "voided", VOID, c.operator, "", seq, ts_ns, out)

    def _pledge(self, c: PledgeReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        if not self._valid_id(c.bank):
            self._reject(out, seq, str(c.number)[:64], WarehouseCode.BAD_ID, "bank")
            return
        r = self._receipt_of(c.number, seq, out, c.member, (ACTIVE,))
        if r is not None:
            r.pledgee = c.bank
            self._move(r, "pledged", PLEDGED, c.member, c.bank, seq, ts_ns, out)

    def _release(self, c: ReleasePledge, seq: int, ts_ns: int, out: list[Event]) -> None:
        if not self._valid_id(c.bank):
            self._reject(out, seq, str(c.number)[:64], WarehouseCode.BAD_ID, "bank")
            return
        r = self._receipt_of(c.number, seq, out)
        if r is None:
            return
        if r.pledgee != c.bank:
            # a bank learns nothing of receipts that are not pledged to it
            self._reject(out, seq, r.number, WarehouseCode.NOT_PLEDGEE)
        elif r.state != PLEDGED:
            self._reject(out, seq, r.number, WarehouseCode.BAD_RECEIPT_STATE, r.state)
        else:
            r.pledgee = ""
            self._move(r, "released", ACTIVE, c.bank, c.bank, seq, ts_ns, out)

    def _freeze(self, c: FreezeReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        if not self._valid_id(c.staff) or not _printable(c.reason, self.limits.max_text_chars):
            self._reject(out, seq, str(c.number)[:64], WarehouseCode.BAD_TEXT, "staff and reason")
            return
        r = self._receipt_of(c.number, seq, out, None, (ACTIVE, PLEDGED))
        if r is not None:
            r.frozen_from = r.state
            self._move(r, "frozen", FROZEN, c.staff, c.reason, seq, ts_ns, out)

    def _unfreeze(self, c: UnfreezeReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        if not self._valid_id(c.staff) or not _printable(c.reason, self.limits.max_text_chars):
            self._reject(out, seq, str(c.number)[:64], WarehouseCode.BAD_TEXT, "staff and reason")
            return
        r = self._receipt_of(c.number, seq, out, None, (FROZEN,))
        if r is None:
            return
        if r.deal_id:
            self._reject(out, seq, r.number, WarehouseCode.RECEIPT_IN_DISPUTE, str(r.deal_id))
            return
        back = r.frozen_from
        r.frozen_from = ""
        self._move(r, "unfrozen", back, c.staff, c.reason, seq, ts_ns, out)

    def _split(self, c: SplitReceipt, seq: int, ts_ns: int, out: list[Event]) -> None:
        r = self._receipt_of(c.number, seq, out, c.member, (ACTIVE,))
        if r is None:
            return
        if not _is_int(c.weight_kg) or not (0 < c.weight_kg < r.weight_kg):
            self._reject(out, seq, r.number, WarehouseCode.BAD_WEIGHT, f"split 1 to {r.weight_kg - 1} kg")
        elif not _is_int(c.pieces) or (not (0 < c.pieces < r.pieces) if r.commodity == STEEL else c.pieces != 0):
            self._reject(out, seq, r.number, WarehouseCode.BAD_PIECES, f"the receipt holds {r.pieces} pieces")
        elif len(self.receipts) >= self.limits.max_receipts:
            self._reject(out, seq, r.number, WarehouseCode.TOO_MANY_RECEIPTS)
        else:
            self._split_off(r, c.weight_kg, c.pieces, f"split:{r.number}", c.member, seq, ts_ns, out)

    def _combined(self, sources: list[Receipt], number: str, holder: str, weight_kg: int, pieces: int) -> Receipt:
        """A receipt for goods drawn from `sources`: lots, certificates and
        locations joined; coal's results the least favourable of the
        sources; steel's certified grade and dimensions those of the first."""
        first = sources[0]
        limits = self.limits
        r = first.copy_as(number, holder, weight_kg, pieces, min(s.since_seq for s in sources))
        if len(sources) > 1:
            r.lot_numbers = _join_unique((s.lot_numbers for s in sources), limits.max_lot_numbers_chars)
            r.certificate_no = _join_unique((s.certificate_no for s in sources), limits.max_text_chars)
            r.location = _join_unique((s.location for s in sources), limits.max_text_chars)
            if first.commodity == COAL:
                r.calorific_kcal_per_kg = min(s.calorific_kcal_per_kg for s in sources)
                r.moisture_bps = max(s.moisture_bps for s in sources)
                r.sulphur_bps = max(s.sulphur_bps for s in sources)
        return r

    def _merge(self, c: MergeReceipts, seq: int, ts_ns: int, out: list[Event]) -> None:
        numbers = c.numbers
        ref = str(numbers[0])[:64] if type(numbers) is tuple and numbers else ""
        if type(numbers) is not tuple or len(numbers) < 2:
            self._reject(out, seq, ref, WarehouseCode.MERGE_MISMATCH, "name 2 or more receipts")
            return
        if len(numbers) > self.limits.max_receipts_per_list:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_IN_LIST, str(self.limits.max_receipts_per_list))
            return
        if len(set(numbers)) != len(numbers):
            self._reject(out, seq, ref, WarehouseCode.REPEATED_RECEIPT)
            return
        sources: list[Receipt] = []
        for number in numbers:
            r = self._receipt_of(number, seq, out, c.member, (ACTIVE,))
            if r is None:
                return
            sources.append(r)
        first = sources[0]
        for r in sources[1:]:
            if not self._same_goods(r, first) or (r.steel_grade, r.dimensions) != (first.steel_grade, first.dimensions):
                self._reject(out, seq, r.number, WarehouseCode.MERGE_MISMATCH, f"differs from {first.number}")
                return
        weight = sum(r.weight_kg for r in sources)
        if weight > self.limits.max_weight_kg:
            self._reject(out, seq, ref, WarehouseCode.BAD_WEIGHT, f"merged weight above {self.limits.max_weight_kg} kg")
            return
        if len(self.receipts) >= self.limits.max_receipts:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_RECEIPTS)
            return
        merged = self._combined(
            sources, self._new_number(first.warehouse_id), c.member, weight, sum(r.pieces for r in sources)
        )
        for r in sources:
            self._move(r, "merged", MERGED, c.member, merged.number, seq, ts_ns, out)
        self._add(merged, "merged", c.member, seq, ts_ns, out)

    def _request_load_out(self, c: RequestLoadOut, seq: int, ts_ns: int, out: list[Event]) -> None:
        r = self._receipt_of(c.number, seq, out, c.member, (ACTIVE,))
        if r is not None:
            self._move(r, "load_out_requested", LOADING, c.member, "", seq, ts_ns, out)

    def _withdraw_load_out(self, c: WithdrawLoadOut, seq: int, ts_ns: int, out: list[Event]) -> None:
        r = self._receipt_of(c.number, seq, out, c.member, (LOADING,))
        if r is not None:
            self._move(r, "load_out_withdrawn", ACTIVE, c.member, "", seq, ts_ns, out)

    def _confirm_load_out(self, c: ConfirmLoadOut, seq: int, ts_ns: int, out: list[Event]) -> None:
        warehouse_id = self._operator_warehouse(c.operator, str(c.number)[:64], seq, out)
        if warehouse_id is None:
            return
        r = self._receipt_of(c.number, seq, out)
        if r is None:
            return
        if r.warehouse_id != warehouse_id:
            self._reject(out, seq, r.number, WarehouseCode.NOT_YOUR_WAREHOUSE)
        elif r.state != LOADING:
            self._reject(out, seq, r.number, WarehouseCode.BAD_RECEIPT_STATE, r.state)
        elif not _is_int(c.weight_kg) or not (
            c.weight_kg > 0
            and abs(c.weight_kg - r.weight_kg) * BPS <= r.weight_kg * self.limits.max_load_out_difference_bps
        ):
            self._reject(out, seq, r.number, WarehouseCode.BAD_LOAD_OUT_WEIGHT, f"receipt weight {r.weight_kg} kg")
        else:
            row = self._stock_row(r.stock_key)
            row[1] += r.weight_kg
            row[2] += c.weight_kg
            r.scale_weight_kg = c.weight_kg
            self._move(r, "loaded_out", CANCELLED, c.operator, str(c.weight_kg), seq, ts_ns, out)

    # ------------------------------------------------------------ sell orders

    def _emit_lock(self, lock: OrderLock, seq: int, out: list[Event]) -> None:
        if lock.receipts:
            locked = sum(self.receipts[n].weight_kg for n in lock.receipts)
            numbers = ",".join(lock.receipts)
        else:
            locked, numbers = 0, ""
        out.append(
            (
                W_LOCK,
                seq,
                lock.order_id,
                lock.member,
                lock.instrument,
                lock.warehouse_id,
                lock.open_weight_kg,
                locked,
                numbers,
            )
        )

    def lock_for_order(
        self,
        order_id: int,
        member: str,
        instrument: str,
        quantity_lots: int,
        numbers: tuple[str, ...],
        seq: int,
        ts_ns: int,
        out: list[Event],
    ) -> Outcome:
        """Lock receipts for a sell order (see ``LockReceipts``). (0, "") and
        a W_LOCK event on success, else (code, detail) and nothing changed."""
        limits = self.limits
        if not _is_int(order_id) or order_id <= 0 or not self._valid_id(member):
            return WarehouseCode.BAD_ID, "order id and member"
        if order_id in self.locks:
            return WarehouseCode.LOCK_EXISTS, str(order_id)
        inst = self.instruments.get(instrument)
        if inst is None:
            return WarehouseCode.UNKNOWN_INSTRUMENT, str(instrument)[:64]
        if not _is_int(quantity_lots) or not (0 < quantity_lots * inst.lot_weight_kg <= limits.max_weight_kg):
            return WarehouseCode.BAD_QUANTITY, f"at most {limits.max_weight_kg // inst.lot_weight_kg} lots"
        need = quantity_lots * inst.lot_weight_kg
        if type(numbers) is not tuple or len(numbers) > limits.max_receipts_per_list:
            return WarehouseCode.TOO_MANY_IN_LIST, str(limits.max_receipts_per_list)
        chosen: list[Receipt]
        if numbers:
            if len(set(numbers)) != len(numbers):
                return WarehouseCode.REPEATED_RECEIPT, ""
            named: list[Receipt] = []
            for number in numbers:
                r = self.receipts.get(number) if type(number) is str else None
                if r is None:
                    return WarehouseCode.UNKNOWN_RECEIPT, str(number)[:64]
                if r.holder != member:
                    return WarehouseCode.NOT_YOUR_RECEIPT, number
                if r.state != ACTIVE:
                    return WarehouseCode.BAD_RECEIPT_STATE, f"{number}: {r.state}"
                if not self._deliverable(r, inst):
                    return WarehouseCode.NOT_DELIVERABLE, number
                if named and r.warehouse_id != named[0].warehouse_id:
                    return WarehouseCode.ONE_WAREHOUSE, number
                named.append(r)
            # the named receipts are used in the order given, as far as the quantity needs them
            chosen = []
            have = 0
            for r in named:
                if have >= need:
                    break
                chosen.append(r)
                have += r.weight_kg
            if have < need:
                return WarehouseCode.INSUFFICIENT_RECEIPTS, f"need {need} kg, named {have} kg"
            refusal = self._cut_refusal([r.number for r in chosen], need, inst.lot_weight_kg)
            if refusal[0]:
                return refusal
        else:
            found = self._oldest_cover(member, inst, need)
            if found is None:
                return self._no_cover(member, inst, need)
            chosen = found
        lock = OrderLock(order_id, member, instrument, chosen[0].warehouse_id, need, [r.number for r in chosen])
        for r in chosen:
            r.order_id = order_id
            self._move(r, "locked", LOCKED, member, str(order_id), seq, ts_ns, out)
        self.locks[order_id] = lock
        self._emit_lock(lock, seq, out)
        return _DONE

    def _no_cover(self, member: str, inst: InstrumentTerms, need: int) -> Outcome:
        """Why no warehouse can cover an unnamed lock of `need` kg (the refusal path reads
        all of the seller's receipts of these goods): too many receipts, else too light."""
        by_warehouse: dict[str, list[Receipt]] = {}
        for r in self._oldest_first(member, inst):
            by_warehouse.setdefault(r.warehouse_id, []).append(r)
        best = 0
        too_few_pieces = False
        lot_kg = inst.lot_weight_kg
        for candidates in by_warehouse.values():
            weight = sum(r.weight_kg for r in candidates)
            if weight >= need:
                if self._cover(candidates, need, lambda r, start: self._can_cut(r, start, need, lot_kg)) is not None:
                    return (
                        WarehouseCode.TOO_MANY_IN_LIST,
                        f"more than {self.limits.max_receipts_per_list} receipts needed",
                    )
                too_few_pieces = True
            best = max(best, weight)
        if too_few_pieces:
            return (
                WarehouseCode.INSUFFICIENT_RECEIPTS,
                f"need {need} kg in one warehouse in steel receipts with a piece for every part "
                f"this order's {lot_kg} kg lots may cut them into",
            )
        return WarehouseCode.INSUFFICIENT_RECEIPTS, f"need {need} kg in one warehouse, have at most {best} kg"

    def grow_lock(
        self, order_id: int, extra_lots: int, seq: int, ts_ns: int, out: list[Event], check_only: bool = False
    ) -> Outcome:
        """A locked sell order grows by `extra_lots` (an amend up): what its
        receipts already hold beyond its open weight covers the first part;
        the rest locks more of the seller's active receipts in the lock's
        warehouse, oldest first. (0, "") and a W_LOCK event on success (none
        with `check_only`, which changes nothing), else (code, detail) and
        nothing changed."""
        limits = self.limits
        lock = self.locks.get(order_id) if _is_int(order_id) else None
        if lock is None:
            return WarehouseCode.UNKNOWN_LOCK, str(order_id)[:64]
        inst = self.instruments[lock.instrument]
        lot_kg = inst.lot_weight_kg
        if not _is_int(extra_lots) or not (
            extra_lots > 0 and lock.open_weight_kg + extra_lots * lot_kg <= limits.max_weight_kg
        ):
            return WarehouseCode.BAD_QUANTITY, f"at most {limits.max_weight_kg // lot_kg} lots"
        extra_kg = extra_lots * lot_kg
        open_kg = lock.open_weight_kg + extra_kg
        locked_kg = sum(self.receipts[n].weight_kg for n in lock.receipts)
        need = open_kg - locked_kg
        refusal = self._cut_refusal(lock.receipts, open_kg, lot_kg)  # more lots may cut a locked receipt more
        if refusal[0]:
            return refusal
        taken: list[Receipt] = []
        if need > 0:
            here = lock.warehouse_id
            cover = self._cover(
                (r for r in self._oldest_first(lock.member, inst) if r.warehouse_id == here),
                need,
                lambda r, start: self._can_cut(r, locked_kg + start, open_kg, lot_kg),
            )
            if cover is None:
                have = sum(r.weight_kg for r in self._oldest_first(lock.member, inst) if r.warehouse_id == here)
                return (
                    WarehouseCode.INSUFFICIENT_RECEIPTS,
                    f"need {need} kg more in {lock.warehouse_id}, the seller has {have} kg active there"
                    + (" (a steel receipt needs a piece for every part the lots may cut it into)" * (have >= need)),
                )
            taken = cover[0]
            if len(lock.receipts) + len(taken) > limits.max_receipts_per_list:
                return WarehouseCode.TOO_MANY_IN_LIST, f"more than {limits.max_receipts_per_list} receipts needed"
        if check_only:
            return _DONE
        for r in taken:
            r.order_id = order_id
            self._move(r, "locked", LOCKED, lock.member, str(order_id), seq, ts_ns, out)
            lock.receipts.append(r.number)
        lock.open_weight_kg += extra_kg
        self._emit_lock(lock, seq, out)
        return _DONE

    def _trim_lock(self, lock: OrderLock, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Unlock the newest receipts the order no longer needs; end the lock when nothing stays open."""
        receipts = self.receipts
        locked = sum(receipts[n].weight_kg for n in lock.receipts)
        while lock.receipts and locked - receipts[lock.receipts[-1]].weight_kg >= lock.open_weight_kg:
            r = receipts[lock.receipts.pop()]
            locked -= r.weight_kg
            r.order_id = 0
            self._move(r, "unlocked", ACTIVE, lock.member, str(lock.order_id), seq, ts_ns, out)
        if lock.open_weight_kg == 0:
            assert not lock.receipts
            del self.locks[lock.order_id]

    def unlock_order(self, order_id: int, cancelled_lots: int, seq: int, ts_ns: int, out: list[Event]) -> Outcome:
        """`cancelled_lots` of a sell order were cancelled: unlock what it no
        longer needs (see ``UnlockReceipts``)."""
        lock = self.locks.get(order_id) if _is_int(order_id) else None
        if lock is None:
            return WarehouseCode.UNKNOWN_LOCK, str(order_id)[:64]
        lot_kg = self.instruments[lock.instrument].lot_weight_kg
        if not _is_int(cancelled_lots) or not (0 < cancelled_lots * lot_kg <= lock.open_weight_kg):
            return WarehouseCode.BAD_QUANTITY, f"open {lock.open_weight_kg // lot_kg} lots"
        lock.open_weight_kg -= cancelled_lots * lot_kg
        self._trim_lock(lock, seq, ts_ns, out)
        self._emit_lock(lock, seq, out)
        return _DONE

    def open_delivery(
        self,
        deal_id: int,
        order_id: int,
        buyer: str,
        quantity_lots: int,
        price_ticks: int,
        payment_deadline_ns: int,
        delivery_deadline_ns: int,
        seq: int,
        ts_ns: int,
        out: list[Event],
    ) -> Outcome:
        """A trade against sell order `order_id`: allocate its locked weight
        to a new delivery record (see ``AllocateDeal``)."""
        limits = self.limits
        if not _is_int(deal_id) or deal_id <= 0 or not self._valid_id(buyer):
            return WarehouseCode.BAD_ID, "deal id and buyer"
        if deal_id in self.deliveries:
            return WarehouseCode.DEAL_EXISTS, str(deal_id)
        lock = self.locks.get(order_id) if _is_int(order_id) else None
        if lock is None:
            return WarehouseCode.UNKNOWN_LOCK, str(order_id)[:64]
        inst = self.instruments[lock.instrument]
        if not _is_int(quantity_lots) or not (0 < quantity_lots * inst.lot_weight_kg <= lock.open_weight_kg):
            return WarehouseCode.BAD_QUANTITY, f"open {lock.open_weight_kg // inst.lot_weight_kg} lots"
        if not _is_int(price_ticks) or price_ticks <= 0:
            return WarehouseCode.BAD_AMOUNT, "price_ticks"
        if not (_is_int(payment_deadline_ns) and _is_int(delivery_deadline_ns)):
            return WarehouseCode.BAD_DEADLINE, ""
        pay_by = payment_deadline_ns or ts_ns + inst.payment_days * limits.day_ns
        deliver_by = delivery_deadline_ns or ts_ns + inst.delivery_days * limits.day_ns
        if pay_by < ts_ns or deliver_by < pay_by:
            return WarehouseCode.BAD_DEADLINE, "payment deadline from the trade time, delivery deadline from that"
        if len(self.open_deals) >= limits.max_open_deliveries:
            return WarehouseCode.TOO_MANY_DEALS, ""
        need = quantity_lots * inst.lot_weight_kg
        plan = self._plan_take([self.receipts[n] for n in lock.receipts], need)
        assert plan is not None, (order_id, need)  # the lock covers its open weight
        whole, part = plan
        if part and len(self.receipts) >= limits.max_receipts:
            return WarehouseCode.TOO_MANY_RECEIPTS, ""
        # checked: now change
        taken = list(whole)
        if part:
            source = self.receipts[lock.receipts[len(whole)]]
            # the rest keeps a piece for each part the lock's open lots may still cut it into
            keep = 1 + lot_cuts(0, source.weight_kg - part, lock.open_weight_kg - need, inst.lot_weight_kg)
            child = self._split_off(
                source, part, self._pieces_part(source, part, keep), f"part:{deal_id}", EXCHANGE_ACTOR, seq, ts_ns, out
            )
            taken.append(child)
        del lock.receipts[: len(whole)]
        for r in taken:
            r.order_id = 0
            r.deal_id = deal_id
            self._move(r, "allocated", LOCKED, EXCHANGE_ACTOR, str(deal_id), seq, ts_ns, out)
        lock.open_weight_kg -= need
        self._trim_lock(lock, seq, ts_ns, out)
        self._emit_lock(lock, seq, out)
        d = Delivery(
            deal_id,
            inst.symbol,
            lock.warehouse_id,
            order_id,
            buyer,
            lock.member,
            price_ticks,
            quantity_lots,
            need,
            price_ticks * inst.tick_fen,
            inst.weight_tolerance_bps,
            pay_by,
            deliver_by,
            [r.number for r in taken],
        )
        self.deliveries[deal_id] = d
        self.open_deals[deal_id] = None
        out.append(
            (
                W_DELIVERY,
                seq,
                deal_id,
                d.instrument,
                d.warehouse_id,
                order_id,
                buyer,
                d.seller,
                price_ticks,
                quantity_lots,
                need,
                pay_by,
                deliver_by,
                ",".join(d.receipts),
            )
        )
        return _DONE

    def _lock_command(self, c: LockReceipts, seq: int, ts_ns: int, out: list[Event]) -> None:
        code, detail = self.lock_for_order(
            c.order_id, c.member, c.instrument, c.quantity_lots, c.numbers, seq, ts_ns, out
        )
        if code:
            self._reject(out, seq, str(c.order_id)[:64], code, detail)

    def _unlock_command(self, c: UnlockReceipts, seq: int, ts_ns: int, out: list[Event]) -> None:
        code, detail = self.unlock_order(c.order_id, c.cancelled_lots, seq, ts_ns, out)
        if code:
            self._reject(out, seq, str(c.order_id)[:64], code, detail)

    def _allocate_command(self, c: AllocateDeal, seq: int, ts_ns: int, out: list[Event]) -> None:
        code, detail = self.open_delivery(
            c.deal_id,
            c.order_id,
            c.buyer,
            c.quantity_lots,
            c.price_ticks,
            c.payment_deadline_ns,
            c.delivery_deadline_ns,
            seq,
            ts_ns,
            out,
        )
        if code:
            self._reject(out, seq, str(c.deal_id)[:64], code, detail)

    # ------------------------------------------------------------- deliveries

    def _delivery_of(self, deal_id: int, seq: int, out: list[Event]) -> Delivery | None:
        d = self.deliveries.get(deal_id) if _is_int(deal_id) else None
        if d is None:
            self._reject(out, seq, str(deal_id)[:64], WarehouseCode.UNKNOWN_DEAL)
        return d

    def _emit_delivery(self, d: Delivery, seq: int, out: list[Event]) -> None:
        out.append(
            (
                W_DELIVERY_STATE,
                seq,
                d.deal_id,
                d.state,
                d.actual_weight_kg,
                d.quality_pass,
                d.amount_fen,
                d.refund_fen,
                d.extra_fen,
                d.detail,
            )
        )

    def _end(self, d: Delivery, state: str, detail: str, seq: int, out: list[Event]) -> None:
        d.state = state
        d.detail = detail
        del self.open_deals[d.deal_id]
        self._emit_delivery(d, seq, out)

    def _return_receipts(self, d: Delivery, actor: str, seq: int, ts_ns: int, out: list[Event]) -> None:
        """The deal ended without delivery: its receipts go back to the seller, active."""
        for number in d.receipts:
            r = self.receipts[number]
            assert r.deal_id == d.deal_id, (number, d.deal_id)
            r.deal_id = 0
            r.frozen_from = ""
            self._move(r, "returned", ACTIVE, actor, str(d.deal_id), seq, ts_ns, out)

    def _pay(self, c: PayDeal, seq: int, ts_ns: int, out: list[Event]) -> None:
        d = self._delivery_of(c.deal_id, seq, out)
        if d is None:
            return
        ref = str(d.deal_id)
        if c.member != d.buyer:
            self._reject(out, seq, ref, WarehouseCode.NOT_BUYER)
        elif d.state != DL_AWAITING_PAYMENT:
            self._reject(out, seq, ref, WarehouseCode.BAD_DEAL_STATE, d.state)
        elif ts_ns > d.payment_deadline_ns:
            self._reject(out, seq, ref, WarehouseCode.PAYMENT_DEADLINE_PASSED)
        else:
            code, detail = self.ledger.escrow_payment(d.deal_id, seq, out)
            if code:
                self._reject(out, seq, ref, WarehouseCode.LEDGER_REFUSED, f"{code}: {detail}")
                return
            d.state = DL_PAID
            self._emit_delivery(d, seq, out)

    def _confirm_delivery(self, c: ConfirmDelivery, seq: int, ts_ns: int, out: list[Event]) -> None:
        d = self._delivery_of(c.deal_id, seq, out)
        if d is None:
            return
        ref = str(d.deal_id)
        warehouse_id = self._operator_warehouse(c.operator, ref, seq, out)
        if warehouse_id is None:
            return
        if warehouse_id != d.warehouse_id:
            self._reject(out, seq, ref, WarehouseCode.NOT_YOUR_WAREHOUSE)
            return
        if d.state != DL_PAID:
            self._reject(out, seq, ref, WarehouseCode.BAD_DEAL_STATE, d.state)
            return
        if ts_ns > d.delivery_deadline_ns:
            self._reject(out, seq, ref, WarehouseCode.DELIVERY_DEADLINE_PASSED)
            return
        actual = c.actual_weight_kg
        if not _is_int(actual) or not (0 < actual <= self.limits.max_weight_kg):
            self._reject(out, seq, ref, WarehouseCode.BAD_WEIGHT)
            return
        if not _is_bool(c.quality_pass):
            self._reject(out, seq, ref, WarehouseCode.BAD_CERTIFICATE, "quality_pass must be true or false")
            return
        allocated = [self.receipts[n] for n in d.receipts]
        allocated_kg = sum(r.weight_kg for r in allocated)
        pieces_available = sum(r.pieces for r in allocated)
        is_steel = allocated[0].commodity == STEEL
        # over-weight: the extra goods come from the seller's other active receipts in this warehouse
        # (whole receipts, then part of the next: coal's part is split off into the deal; steel's is
        # book weight moved onto the deal's first receipt, the pieces staying where they are)
        extra_whole: list[Receipt] = []
        extra_part = 0
        extra_source: Receipt | None = None
        if actual > allocated_kg:
            inst = self.instruments[d.instrument]
            here = d.warehouse_id
            cover = self._cover(
                (r for r in self._oldest_first(d.seller, inst) if r.warehouse_id == here), actual - allocated_kg
            )
            if cover is None:
                have = sum(r.weight_kg for r in self._oldest_first(d.seller, inst) if r.warehouse_id == here)
                self._reject(
                    out,
                    seq,
                    ref,
                    WarehouseCode.INSUFFICIENT_RECEIPTS,
                    f"the seller holds {allocated_kg + have} kg here, {actual} kg confirmed",
                )
                return
            taken, extra_part = cover
            extra_whole = taken[:-1] if extra_part else taken
            if extra_part:
                extra_source = taken[-1]
            if len(d.receipts) + len(extra_whole) + 1 > self.limits.max_receipts_per_list:
                self._reject(out, seq, ref, WarehouseCode.TOO_MANY_IN_LIST, "the extra weight spans too many receipts")
                return
            if extra_part and not is_steel and len(self.receipts) >= self.limits.max_receipts:
                self._reject(out, seq, ref, WarehouseCode.TOO_MANY_RECEIPTS)
                return
            pieces_available += sum(r.pieces for r in extra_whole)
        if not _is_int(c.pieces) or (not (0 < c.pieces <= pieces_available) if is_steel else c.pieces != 0):
            detail = f"1 to {pieces_available} pieces" if is_steel else "coal has no pieces: send 0"
            self._reject(out, seq, ref, WarehouseCode.BAD_PIECES, detail)
            return
        result = settle_weight(d.contract_weight_kg, actual, d.price_fen_per_t, d.tolerance_bps)
        # checked: now change
        extra = list(extra_whole)
        if extra_source is not None and is_steel:
            self._move_weight(extra_source, allocated[0], extra_part, c.operator, seq, ts_ns, out)
        elif extra_source is not None:
            extra.append(
                self._split_off(extra_source, extra_part, 0, f"extra:{d.deal_id}", c.operator, seq, ts_ns, out)
            )
        for r in extra:
            r.deal_id = d.deal_id
            self._move(r, "allocated", LOCKED, c.operator, ref, seq, ts_ns, out)
            d.receipts.append(r.number)
        d.actual_weight_kg = actual
        d.pieces = c.pieces
        d.quality_pass = c.quality_pass
        d.amount_fen = result.amount_due_fen
        d.refund_fen = result.refund_fen
        d.extra_fen = result.extra_fen
        if result.within and c.quality_pass:
            d.state = DL_DELIVERY_CONFIRMED
            self._emit_delivery(d, seq, out)
            self._settle(d, d.amount_fen, c.operator, seq, ts_ns, out)
            return
        reasons = []
        if not result.within:
            reasons.append(f"weight {actual} kg outside {d.tolerance_bps} bps of {d.contract_weight_kg} kg")
        if not c.quality_pass:
            reasons.append("quality failed")
        d.state = DL_DISPUTED
        d.detail = "; ".join(reasons)
        for number in d.receipts:
            r = self.receipts[number]
            r.frozen_from = LOCKED
            self._move(r, "frozen", FROZEN, c.operator, ref, seq, ts_ns, out)
        self._emit_delivery(d, seq, out)

    def _settle(self, d: Delivery, amount_fen: int, actor: str, seq: int, ts_ns: int, out: list[Event]) -> bool:
        """Delivery versus payment, all or nothing. True when settled; else a
        refusal event and nothing changed."""
        ref = str(d.deal_id)
        limits = self.limits
        if not _is_int(amount_fen) or not (0 < amount_fen <= limits.max_amount_fen):
            self._reject(out, seq, ref, WarehouseCode.BAD_AMOUNT, f"1 to {limits.max_amount_fen} fen")
            return False
        sources = [self.receipts[n] for n in d.receipts]
        allocated_kg = sum(r.weight_kg for r in sources)
        for r in sources:
            assert r.deal_id == d.deal_id, (r.number, d.deal_id)
            assert r.state in (LOCKED, FROZEN), (r.number, r.state)
        assert 0 < d.actual_weight_kg <= allocated_kg, (d.actual_weight_kg, allocated_kg)
        residual_kg = allocated_kg - d.actual_weight_kg
        if len(self.receipts) + 2 > limits.max_receipts:
            self._reject(out, seq, ref, WarehouseCode.TOO_MANY_RECEIPTS)
            return False
        code, detail = self.ledger.settle_deal(d.deal_id, amount_fen, seq, out)
        if code:
            self._reject(out, seq, ref, WarehouseCode.LEDGER_REFUSED, f"{code}: {detail}")
            return False
        # the money moved: now the goods, which cannot fail
        for r in sources:
            r.frozen_from = ""
            self._move(r, "delivered", DELIVERED, actor, ref, seq, ts_ns, out)
        # The seller keeps a residual receipt only when both weight and pieces are left over: a
        # steel receipt has weight and pieces or neither. Every piece handed over on an under-weight
        # delivery takes all the weight with it (the scale weighed less than the book; the money is
        # the scale's), and pieces left when all the weight was delivered go with the weight.
        pieces_total = sum(r.pieces for r in sources)
        if sources[0].commodity == STEEL:
            assert 0 < d.pieces <= pieces_total, (d.deal_id, d.pieces, pieces_total)
            residual_pieces = pieces_total - d.pieces
            if not (residual_kg and residual_pieces):
                residual_kg = residual_pieces = 0
        else:
            assert d.pieces == pieces_total == 0, (d.deal_id, d.pieces, pieces_total)
            residual_pieces = 0
        bought_kg = allocated_kg - residual_kg
        bought = self._combined(
            sources, self._new_number(d.warehouse_id), d.buyer, bought_kg, pieces_total - residual_pieces
        )
        bought.since_seq = seq
        self._add(bought, f"delivery:{d.deal_id}", actor, seq, ts_ns, out)
        d.buyer_receipt = bought.number
        if residual_kg:
            rest = self._combined(sources, self._new_number(d.warehouse_id), d.seller, residual_kg, residual_pieces)
            self._add(rest, f"residual:{d.deal_id}", actor, seq, ts_ns, out)
            d.residual_receipt = rest.number
        contract_fen = d.contract_weight_kg * d.price_fen_per_t // 1_000
        d.amount_fen = amount_fen
        d.refund_fen = max(contract_fen - amount_fen, 0)
        d.extra_fen = max(amount_fen - contract_fen, 0)
        self._end(d, DL_SETTLED, "", seq, out)
        return True

    def _settle_command(self, c: SettleDelivery, seq: int, ts_ns: int, out: list[Event]) -> None:
        d = self._delivery_of(c.deal_id, seq, out)
        if d is None:
            return
        if not self._valid_id(c.staff):
            self._reject(out, seq, str(d.deal_id), WarehouseCode.BAD_ID, "staff")
        elif d.state != DL_DELIVERY_CONFIRMED:
            self._reject(out, seq, str(d.deal_id), WarehouseCode.BAD_DEAL_STATE, d.state)
        else:
            self._settle(d, d.amount_fen, c.staff, seq, ts_ns, out)

    def _resolve(self, c: ResolveDispute, seq: int, ts_ns: int, out: list[Event]) -> None:
        d = self._delivery_of(c.deal_id, seq, out)
        if d is None:
            return
        ref = str(d.deal_id)
        if not self._valid_id(c.staff):
            self._reject(out, seq, ref, WarehouseCode.BAD_ID, "staff")
        elif d.state != DL_DISPUTED:
            self._reject(out, seq, ref, WarehouseCode.BAD_DEAL_STATE, d.state)
        elif c.resolution == ADJUST:
            self._settle(d, c.amount_fen, c.staff, seq, ts_ns, out)
        elif c.resolution == CANCEL:
            code, detail = self.ledger.cancel_deal(d.deal_id, seq, out)
            if code:
                self._reject(out, seq, ref, WarehouseCode.LEDGER_REFUSED, f"{code}: {detail}")
                return
            self._return_receipts(d, c.staff, seq, ts_ns, out)
            self._end(d, DL_CANCELLED, "cancelled by staff", seq, out)
        else:
            self._reject(out, seq, ref, WarehouseCode.BAD_RESOLUTION, str(c.resolution)[:64])

    def overdue_side(self, d: Delivery, ts_ns: int) -> int:
        """Who is in default at `ts_ns`: BUYER_SIDE (0), SELLER_SIDE (1), or -1 for nobody.

        awaiting_payment past the payment deadline: the buyer did not pay.
        paid past the delivery deadline: the seller did not deliver.
        delivery_confirmed past the delivery deadline: the buyer could not
        pay the settlement. A disputed delivery waits for staff."""
        if d.state == DL_AWAITING_PAYMENT and ts_ns > d.payment_deadline_ns:
            return BUYER_SIDE
        if d.state == DL_PAID and ts_ns > d.delivery_deadline_ns:
            return SELLER_SIDE
        if d.state == DL_DELIVERY_CONFIRMED and ts_ns > d.delivery_deadline_ns:
            return BUYER_SIDE
        return -1

    def _default(self, d: Delivery, side: int, actor: str, seq: int, ts_ns: int, out: list[Event]) -> bool:
        code, detail = self.ledger.default_deal(d.deal_id, side, seq, out)
        if code:
            self._reject(out, seq, str(d.deal_id), WarehouseCode.LEDGER_REFUSED, f"{code}: {detail}")
            return False
        self._return_receipts(d, actor, seq, ts_ns, out)
        self._end(d, DL_DEFAULTED, "buyer" if side == BUYER_SIDE else "seller", seq, out)
        return True

    def _declare_default(self, c: DeclareDefault, seq: int, ts_ns: int, out: list[Event]) -> None:
        d = self._delivery_of(c.deal_id, seq, out)
        if d is None:
            return
        ref = str(d.deal_id)
        if not self._valid_id(c.staff):
            self._reject(out, seq, ref, WarehouseCode.BAD_ID, "staff")
        elif d.state in ENDED_DELIVERY_STATES or d.state == DL_DISPUTED:
            self._reject(out, seq, ref, WarehouseCode.BAD_DEAL_STATE, d.state)
        elif (side := self.overdue_side(d, ts_ns)) < 0:
            self._reject(out, seq, ref, WarehouseCode.DEADLINE_NOT_PASSED, d.state)
        else:
            self._default(d, side, c.staff, seq, ts_ns, out)

    def _sweep(self, c: SweepDeadlines, seq: int, ts_ns: int, out: list[Event]) -> None:
        if not self._valid_id(c.staff):
            self._reject(out, seq, "", WarehouseCode.BAD_ID, "staff")
            return
        done = 0
        for deal_id in sorted(self.open_deals):
            if done >= self.limits.max_defaults_per_sweep:
                break
            d = self.deliveries[deal_id]
            side = self.overdue_side(d, ts_ns)
            if side >= 0:
                self._default(d, side, c.staff, seq, ts_ns, out)
                done += 1

    # ---------------------------------------------------------------- reports

    def stock_report(self) -> list[dict[str, Any]]:
        """Per warehouse and instrument group, in kg (see ``_audit.stock_report``)."""
        return stock_report(self)

    def conservation_problems(self) -> list[str]:
        """Goods conservation per warehouse and instrument group; empty when it holds."""
        return conservation_problems(self)

    def check_invariants(self) -> None:
        """Assert every invariant of the warehouse state (tests call this after every step)."""
        check_invariants(self)

    # ------------------------------------------------------------------ state

    def export_state(self) -> dict[str, Any]:
        """The whole state as canonical JSON-able data (equal states, equal dicts)."""
        return {
            "limits": self.limits.to_list(),
            "instruments": [self.instruments[s].to_list() for s in sorted(self.instruments)],
            "warehouses": [self.warehouses[w].to_list() for w in sorted(self.warehouses)],
            "operators": [[o, w] for o, w in sorted(self.operators.items())],
            "receipts": [self.receipts[n].to_list() for n in sorted(self.receipts)],
            "locks": [self.locks[o].to_list() for o in sorted(self.locks)],
            "deliveries": [self.deliveries[d].to_list() for d in sorted(self.deliveries)],
            "stock": [[w, g, *row] for (w, g), row in sorted(self.stock.items())],
            "next_serial": self.next_serial,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any], ledger: DeliveryLedger) -> WarehouseEngine:
        eng = cls(ledger, WarehouseLimits(*d["limits"]))
        for item in d["instruments"]:
            eng.instruments[item[0]] = InstrumentTerms(*item)
        for item in d["warehouses"]:
            eng.warehouses[item[0]] = Warehouse.from_list(item)
        eng.operators = dict(d["operators"])
        for item in d["receipts"]:
            r = Receipt.from_list(item)
            eng.receipts[r.number] = r
            if r.state == ACTIVE:
                eng._index_active(r)
        for item in d["locks"]:
            lock = OrderLock.from_list(item)
            eng.locks[lock.order_id] = lock
        for item in d["deliveries"]:
            delivery = Delivery.from_list(item)
            eng.deliveries[delivery.deal_id] = delivery
            if delivery.state not in ENDED_DELIVERY_STATES:
                eng.open_deals[delivery.deal_id] = None
        eng.stock = {(w, g): list(row) for w, g, *row in d["stock"]}
        eng.next_serial = d["next_serial"]
        return eng
