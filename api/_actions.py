"""Handlers of the remaining capabilities of the core: a member's own
withdrawal cancel, pledges, splits and merges, load-out withdrawal; an
operator's void; staff freezes, defaults, deadline sweeps, settlement
retries, the receipt rule, new instruments, warehouses and operator
accounts, and resolved reconciliation breaks. Each becomes one core command
through the sequencer; the answer is read from the views after the commit.

    request                     trader   operator  bank     staff
    cancel_withdrawal           own      -         -        any
    pledge_receipt, split_receipt, merge_receipts,
    withdraw_load_out           held     -         -        -
    release_pledge              -        -         pledged to it -
    void_receipt                -        own warehouse -    -
    freeze_receipt, unfreeze_receipt, declare_default, sweep_deadlines,
    settle_delivery, require_receipts, list_instrument, add_warehouse,
    add_operator, resolve_break -        -         -        yes

What the gateway checks before submitting (answered at once, nothing
sequenced): a trader's cancel names a withdrawal of its own member (another
member's, or an unknown one, is UNKNOWN_REQUEST: a trader learns nothing of
other members' ids); a pledge names a bank that supervises a member
(UNKNOWN_BANK); the rule and listing name a known, or a new and well-formed,
instrument. The rest the core checks itself: the holder of a receipt
(NOT_YOUR_RECEIPT), the pledgee (NOT_PLEDGEE, a bank learns nothing of
receipts not pledged to it), the operator's warehouse (NOT_YOUR_WAREHOUSE),
states and deadlines; a refusal changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api._errors import ApiError, ErrorCode
from api._handlers import HANDLERS, Submit, instrument_info
from api._operations import _deal_finish, _key, _receipt_finish, _refused, amount_to_fen
from api._protocol import (
    AddOperatorRequest,
    AddWarehouseRequest,
    CancelWithdrawalRequest,
    DeclareDefaultRequest,
    FreezeReceiptRequest,
    ListInstrumentRequest,
    MergeReceiptsRequest,
    PledgeReceiptRequest,
    ReleasePledgeRequest,
    RequireReceiptsRequest,
    ResolveBreakRequest,
    SettleDeliveryRequest,
    SplitReceiptRequest,
    SweepDeadlinesRequest,
    UnfreezeReceiptRequest,
    VoidReceiptRequest,
    WithdrawLoadOutRequest,
)
from api._views import core_refusal
from clearing import CancelWithdrawal, ResolveBreak
from exchange import Ack
from exchange._warehouse_rule import RequireReceipts
from matching import AUCTION, BREAK, CLOSED, CONTINUOUS, REJECTED, Instrument, ListInstrument, SessionPhase
from warehouse import (
    W_DELIVERY_STATE,
    W_RECEIPT,
    W_REJECTED,
    AddOperator,
    AddWarehouse,
    DeclareDefault,
    FreezeReceipt,
    MergeReceipts,
    PledgeReceipt,
    ReleasePledge,
    SettleDelivery,
    SplitReceipt,
    SweepDeadlines,
    UnfreezeReceipt,
    VoidReceipt,
    WithdrawLoadOut,
)

if TYPE_CHECKING:
    from api._server import Gateway
    from api._session import Connection

__all__: list[str] = []

_PHASES = {"auction": AUCTION, "continuous": CONTINUOUS, "break": BREAK, "closed": CLOSED}


# ------------------------------------------------------------- withdrawals


def _cancel_withdrawal(gateway: Gateway, conn: Connection, r: CancelWithdrawalRequest) -> Submit:
    key = _key(conn)
    w = gateway.views.withdrawals.get(r.withdrawal_id)
    if key.role == "trader" and (w is None or w["account"] != key.subject):
        raise ApiError(ErrorCode.UNKNOWN_REQUEST, "no withdrawal request of your member with this id")

    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        done = gateway.views.withdrawals[r.withdrawal_id]
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "duplicate": False, "withdrawal": dict(done)}

    return Submit(CancelWithdrawal(r.withdrawal_id, key.actor), finish)


# ---------------------------------------------------------------- receipts


def _pledge_receipt(gateway: Gateway, conn: Connection, r: PledgeReceiptRequest) -> Submit:
    if r.bank not in gateway.views.member_bank.values():
        raise ApiError(ErrorCode.UNKNOWN_BANK, r.bank)
    return Submit(PledgeReceipt(r.number, conn.account, r.bank), _receipt_finish(gateway, r.number))


def _release_pledge(gateway: Gateway, conn: Connection, r: ReleasePledgeRequest) -> Submit:
    return Submit(ReleasePledge(r.number, _key(conn).subject), _receipt_finish(gateway, r.number))


def _new_receipts_finish(gateway: Gateway, sources: tuple[str, ...], origin: str) -> Any:
    """The answer to a split (`origin` ``split:<number>``) or a merge (``merged``): the one new
    receipt of that origin and the sources after the step."""

    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        made = [e[2] for e in ack.events if e[0] == W_RECEIPT and e[3] == origin]
        assert len(made) == 1, ack
        views = gateway.views
        return {
            "seq": ack.seq, "ts_ns": ack.ts_ns, "receipt": dict(views.receipts[made[0]]),
            "sources": [dict(views.receipts[n]) for n in sources],
        }  # fmt: skip

    return finish


def _split_receipt(gateway: Gateway, conn: Connection, r: SplitReceiptRequest) -> Submit:
    command = SplitReceipt(r.number, conn.account, r.weight_kg, r.pieces)
    return Submit(command, _new_receipts_finish(gateway, (r.number,), f"split:{r.number}"))


def _merge_receipts(gateway: Gateway, conn: Connection, r: MergeReceiptsRequest) -> Submit:
    return Submit(MergeReceipts(r.numbers, conn.account), _new_receipts_finish(gateway, r.numbers, "merged"))


def _withdraw_load_out(gateway: Gateway, conn: Connection, r: WithdrawLoadOutRequest) -> Submit:
    return Submit(WithdrawLoadOut(r.number, conn.account), _receipt_finish(gateway, r.number))


def _void_receipt(gateway: Gateway, conn: Connection, r: VoidReceiptRequest) -> Submit:
    return Submit(VoidReceipt(r.number, _key(conn).subject), _receipt_finish(gateway, r.number))


def _freeze_receipt(gateway: Gateway, conn: Connection, r: FreezeReceiptRequest) -> Submit:
    return Submit(FreezeReceipt(r.number, _key(conn).actor, r.reason), _receipt_finish(gateway, r.number))


def _unfreeze_receipt(gateway: Gateway, conn: Connection, r: UnfreezeReceiptRequest) -> Submit:
    return Submit(UnfreezeReceipt(r.number, _key(conn).actor, r.reason), _receipt_finish(gateway, r.number))


# ------------------------------------------------------------------- deals


def _declare_default(gateway: Gateway, conn: Connection, r: DeclareDefaultRequest) -> Submit:
    return Submit(DeclareDefault(r.deal_id, _key(conn).actor), _deal_finish(gateway, r.deal_id, None))


def _settle_delivery(gateway: Gateway, conn: Connection, r: SettleDeliveryRequest) -> Submit:
    return Submit(SettleDelivery(r.deal_id, _key(conn).actor), _deal_finish(gateway, r.deal_id, None))


def _sweep_deadlines(gateway: Gateway, conn: Connection, r: SweepDeadlinesRequest) -> Submit:
    def finish(ack: Ack) -> dict[str, Any]:
        defaulted: list[int] = []
        refused: list[str] = []
        for e in ack.events:
            if e[0] == W_DELIVERY_STATE and e[3] == "defaulted":
                defaulted.append(e[2])
            elif e[0] == W_REJECTED:
                refusal = core_refusal(Ack(ack.seq, ack.ts_ns, [e]))
                assert refusal is not None
                if not e[2]:  # the sweep itself was refused
                    _refused(ack)
                refused.append(f"{e[2]}: {refusal[0].value}: {refusal[1]}")
        views = gateway.views
        return {
            "seq": ack.seq, "ts_ns": ack.ts_ns, "defaulted": [views.deal_info(d, None) for d in defaulted],
            "refused": refused,
        }  # fmt: skip

    return Submit(SweepDeadlines(_key(conn).actor), finish)


# ------------------------------------------------------------- instruments


def _require_receipts(gateway: Gateway, conn: Connection, r: RequireReceiptsRequest) -> Submit:
    if r.instrument not in gateway.market.instruments:
        raise ApiError(ErrorCode.UNKNOWN_INSTRUMENT, r.instrument)

    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        required = r.instrument in gateway.views.receipts_required
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "instrument": r.instrument, "receipts_required": required}

    return Submit(RequireReceipts(r.instrument, r.required, _key(conn).actor), finish)


def _instrument(r: ListInstrumentRequest) -> Instrument:
    """The core's instrument from the request; INVALID_FIELD or PRICE_OFF_TICK for what does not fit."""
    tick_fen = amount_to_fen(r.tick)
    if tick_fen <= 0:
        raise ApiError(ErrorCode.INVALID_FIELD, "tick must be positive")
    reference_fen = amount_to_fen(r.reference_price)
    if reference_fen % tick_fen or reference_fen <= 0:
        raise ApiError(ErrorCode.PRICE_OFF_TICK, f"reference_price: a positive multiple of {r.tick}")
    if r.max_lots < r.min_lots:
        raise ApiError(ErrorCode.INVALID_FIELD, "max_lots must be at least min_lots")
    sessions = tuple(SessionPhase(int(p.at[:2]) * 60 + int(p.at[3:]), _PHASES[p.state]) for p in r.sessions)
    return Instrument(
        r.symbol, r.commodity, r.product, r.grade, r.warehouse_group, r.lot_size_t, tick_fen,
        reference_fen // tick_fen, r.price_band_bps, r.min_lots, r.max_lots, r.margin_rate_bps, r.maker_fee_bps,
        r.taker_fee_bps, r.payment_days, r.delivery_days, r.weight_tolerance_bps, sessions, r.receipts_required,
    )  # fmt: skip


