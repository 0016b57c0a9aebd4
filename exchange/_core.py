"""The core: every deterministic state machine of the exchange behind one
``apply``. Commands are routed by type.

No clock, no I/O: the sequencer passes `seq` and `ts_ns` in, events come out
in `out`. Same commands in, byte-identical events out.

Matching and clearing are composed here (pre-trade risk):

    NewOrder           clearing.freeze_order (the hold: margin, plus the taker fee for a buy)
                       ├─ refused: C_ORDER_REJECTED, then a matching REJECTED with code
                       │  INSUFFICIENT_FUNDS (80) and the shortfall; the order never reaches the book
                       └─ frozen: matching.apply, then clearing.absorb (trades become deals,
                          cancels and expiries release, a rejected order's hold is released)
    AmendOrder         clearing.reserve_amend (top up the hold), matching.apply, clearing.absorb
    CancelOrder, MassCancel, SetTradingState
                       matching.apply, clearing.absorb
    ListInstrument     matching.apply; clearing.list_instrument and warehouse.list_instrument
                       when matching listed it
    clearing commands  clearing.apply (RegisterMember, BankDeposit, withdrawals, files, CloseDay, ...)
    warehouse commands warehouse.apply (receipts, PayDeal, ConfirmDelivery, SettleDelivery,
                       ResolveDispute, DeclareDefault, SweepDeadlines, load-out, ...); the warehouse
                       calls clearing (its DeliveryLedger) so delivery versus payment is one step.
                       LockReceipts, UnlockReceipts and AllocateDeal are refused (CORE_ONLY): the
                       core does those itself, below
    RequireReceipts    the per-instrument receipt rule (see ``_warehouse_rule``)

Warehouse receipts follow the sell orders (see docs/warehouse.md):

    SELL NewOrder      warehouse.lock_for_order before the hold is frozen: the receipts the
                       order names (NewOrder.receipts, in the order given), else the oldest
                       active receipts of the seller in one warehouse. Refused and the order
                       names receipts: REJECTED with the code of the reason (82 unknown or not
                       the seller's, 83 not active, 84 not for this instrument, 85 two
                       warehouses, 86 named twice, 87 too many, 81 too light), nothing frozen;
                       refused and the instrument requires receipts (the default, see
                       Instrument.receipts_required): REJECTED INSUFFICIENT_RECEIPTS (81);
                       refused and not required: the order goes on without a lock.
                       When clearing then refuses the hold, the lock is undone (unlock_order).
    BUY NewOrder       naming receipts: REJECTED RECEIPTS_ON_BUY (88)
    after matching     every TRADE against a locked sell order: warehouse.open_delivery with the
                       deal id clearing gave the deal (the trade id); then every touched locked
                       order is trimmed to what matching left open (cancel, amend down, expiry,
                       fill, a new order that never rested)
    AmendOrder up      a locked sell order first locks more of the seller's active receipts in
                       its lock's warehouse, oldest first (warehouse.grow_lock; what its receipts
                       hold beyond its open weight counts first); none to cover it: REJECTED 81,
                       nothing changed. Should clearing refuse the bigger hold, nothing is locked;
                       should matching refuse the amend, the new receipts are unlocked again.

An order that matching is certain to refuse before it could rest or trade
(unknown instrument, bad side, quantity outside the instrument's limits, a
limit price outside the band, a repeated client order id) goes to matching
directly: it answers with its own reject code (or the first answer of a
duplicate) and no money is frozen. A clearing refusal is reported to the
trader with matching's REJECTED event so that every consumer of order
events (gateway, projections) sees one kind of answer; the clearing code
and detail stay in the C_ORDER_REJECTED event before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from clearing import CLEARING_COMMANDS, ClearingCode, ClearingEngine
from exchange._codec import register_commands
from exchange._warehouse_rule import EXCHANGE_WAREHOUSE_COMMANDS, X_RECEIPT_RULE, RequireReceipts
from matching import (
    AMENDED,
    BUY,
    LIMIT,
    LISTED,
    MARKET,
    REJECTED,
    SELL,
    AmendOrder,
    CancelOrder,
    Event,
    Limits,
    ListInstrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
    RejectCode,
    SetTradingState,
)
from matching import (
    CANCELLED as M_CANCELLED,
)
from matching import (
    TRADE as M_TRADE,
)
from warehouse import (
    W_REJECTED,
    WAREHOUSE_COMMANDS,
    AllocateDeal,
    LockReceipts,
    UnlockReceipts,
    WarehouseCode,
    WarehouseEngine,
)

__all__ = ["Core", "canonical_json", "hash_state"]

# Rejection codes as plain ints (RejectCode's values): events travel between processes as marshal
# data, which takes ints and not IntEnum members; readers look the name up with RejectCode(code).
_RC_BAD_SIDE: Final = int(RejectCode.BAD_SIDE)
_RC_INSUFFICIENT_FUNDS: Final = int(RejectCode.INSUFFICIENT_FUNDS)
_RC_INSUFFICIENT_RECEIPTS: Final = int(RejectCode.INSUFFICIENT_RECEIPTS)
_RC_PRICE_NOT_POSITIVE: Final = int(RejectCode.PRICE_NOT_POSITIVE)
_RC_RECEIPTS_IN_TWO_WAREHOUSES: Final = int(RejectCode.RECEIPTS_IN_TWO_WAREHOUSES)
_RC_RECEIPTS_ON_BUY: Final = int(RejectCode.RECEIPTS_ON_BUY)
_RC_RECEIPT_NOT_ACTIVE: Final = int(RejectCode.RECEIPT_NOT_ACTIVE)
_RC_RECEIPT_NOT_DELIVERABLE: Final = int(RejectCode.RECEIPT_NOT_DELIVERABLE)
_RC_RECEIPT_REPEATED: Final = int(RejectCode.RECEIPT_REPEATED)
_RC_TOO_MANY_RECEIPTS: Final = int(RejectCode.TOO_MANY_RECEIPTS)
_RC_UNKNOWN_INSTRUMENT: Final = int(RejectCode.UNKNOWN_INSTRUMENT)
_RC_UNKNOWN_RECEIPT: Final = int(RejectCode.UNKNOWN_RECEIPT)

register_commands(CLEARING_COMMANDS.values())
register_commands(WAREHOUSE_COMMANDS.values())
register_commands(EXCHANGE_WAREHOUSE_COMMANDS.values())

_CORE_ONLY: Final = (LockReceipts, UnlockReceipts, AllocateDeal)
_FOLLOWED: Final = frozenset((M_CANCELLED, AMENDED))

# The matching reject code a trader sees when the receipts a sell order names
# cannot be locked. Someone else's receipt is answered as an unknown one: a
# trader learns nothing of receipts it does not hold.
_LOCK_TO_REJECT: Final[dict[int, int]] = {
    WarehouseCode.UNKNOWN_RECEIPT: _RC_UNKNOWN_RECEIPT,
    WarehouseCode.NOT_YOUR_RECEIPT: _RC_UNKNOWN_RECEIPT,
    WarehouseCode.BAD_RECEIPT_STATE: _RC_RECEIPT_NOT_ACTIVE,
    WarehouseCode.NOT_DELIVERABLE: _RC_RECEIPT_NOT_DELIVERABLE,
    WarehouseCode.ONE_WAREHOUSE: _RC_RECEIPTS_IN_TWO_WAREHOUSES,
    WarehouseCode.REPEATED_RECEIPT: _RC_RECEIPT_REPEATED,
    WarehouseCode.TOO_MANY_IN_LIST: _RC_TOO_MANY_RECEIPTS,
}

# The matching reject code a trader sees when clearing refuses an order (the
# gateway speaks matching's codes). An unregistered member has no funds.
_RISK_TO_REJECT: Final[dict[int, int]] = {
    ClearingCode.INSUFFICIENT_FUNDS: _RC_INSUFFICIENT_FUNDS,
    ClearingCode.UNKNOWN_MEMBER: _RC_INSUFFICIENT_FUNDS,
    ClearingCode.UNKNOWN_INSTRUMENT: _RC_UNKNOWN_INSTRUMENT,
    ClearingCode.BAD_SIDE: _RC_BAD_SIDE,
    ClearingCode.BAD_AMOUNT: _RC_PRICE_NOT_POSITIVE,
}


def canonical_json(state: dict[str, Any]) -> bytes:
    """The canonical bytes of a state: orjson with sorted keys."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def hash_state(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _risk_refusal(out: list[Event], account: str) -> tuple[int, str]:
    """The matching reject code and detail answering a clearing refusal (the C_ORDER_REJECTED just appended)."""
    refusal = out[-1]
    code = _RISK_TO_REJECT.get(refusal[4], _RC_INSUFFICIENT_FUNDS)
    detail = refusal[5] if refusal[4] != ClearingCode.UNKNOWN_MEMBER else f"member {account} has no funds: register it"
    return code, detail


