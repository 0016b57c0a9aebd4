"""Handlers of money and goods: queries answered from the read models
(``api._views``) and commands of traders, warehouse operators, banks and
staff, submitted to the sequencer like orders.

Who may send what (any other role is answered FORBIDDEN before anything is
read or submitted):

    request                     trader   operator  bank     staff
    balances, withdrawals       own      -         members  any (name it)
    receipts                    held     warehouse pledged to it any (name it)
    deals                       own side warehouse -        any (name it)
    bank_files                  -        -         own      any (name it)
    request_withdrawal          own      -         -        for a member
    approve_withdrawal          -        -         -        yes (not the requester)
    pay_deal, confirm_receipt,
    request_load_out            own      -         -        -
    resolve_dispute             -        -         -        yes
    register_receipt, confirm_delivery,
    confirm_load_out            -        own warehouse -     -

An operator key's subject is its operator account in the warehouse core
(staff open it for one warehouse with ``bulkex warehouse operator``); the
core itself refuses an operator on another warehouse's receipts or
deliveries (NOT_YOUR_WAREHOUSE). Identities recorded in the core: an
operator by its operator account, staff and requesters of withdrawals by
their actor (``ApiKey.actor``: ``staff:<person>`` for a staff key created with
a person's name, as ``bulkex keys create staff`` requires, else the key id), so
maker-checker compares people: the person who requested a withdrawal cannot
approve it, not even with another of their staff keys.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from api._errors import ApiError, ErrorCode
from api._handlers import HANDLERS, Submit
from api._protocol import (
    ApproveWithdrawalRequest,
    BalancesRequest,
    BankFilesRequest,
    ConfirmDeliveryRequest,
    ConfirmLoadOutRequest,
    ConfirmReceiptRequest,
    DealsRequest,
    PayDealRequest,
    ReceiptsRequest,
    RegisterReceiptRequest,
    RequestLoadOutRequest,
    RequestWithdrawalRequest,
    ResolveDisputeRequest,
    WithdrawalsRequest,
)
from api._views import core_refusal
from clearing import C_DUPLICATE, ApproveWithdrawal, RequestWithdrawal
from exchange import Ack
from warehouse import (
    W_DELIVERY_STATE,
    W_REJECTED,
    ConfirmDelivery,
    ConfirmLoadOut,
    ConfirmReceipt,
    PayDeal,
    RegisterReceipt,
    RequestLoadOut,
    ResolveDispute,
)

if TYPE_CHECKING:
    from api._server import Gateway
    from api._session import Connection

__all__ = ["LIVE_RECEIPT_STATES", "amount_to_fen"]

LIVE_RECEIPT_STATES = frozenset(("registered", "active", "locked", "pledged", "frozen", "loading"))
_OPEN_WITHDRAWALS = frozenset(("pending_approval", "approved"))


def amount_to_fen(amount: str) -> int:
    """A wire amount (CNY, at most two places, already checked by the model) in fen."""
    fen = Decimal(amount) * 100
    assert fen == fen.to_integral_value(), amount
    return int(fen)


def _key(conn: Connection) -> Any:
    key = conn.key
    assert key is not None
    return key


def _refused(ack: Ack) -> None:
    refusal = core_refusal(ack)
    if refusal is not None:
        error = ApiError(*refusal)
        error.seq = ack.seq  # type: ignore[attr-defined]
        raise error


def _member(gateway: Gateway, conn: Connection, requested: str | None) -> str:
    """The one member a request is about: a trader's own, the one staff (or a bank, of its
    members) name in `account`."""
    key = _key(conn)
    if key.role == "trader":
        if requested is not None and requested != key.subject:
            raise ApiError(ErrorCode.FORBIDDEN, "a trader sees only its own member's account")
        return str(key.subject)
    if requested is None:
        raise ApiError(ErrorCode.INVALID_FIELD, f"a {key.role} key names the member in `account`")
    if key.role == "bank" and gateway.views.member_bank.get(requested) != key.subject:
        raise ApiError(ErrorCode.FORBIDDEN, f"{requested} is not a member supervised by bank {key.subject}")
    if requested not in gateway.views.member_bank:
        raise ApiError(ErrorCode.UNKNOWN_MEMBER, requested)
    return requested


def _members(gateway: Gateway, conn: Connection, requested: str | None) -> list[str]:
    """The members a money query covers: one, or (a bank or staff without `account`) several."""
    key = _key(conn)
    if key.role == "bank" and requested is None:
        return sorted(m for m, bank in gateway.views.member_bank.items() if bank == key.subject)
    if key.role == "staff" and requested is None:
        return sorted(gateway.views.member_bank)
    return [_member(gateway, conn, requested)]


def _operator_warehouse(gateway: Gateway, conn: Connection) -> str | None:
    return gateway.views.operators.get(_key(conn).subject)


# ------------------------------------------------------------------ queries


def _balances(gateway: Gateway, conn: Connection, r: BalancesRequest) -> dict[str, Any]:
    members = _members(gateway, conn, r.account)[: r.limit]
    return {"balances": [gateway.views.balance_info(m, r.holds_limit) for m in members]}


def _withdrawals(gateway: Gateway, conn: Connection, r: WithdrawalsRequest) -> dict[str, Any]:
    views = gateway.views
    key = _key(conn)
    if key.role == "staff" and r.account is None:
        ids: list[str] = list(views.withdrawals)
    else:
        ids = [i for m in _members(gateway, conn, r.account) for i in views.member_withdrawals.get(m, ())]
    rows = [views.withdrawals[i] for i in ids]
    if r.status == "open":
        rows = [w for w in rows if w["status"] in _OPEN_WITHDRAWALS]
    rows.sort(key=lambda w: w["last_seq"], reverse=True)
    return {"withdrawals": [dict(w) for w in rows[: r.limit]]}


def _receipts(gateway: Gateway, conn: Connection, r: ReceiptsRequest) -> dict[str, Any]:
    views = gateway.views
    key = _key(conn)
    if key.role == "trader":
        numbers = list(views.holder_receipts.get(_member(gateway, conn, r.account), ()))
        warehouse = r.warehouse
        holder = None
    elif key.role == "operator":
        own = _operator_warehouse(gateway, conn)
        if r.warehouse is not None and r.warehouse != own:
            raise ApiError(ErrorCode.FORBIDDEN, "an operator sees only its own warehouse's receipts")
        numbers = list(views.warehouse_receipts.get(own, ())) if own is not None else []
        warehouse, holder = None, r.account
    elif key.role == "bank":  # the receipts pledged to it
        numbers = list(views.bank_pledges.get(key.subject, ()))
        warehouse, holder = r.warehouse, r.account
    else:  # staff
        if r.account is None and r.warehouse is None:
            raise ApiError(ErrorCode.INVALID_FIELD, "staff name `account` or `warehouse`")
        if r.account is not None:
            numbers = list(views.holder_receipts.get(r.account, ()))
            warehouse, holder = r.warehouse, None
        else:
            numbers = list(views.warehouse_receipts.get(r.warehouse or "", ()))
            warehouse, holder = None, None
    out = []
    after = r.after_number
    for number in sorted(numbers):  # by number: a cursor that holds while receipts come and go
        if after is not None and number <= after:
            continue
        receipt = views.receipts[number]
        if r.state == "live" and receipt["state"] not in LIVE_RECEIPT_STATES:
            continue
        if warehouse is not None and receipt["warehouse_id"] != warehouse:
            continue
        if holder is not None and receipt["holder"] != holder:
            continue
        out.append(dict(receipt))
        if len(out) >= r.limit:
            break
    return {"receipts": out}


def _deals(gateway: Gateway, conn: Connection, r: DealsRequest) -> dict[str, Any]:
    views = gateway.views
    key = _key(conn)
    viewer: str | None = None
    if key.role in ("trader", "bank"):  # a bank: the side of one member it supervises, read-only
        viewer = _member(gateway, conn, r.account)
        ids = list(views.member_deals.get(viewer, ()))
        warehouse = r.warehouse
    elif key.role == "operator":
        own = _operator_warehouse(gateway, conn)
        if r.warehouse is not None and r.warehouse != own:
            raise ApiError(ErrorCode.FORBIDDEN, "an operator sees only the deliveries at its own warehouse")
        if r.account is not None:
            raise ApiError(ErrorCode.INVALID_FIELD, "an operator lists its warehouse's deliveries: no `account`")
        ids = list(views.warehouse_deliveries.get(own, ())) if own is not None else []
        warehouse = None
    else:  # staff
        if r.account is None and r.warehouse is None:
            raise ApiError(ErrorCode.INVALID_FIELD, "staff name `account` or `warehouse`")
        if r.account is not None:
            ids = list(views.member_deals.get(r.account, ()))
            warehouse = r.warehouse
        else:
            ids = list(views.warehouse_deliveries.get(r.warehouse or "", ()))
            warehouse = None
    ids.sort(reverse=True)
    out = []
    for deal_id in ids:
        if r.before_deal_id is not None and deal_id >= r.before_deal_id:
            continue
        if r.status == "open" and not views.deal_is_open(deal_id):
            continue
        delivery = views.deliveries.get(deal_id)
        if warehouse is not None and (delivery is None or delivery["warehouse_id"] != warehouse):
            continue
        out.append(views.deal_info(deal_id, viewer))
        if len(out) >= r.limit:
            break
    return {"deals": out}


def _bank_files(gateway: Gateway, conn: Connection, r: BankFilesRequest) -> dict[str, Any]:
    views = gateway.views
    key = _key(conn)
    if key.role == "bank":
        if r.bank is not None and r.bank != key.subject:
            raise ApiError(ErrorCode.FORBIDDEN, "a bank sees only its own files")
        bank = str(key.subject)
    elif r.bank is None:
        raise ApiError(ErrorCode.INVALID_FIELD, "staff name the bank in `bank`")
    else:
        bank = r.bank
    members = {m for m, b in views.member_bank.items() if b == bank}
    instructions = [
        dict(w) for w in views.withdrawals.values() if w["status"] == "approved" and w["account"] in members
    ]
    files = sorted(views.bank_files.get(bank, {}).values(), key=lambda f: f["seq"])
    return {
        "bank": bank, "members": len(members), "files": [dict(f) for f in files[-1000:]],
        "statements": [dict(s) for s in views.bank_statements.get(bank, [])[-1000:]],
        "breaks": [dict(b) for b in views.breaks.values() if b["bank"] == bank],
        "instructions": instructions[:1000],
    }  # fmt: skip


# ------------------------------------------------------------ money: commands


def _request_withdrawal(gateway: Gateway, conn: Connection, r: RequestWithdrawalRequest) -> Submit:
    member = _member(gateway, conn, r.account)
    command = RequestWithdrawal(member, r.withdrawal_id, amount_to_fen(r.amount), _key(conn).actor)

    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        w = gateway.views.withdrawals.get(r.withdrawal_id)
        if w is None or w["account"] != member:
            raise ApiError(ErrorCode.INVALID_FIELD, "this withdrawal_id is already used; choose a fresh id")
        duplicate = any(e[0] == C_DUPLICATE for e in ack.events)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "duplicate": duplicate, "withdrawal": dict(w)}

    return Submit(command, finish)


def _approve_withdrawal(gateway: Gateway, conn: Connection, r: ApproveWithdrawalRequest) -> Submit:
    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        w = gateway.views.withdrawals[r.withdrawal_id]
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "duplicate": False, "withdrawal": dict(w)}

    return Submit(ApproveWithdrawal(r.withdrawal_id, _key(conn).actor), finish)


# ------------------------------------------------------------ goods: commands


def _deal_finish(gateway: Gateway, deal_id: int, viewer: str | None) -> Any:
    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "deal": gateway.views.deal_info(deal_id, viewer)}

    return finish


def _receipt_finish(gateway: Gateway, number: str) -> Any:
    def finish(ack: Ack) -> dict[str, Any]:
        _refused(ack)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "receipt": dict(gateway.views.receipts[number])}

    return finish


def _pay_deal(gateway: Gateway, conn: Connection, r: PayDealRequest) -> Submit:
    member = conn.account
    return Submit(PayDeal(r.deal_id, member), _deal_finish(gateway, r.deal_id, member))


def _resolve_dispute(gateway: Gateway, conn: Connection, r: ResolveDisputeRequest) -> Submit:
    amount_fen = amount_to_fen(r.amount) if r.amount is not None else 0
    command = ResolveDispute(r.deal_id, _key(conn).actor, r.resolution, amount_fen)
    return Submit(command, _deal_finish(gateway, r.deal_id, None))


def _confirm_receipt(gateway: Gateway, conn: Connection, r: ConfirmReceiptRequest) -> Submit:
    return Submit(ConfirmReceipt(r.number, conn.account), _receipt_finish(gateway, r.number))


def _request_load_out(gateway: Gateway, conn: Connection, r: RequestLoadOutRequest) -> Submit:
    return Submit(RequestLoadOut(r.number, conn.account), _receipt_finish(gateway, r.number))


def _register_receipt(gateway: Gateway, conn: Connection, r: RegisterReceiptRequest) -> Submit:
    command = RegisterReceipt(
        _key(conn).subject, r.number, r.holder, r.instrument, r.weight_kg, r.pieces, r.lot_numbers,
        r.certificate_no, r.calorific_kcal_per_kg, r.moisture_bps, r.sulphur_bps, r.steel_grade, r.dimensions,
        r.location,
    )  # fmt: skip
    return Submit(command, _receipt_finish(gateway, r.number))


def _confirm_delivery(gateway: Gateway, conn: Connection, r: ConfirmDeliveryRequest) -> Submit:
    command = ConfirmDelivery(r.deal_id, _key(conn).subject, r.actual_weight_kg, r.quality_pass, r.pieces)

    def finish(ack: Ack) -> dict[str, Any]:
        moved = any(e[0] == W_DELIVERY_STATE and e[2] == r.deal_id for e in ack.events)
        if not moved:
            _refused(ack)
        # Confirmed: a refusal after it is the settlement's (clearing refused the money leg); the
        # delivery stays delivery_confirmed and staff retry the settlement.
        settlement = None
        for e in ack.events:
            if e[0] == W_REJECTED:
                refusal = core_refusal(Ack(ack.seq, ack.ts_ns, [e]))
                assert refusal is not None
                settlement = f"{refusal[0].value}: {refusal[1]}"
        deal = gateway.views.deal_info(r.deal_id, None)
        return {"seq": ack.seq, "ts_ns": ack.ts_ns, "deal": deal, "settlement": settlement}

    return Submit(command, finish)


def _confirm_load_out(gateway: Gateway, conn: Connection, r: ConfirmLoadOutRequest) -> Submit:
    command = ConfirmLoadOut(r.number, _key(conn).subject, r.weight_kg)
    return Submit(command, _receipt_finish(gateway, r.number))


TRADER = frozenset({"trader"})
OPERATOR = frozenset({"operator"})
STAFF = frozenset({"staff"})

HANDLERS.register("balances", _balances, frozenset({"trader", "bank", "staff"}))
HANDLERS.register("withdrawals", _withdrawals, frozenset({"trader", "bank", "staff"}))
HANDLERS.register("receipts", _receipts, frozenset({"trader", "operator", "bank", "staff"}))
HANDLERS.register("deals", _deals, frozenset({"trader", "operator", "bank", "staff"}))
HANDLERS.register("bank_files", _bank_files, frozenset({"bank", "staff"}))
HANDLERS.register("request_withdrawal", _request_withdrawal, frozenset({"trader", "staff"}))
HANDLERS.register("approve_withdrawal", _approve_withdrawal, STAFF)
HANDLERS.register("pay_deal", _pay_deal, TRADER)
HANDLERS.register("resolve_dispute", _resolve_dispute, STAFF)
HANDLERS.register("confirm_receipt", _confirm_receipt, TRADER)
HANDLERS.register("request_load_out", _request_load_out, TRADER)
HANDLERS.register("register_receipt", _register_receipt, OPERATOR)
HANDLERS.register("confirm_delivery", _confirm_delivery, OPERATOR)
HANDLERS.register("confirm_load_out", _confirm_load_out, OPERATOR)