def _list_instrument(gateway: Gateway, conn: Connection, r: ListInstrumentRequest) -> Submit:
    instrument = _instrument(r)
    if r.symbol in gateway.market.instruments:
        raise ApiError(ErrorCode.INSTRUMENT_EXISTS, r.symbol)

    def finish(ack: Ack) -> dict[str, Any]:
        for e in ack.events:
            if e[0] == REJECTED:
                error = ApiError(ErrorCode.from_reject(e[4]), e[5])
                error.seq = ack.seq  # type: ignore[attr-defined]
                raise error
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "instrument": instrument_info(gateway, r.symbol)}

    return Submit(ListInstrument(instrument), finish)


# ------------------------------------------------------- exchange set-up


def _add_warehouse(gateway: Gateway, conn: Connection, r: AddWarehouseRequest) -> Submit:
    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "warehouse_id": r.warehouse_id, "name": r.name,
                "groups": list(r.groups)}  # fmt: skip

    return Submit(AddWarehouse(r.warehouse_id, r.name, r.groups, _key(conn).actor), finish)


def _add_operator(gateway: Gateway, conn: Connection, r: AddOperatorRequest) -> Submit:
    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        warehouse = gateway.views.operators[r.operator_id]
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "operator_id": r.operator_id, "warehouse_id": warehouse}

    return Submit(AddOperator(r.operator_id, r.warehouse_id, _key(conn).actor), finish)