def _risk_reject(out: list[Event], seq: int, account: str, reference: str) -> None:
    """Answer a clearing refusal (the C_ORDER_REJECTED just appended) as a matching REJECTED."""
    code, detail = _risk_refusal(out, account)
    out.append((REJECTED, seq, account, reference, code, detail))


class Core:
    """Composes the matching, clearing and warehouse engines."""

    def __init__(
        self,
        matching: MatchingEngine | None = None,
        clearing: ClearingEngine | None = None,
        warehouse: WarehouseEngine | None = None,
        receipts_required: Iterable[str] = (),
    ) -> None:
        self.matching = matching if matching is not None else MatchingEngine(Limits())
        self.clearing = clearing if clearing is not None else ClearingEngine()
        self.warehouse = warehouse if warehouse is not None else WarehouseEngine(self.clearing)
        assert self.warehouse.ledger is self.clearing, "the warehouse settles money through this core's clearing"
        self.receipts_required: set[str] = set(receipts_required)
        m = self.matching
        c = self.clearing
        w = self.warehouse
        self._books = m.books
        self._client_ids = m.client_ids
        self._matching_orders = m.orders
        self._locks = w.locks
        self._active_by_holder = w.active_by_holder
        # type -> apply(command, seq, ts_ns, out)
        self._routes: dict[type[Any], Callable[[Any, int, int, list[Event]], None]] = {
            NewOrder: self._new_order,
            AmendOrder: self._amend,
            CancelOrder: self._cancel,
            MassCancel: self._follow,
            SetTradingState: self._follow,
            ListInstrument: self._list,
            RequireReceipts: self._require_receipts,
        }
        for cls in CLEARING_COMMANDS.values():
            self._routes[cls] = c.apply
        for wcls in WAREHOUSE_COMMANDS.values():
            self._routes[wcls] = self._core_only if wcls in _CORE_ONLY else w.apply

    def apply(self, command: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Apply one sequenced command, appending its events to `out`."""
        try:
            route = self._routes[type(command)]
        except KeyError:
            raise AssertionError(f"no state machine handles {type(command).__name__}") from None
        route(command, seq, ts_ns, out)

    # --------------------------------------------------------------- routes

    def _new_order(self, c: NewOrder, seq: int, ts_ns: int, out: list[Event]) -> None:
        book = self._books.get(c.instrument)
        side = c.side
        qty = c.quantity_lots
        if book is None or not (BUY <= side <= SELL) or not (book.min_lots <= qty <= book.max_lots):
            self.matching.apply(c, seq, out)  # matching refuses it; nothing to freeze
            return
        order_type = c.order_type
        if order_type == LIMIT:
            price = c.price_ticks
            if not (book.band_low_ticks <= price <= book.band_high_ticks) or price <= 0:
                self.matching.apply(c, seq, out)
                return
        elif order_type == MARKET:
            price = book.band_high_ticks  # the hold covers any price it can trade at (both sides)
        else:
            self.matching.apply(c, seq, out)
            return
        ids = self._client_ids.get(c.account)
        if ids is not None and c.client_order_id in ids:
            self.matching.apply(c, seq, out)  # a repeat: answered as the first, nothing applied
            return
        locked = False
        named = c.receipts
        # a seller with no active receipt cannot lock any: skip the search unless the refusal matters
        if side == SELL and (named or c.instrument in self.receipts_required or self._active_by_holder.get(c.account)):
            mark = len(out)
            code, detail = self.warehouse.lock_for_order(seq, c.account, c.instrument, qty, named, seq, ts_ns, out)
            locked = code == 0
            if not locked:
                assert len(out) == mark, "a refused lock appends nothing"
                if named or c.instrument in self.receipts_required:
                    reject: int = _RC_INSUFFICIENT_RECEIPTS
                    if named:
                        reject = _LOCK_TO_REJECT.get(code, reject)
                    self.matching.refuse_new_order(c, seq, reject, detail, out)
                    return
        elif named:
            self.matching.refuse_new_order(c, seq, _RC_RECEIPTS_ON_BUY, "", out)
            return
        if not self.clearing.freeze_order(seq, c.account, c.instrument, side, price, qty, seq, out):
            if locked:
                self.warehouse.unlock_order(seq, qty, seq, ts_ns, out)
            code, detail = _risk_refusal(out, c.account)
            self.matching.refuse_new_order(c, seq, code, detail, out)
            return
        start = len(out)
        self.matching.new_order(c, seq, out)
        self.clearing.absorb(out, start, seq)
        if locked or self._locks:
            self._follow_receipts(out, start, seq, ts_ns, seq)

    def _amend(self, c: AmendOrder, seq: int, ts_ns: int, out: list[Event]) -> None:
        order = self._matching_orders.get(c.order_id)
        grow = 0
        if order is not None and order.account == c.account:
            book = self._books[order.instrument]
            in_limits = (
                book.band_low_ticks <= c.price_ticks <= book.band_high_ticks
                and c.price_ticks > 0
                and c.quantity_lots <= book.max_lots
            )
            if in_limits and c.order_id in self._locks:
                grow = c.quantity_lots - order.filled_lots - order.open_lots
                if grow > 0:  # an amend up locks more receipts first (see grow_lock)
                    code, detail = self.warehouse.grow_lock(c.order_id, grow, seq, ts_ns, out, check_only=True)
                    if code:
                        out.append((REJECTED, seq, c.account, str(c.order_id), _RC_INSUFFICIENT_RECEIPTS, detail))
                        return
            if in_limits and not self.clearing.reserve_amend(
                c.order_id, c.account, c.price_ticks, c.quantity_lots, seq, out
            ):
                _risk_reject(out, seq, c.account, str(c.order_id))
                return
            if grow > 0:
                code, detail = self.warehouse.grow_lock(c.order_id, grow, seq, ts_ns, out)
                assert code == 0, (code, detail)
        start = len(out)
        self.matching.apply(c, seq, out)
        self.clearing.absorb(out, start, seq)
        if self._locks:  # a refused amend up gives its new receipts back here
            self._follow_receipts(out, start, seq, ts_ns, c.order_id if grow > 0 else 0)

    def _cancel(self, c: CancelOrder, seq: int, ts_ns: int, out: list[Event]) -> None:
        """``_follow`` for a cancel, calling the matching path directly (the common command)."""
        start = len(out)
        self.matching.cancel(c, seq, out)
        self.clearing.absorb(out, start, seq)
        if self._locks:
            self._follow_receipts(out, start, seq, ts_ns, 0)

    def _follow(self, c: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        start = len(out)
        self.matching.apply(c, seq, out)
        self.clearing.absorb(out, start, seq)
        if self._locks:
            self._follow_receipts(out, start, seq, ts_ns, 0)

    def _follow_receipts(self, out: list[Event], start: int, seq: int, ts_ns: int, new_order_id: int) -> None:
        """Receipts follow the matching events ``out[start:]``: a trade against
        a locked sell order opens its delivery (deal id = trade id, as clearing
        numbers deals), then each touched lock is trimmed to the lots matching
        left open (cancels, amends down, expiries, fills, a new order that
        never rested)."""
        locks = self._locks
        w = self.warehouse
        touched: dict[int, None] = {new_order_id: None} if new_order_id in locks else {}
        end = len(out)
        for i in range(start, end):
            ev = out[i]
            kind = ev[0]
            if kind == M_TRADE:
                sell_id = ev[9]
                if sell_id in locks:
                    code, detail = w.open_delivery(ev[2], sell_id, ev[7], ev[5], ev[4], 0, 0, seq, ts_ns, out)
                    if code:  # a warehouse limit: the receipts go back below, the deal clears without delivery
                        out.append((W_REJECTED, seq, str(ev[2]), code, detail))
                    touched[sell_id] = None
            elif kind in _FOLLOWED and ev[2] in locks:
                touched[ev[2]] = None
        for order_id in touched:
            lock = locks.get(order_id)
            if lock is None:
                continue
            lot_kg = w.instruments[lock.instrument].lot_weight_kg
            order = self._matching_orders.get(order_id)
            open_lots = order.open_lots if order is not None else 0
            surplus = lock.open_weight_kg // lot_kg - open_lots
            assert surplus >= 0, (order_id, lock.open_weight_kg, open_lots)
            if surplus:
                code, detail = w.unlock_order(order_id, surplus, seq, ts_ns, out)
                assert code == 0, (code, detail)

    def _list(self, c: ListInstrument, seq: int, ts_ns: int, out: list[Event]) -> None:
        start = len(out)
        self.matching.apply(c, seq, out)
        if any(e[0] == LISTED for e in out[start:]):
            self.clearing.list_instrument(c.instrument)
            self.warehouse.list_instrument(c.instrument)
            if c.instrument.receipts_required:
                self.receipts_required.add(c.instrument.symbol)

    def _require_receipts(self, c: RequireReceipts, seq: int, ts_ns: int, out: list[Event]) -> None:
        if type(c.instrument) is not str or c.instrument not in self._books or type(c.required) is not bool:
            out.append((W_REJECTED, seq, str(c.instrument)[:64], WarehouseCode.UNKNOWN_INSTRUMENT, "listed symbol"))
            return
        if c.required:
            self.receipts_required.add(c.instrument)
        else:
            self.receipts_required.discard(c.instrument)
        out.append((X_RECEIPT_RULE, seq, c.instrument, c.required, c.staff))

    def _core_only(self, c: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        reference = str(getattr(c, "order_id", getattr(c, "deal_id", "")))[:64]
        out.append((W_REJECTED, seq, reference, WarehouseCode.CORE_ONLY, type(c).KIND))

    # ---------------------------------------------------------------- state

    def trading_states(self) -> dict[str, int]:
        """Symbol -> trading state of every listed instrument."""
        return {symbol: book.state for symbol, book in self.matching.books.items()}

    def check_invariants(self) -> None:
        """Assert the invariants of every machine and that they agree: every
        order on a book has its clearing hold and no hold outlives its order;
        every receipt lock belongs to an order on a book with as many open lots."""
        self.matching.check_invariants()
        self.clearing.check_invariants()
        self.warehouse.check_invariants()
        on_books = set(self.matching.orders)
        held = set(self.clearing.orders)
        assert on_books == held, (sorted(on_books ^ held)[:10], len(on_books), len(held))
        for order_id, lock in self.warehouse.locks.items():
            order = self.matching.orders.get(order_id)
            assert order is not None, f"receipts locked for order {order_id}, which is not on a book"
            lot_kg = self.warehouse.instruments[lock.instrument].lot_weight_kg
            assert order.open_lots * lot_kg == lock.open_weight_kg, (order_id, order.open_lots, lock.open_weight_kg)

    def export_state(self) -> dict[str, Any]:
        """The whole state as canonical plain data (keys are strings)."""
        return {
            "matching": self.matching.export_state(),
            "clearing": self.clearing.export_state(),
            "warehouse": self.warehouse.export_state(),
            "receipts_required": sorted(self.receipts_required),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Core:
        clearing = ClearingEngine.from_state(state["clearing"])
        return cls(
            MatchingEngine.from_state(state["matching"], Limits()),
            clearing,
            WarehouseEngine.from_state(state["warehouse"], clearing),
            state["receipts_required"],
        )

    def state_bytes(self) -> bytes:
        return canonical_json(self.export_state())

    def state_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of ``export_state()``."""
        return hash_state(self.state_bytes())
