"""Events of the clearing core.

Plain tuples like matching's events: the first item a kind code (clearing's
codes start at 101 so they never collide with matching's), the second the
sequence number of the command that caused it. Layouts, item by item:

    C_TRANSFER     (101, seq, transfer_id, code, debit_member, debit_account,
                    credit_member, credit_account, amount_fen, ref)
                    *_member is "" for an exchange account; *_account is an
                    account code (ACCOUNT_NAMES); code is a TransferCode
    C_HOLD         (102, seq, hold_id, member, account, amount_fen, purpose, ref)
                    a hold opened; purpose: order, deal_margin, deal_fee,
                    escrow, withdrawal
    C_HOLD_CHANGED (103, seq, hold_id, amount_fen)
                    an open hold drawn down (or topped up) to amount_fen; a
                    trade draws an order's hold down by its deal margin hold,
                    fee hold and released rest with ONE such event carrying
                    the amount after all three (the C_HOLD and C_TRANSFER
                    events before it give each step)
    C_HOLD_CLOSED  (104, seq, hold_id, state, settled_fen, released_fen, forfeited_fen)
                    state: HoldState.SETTLED, RELEASED or FORFEITED; the
                    amounts of the closing step
    C_REJECTED     (105, seq, reference, code, detail)
                    reference: the record, request, order, deal or file id
    C_DUPLICATE    (106, seq, reference, first_seq, first_code)
                    a repeated record, request or file id: nothing applied;
                    first_code 0 if the first was applied, else its reject code
    C_MEMBER       (107, seq, member, bank, sub_account)
    C_DEPOSIT      (108, seq, bank, record_id, member, amount_fen, value_date)
    C_WITHDRAWAL   (109, seq, request_id, member, amount_fen, status, actor, reason)
                    status: a WithdrawalStatus name
    C_DEAL         (110, seq, deal_id, instrument, price_ticks, quantity_lots,
                    notional_fen, buyer, seller, buyer_margin_fen, buyer_fee_fen,
                    seller_margin_fen, seller_fee_fen)
    C_DEAL_STATE   (111, seq, deal_id, state, amount_fen, detail)
                    state: escrowed (amount: escrow), settled (amount: paid to
                    the seller before fees), defaulted (amount: forfeited;
                    detail: "buyer"/"seller"), cancelled
    C_BREAK        (112, seq, break_id, bank, sub_account, member, reason,
                    bank_fen, exchange_fen, is_open)
                    is_open False: resolved (by staff or a later matching statement)
    C_DAY_CLOSED   (113, seq, business_date, member_count, total_fen)
    C_FILE         (114, seq, bank, file_id, file_kind, applied, duplicates)
    C_STATEMENT    (115, seq, bank, statement_id, value_date, lines, breaks)
    C_ORDER_REJECTED (116, seq, order_id, member, code, detail)
                    pre-trade risk refused an order (or an amend): the order
                    must not reach the book
"""

from __future__ import annotations

from typing import Any, Final

from clearing._ledger import HOLD_CHANGED_EVENT, HOLD_CLOSED_EVENT, HOLD_EVENT, TRANSFER_EVENT

__all__ = [
    "CLEARING_EVENT_FIELDS",
    "CLEARING_EVENT_NAMES",
    "C_BREAK",
    "C_DAY_CLOSED",
    "C_DEAL",
    "C_DEAL_STATE",
    "C_DEPOSIT",
    "C_DUPLICATE",
    "C_FILE",
    "C_HOLD",
    "C_HOLD_CHANGED",
    "C_HOLD_CLOSED",
    "C_MEMBER",
    "C_ORDER_REJECTED",
    "C_REJECTED",
    "C_STATEMENT",
    "C_TRANSFER",
    "C_WITHDRAWAL",
    "clearing_event_to_dict",
]