def _resolve_break(gateway: Gateway, conn: Connection, r: ResolveBreakRequest) -> Submit:
    bank = gateway.views.breaks.get(r.break_id, {}).get("bank")

    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        still_open = sum(1 for b in gateway.views.breaks.values() if b["bank"] == bank)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "break_id": r.break_id, "open_breaks": still_open}

    return Submit(ResolveBreak(r.break_id, _key(conn).actor, r.note), finish)


TRADER = frozenset({"trader"})
STAFF = frozenset({"staff"})

HANDLERS.register("cancel_withdrawal", _cancel_withdrawal, frozenset({"trader", "staff"}))
HANDLERS.register("pledge_receipt", _pledge_receipt, TRADER)
HANDLERS.register("release_pledge", _release_pledge, frozenset({"bank"}))
HANDLERS.register("split_receipt", _split_receipt, TRADER)
HANDLERS.register("merge_receipts", _merge_receipts, TRADER)
HANDLERS.register("withdraw_load_out", _withdraw_load_out, TRADER)
HANDLERS.register("void_receipt", _void_receipt, frozenset({"operator"}))
HANDLERS.register("freeze_receipt", _freeze_receipt, STAFF)
HANDLERS.register("unfreeze_receipt", _unfreeze_receipt, STAFF)
HANDLERS.register("declare_default", _declare_default, STAFF)
HANDLERS.register("sweep_deadlines", _sweep_deadlines, STAFF)
HANDLERS.register("settle_delivery", _settle_delivery, STAFF)
HANDLERS.register("require_receipts", _require_receipts, STAFF)
HANDLERS.register("list_instrument", _list_instrument, STAFF)
HANDLERS.register("add_warehouse", _add_warehouse, STAFF)
HANDLERS.register("add_operator", _add_operator, STAFF)
HANDLERS.register("resolve_break", _resolve_break, STAFF)