C_TRANSFER: Final = TRANSFER_EVENT
C_HOLD: Final = HOLD_EVENT
C_HOLD_CHANGED: Final = HOLD_CHANGED_EVENT
C_HOLD_CLOSED: Final = HOLD_CLOSED_EVENT
C_REJECTED: Final = 105
C_DUPLICATE: Final = 106
C_MEMBER: Final = 107
C_DEPOSIT: Final = 108
C_WITHDRAWAL: Final = 109
C_DEAL: Final = 110
C_DEAL_STATE: Final = 111
C_BREAK: Final = 112
C_DAY_CLOSED: Final = 113
C_FILE: Final = 114
C_STATEMENT: Final = 115
C_ORDER_REJECTED: Final = 116

CLEARING_EVENT_FIELDS: dict[int, tuple[str, ...]] = {
    C_TRANSFER: (
        "kind",
        "seq",
        "transfer_id",
        "code",
        "debit_member",
        "debit_account",
        "credit_member",
        "credit_account",
        "amount_fen",
        "ref",
    ),
    C_HOLD: ("kind", "seq", "hold_id", "member", "account", "amount_fen", "purpose", "ref"),
    C_HOLD_CHANGED: ("kind", "seq", "hold_id", "amount_fen"),
    C_HOLD_CLOSED: ("kind", "seq", "hold_id", "state", "settled_fen", "released_fen", "forfeited_fen"),
    C_REJECTED: ("kind", "seq", "reference", "code", "detail"),
    C_DUPLICATE: ("kind", "seq", "reference", "first_seq", "first_code"),
    C_MEMBER: ("kind", "seq", "member", "bank", "sub_account"),
    C_DEPOSIT: ("kind", "seq", "bank", "record_id", "member", "amount_fen", "value_date"),
    C_WITHDRAWAL: ("kind", "seq", "request_id", "member", "amount_fen", "status", "actor", "reason"),
    C_DEAL: (
        "kind",
        "seq",
        "deal_id",
        "instrument",
        "price_ticks",
        "quantity_lots",
        "notional_fen",
        "buyer",
        "seller",
        "buyer_margin_fen",
        "buyer_fee_fen",
        "seller_margin_fen",
        "seller_fee_fen",
    ),
    C_DEAL_STATE: ("kind", "seq", "deal_id", "state", "amount_fen", "detail"),
    C_BREAK: (
        "kind",
        "seq",
        "break_id",
        "bank",
        "sub_account",
        "member",
        "reason",
        "bank_fen",
        "exchange_fen",
        "is_open",
    ),
    C_DAY_CLOSED: ("kind", "seq", "business_date", "member_count", "total_fen"),
    C_FILE: ("kind", "seq", "bank", "file_id", "file_kind", "applied", "duplicates"),
    C_STATEMENT: ("kind", "seq", "bank", "statement_id", "value_date", "lines", "breaks"),
    C_ORDER_REJECTED: ("kind", "seq", "order_id", "member", "code", "detail"),
}

CLEARING_EVENT_NAMES: dict[int, str] = {
    C_TRANSFER: "transfer",
    C_HOLD: "hold",
    C_HOLD_CHANGED: "hold_changed",
    C_HOLD_CLOSED: "hold_closed",
    C_REJECTED: "clearing_rejected",
    C_DUPLICATE: "clearing_duplicate",
    C_MEMBER: "member",
    C_DEPOSIT: "deposit",
    C_WITHDRAWAL: "withdrawal",
    C_DEAL: "deal",
    C_DEAL_STATE: "deal_state",
    C_BREAK: "break",
    C_DAY_CLOSED: "day_closed",
    C_FILE: "bank_file",
    C_STATEMENT: "statement",
    C_ORDER_REJECTED: "order_rejected_by_risk",
}


def clearing_event_to_dict(event: tuple[Any, ...]) -> dict[str, Any]:
    """The event with its items named (kind as its name), for the edges."""
    fields = CLEARING_EVENT_FIELDS[event[0]]
    assert len(fields) == len(event), event
    out = dict(zip(fields, event, strict=False))
    out["kind"] = CLEARING_EVENT_NAMES[event[0]]
    return out
