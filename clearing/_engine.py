"""The clearing engine: members, bank money in and out, pre-trade holds,
deals' money, reconciliation breaks and the day's close.

Pure and deterministic: ``apply(command, seq, ts_ns, out)`` validates a
clearing command and appends events (see ``_events``); the trading flow
enters through ``freeze_order`` / ``reserve_amend`` (before the matching
engine sees an order) and ``absorb`` (the matching events after it), the
delivery flow through ``escrow_payment``, ``settle_deal``, ``default_deal``
and ``cancel_deal``. No clock, no I/O; `ts_ns` is accepted for symmetry with
the other cores and not used.

Matching accounts are clearing members: the account id of an order is the
member whose money it holds.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from clearing._commands import (
    ApproveWithdrawal,
    BankBalance,
    BankDeposit,
    BankFileImport,
    CancelWithdrawal,
    ClearingCommand,
    CloseDay,
    CloseStatement,
    RegisterMember,
    RequestWithdrawal,
    ResolveBreak,
    WithdrawalResult,
)
from clearing._errors import ClearingCode
from clearing._events import (
    C_BREAK,
    C_DAY_CLOSED,
    C_DEAL,
    C_DEAL_STATE,
    C_DEPOSIT,
    C_DUPLICATE,
    C_FILE,
    C_MEMBER,
    C_ORDER_REJECTED,
    C_REJECTED,
    C_STATEMENT,
    C_WITHDRAWAL,
)
from clearing._ledger import (
    AVAILABLE,
    BANK_CUSTODY,
    EXCHANGE,
    FEE_INCOME,
    FROZEN_ESCROW,
    FROZEN_MARGIN,
    HOLD_EVENT,
    MAX_AMOUNT_FEN,
    RISK_FUND,
    TRANSFER_EVENT,
    Account,
    Hold,
    HoldState,
    Ledger,
    TransferCode,
)
from clearing._reconcile import AMOUNT_DIFFERS, MISSING_AT_BANK, reconcile
from clearing._risk import BPS, InstrumentRisk, forfeit_split, per_lot_hold_fen
from matching import ACCEPTED, AMENDED, BOOK, BUY, CANCELLED, SELL, TRADE, Instrument

__all__ = [
    "MAX_ID_CHARS",
    "RECORD_BALANCE",
    "RECORD_DEPOSIT",
    "RECORD_RESULT",
    "ClearingConfig",
    "ClearingEngine",
    "Deal",
    "DealState",
    "OrderHold",
    "Withdrawal",
    "WithdrawalStatus",
    "valid_date",
    "valid_id",
]

MAX_ID_CHARS: Final = 64
_FORBIDDEN_ID_CHARS: Final = frozenset(' ,|"\t')

# Record tags of BankFileImport.records_json (see clearing.bankfiles).
RECORD_DEPOSIT: Final = "D"  # ["D", record_id, sub_account, amount_fen, value_date]
RECORD_RESULT: Final = "R"  # ["R", record_id, request_id, sub_account, amount_fen, ok, reason]
RECORD_BALANCE: Final = "B"  # ["B", sub_account, balance_fen, value_date]


def valid_id(text: str) -> bool:
    """1 to 64 printable characters, none of space, comma, bar, quote or tab."""
    return 0 < len(text) <= MAX_ID_CHARS and text.isprintable() and _FORBIDDEN_ID_CHARS.isdisjoint(text)


def valid_date(text: str) -> bool:
    """A real calendar date written YYYY-MM-DD."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-" or not (text[:4] + text[5:7] + text[8:]).isdigit():
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ClearingConfig:
    """Rules and limits of the clearing core. Each limit is enforced and
    answered with a reject, never a crash."""

    withdrawal_approval_threshold_fen: int = 100_000_000  # above 1,000,000.00 CNY a second staff user approves
    risk_fund_share_bps: int = 2_000  # 20 % of a forfeited margin goes to the risk fund
    max_members: int = 100_000
    max_record_amount_fen: int = 10_000_000_000_000  # 100 billion CNY per deposit or withdrawal
    max_pending_withdrawals_per_member: int = 16
    max_records_per_file: int = 200_000
    max_closings_kept: int = 10  # closed business days whose balances stay available for reconciliation

    def to_list(self) -> list[int]:
        return [
            self.withdrawal_approval_threshold_fen,
            self.risk_fund_share_bps,
            self.max_members,
            self.max_record_amount_fen,
            self.max_pending_withdrawals_per_member,
            self.max_records_per_file,
            self.max_closings_kept,
        ]


class WithdrawalStatus:
    PENDING_APPROVAL: Final = "pending_approval"
    APPROVED: Final = "approved"  # an instruction to the bank
    PAID: Final = "paid"
    REJECTED_BY_BANK: Final = "rejected_by_bank"
    CANCELLED: Final = "cancelled"


class DealState:
    OPEN: Final = "open"
    ESCROWED: Final = "escrowed"
    SETTLED: Final = "settled"
    DEFAULTED: Final = "defaulted"
    CANCELLED: Final = "cancelled"


_NO_PAYOUTS: Final[list[tuple[int, Account, int]]] = []  # Ledger.close: release what is left


class OrderHold:
    """The money held for one open order: `open_lots` x `per_lot_fen` in hold `hold_id`."""

    __slots__ = (
        "filled_lots",
        "hold_id",
        "member",
        "open_lots",
        "order_id",
        "per_lot_fen",
        "price_ticks",
        "risk",
        "side",
        "accepted",
    )

    def __init__(
        self,
        order_id: int,
        member: str,
        risk: InstrumentRisk,
        side: int,
        price_ticks: int,
        open_lots: int,
        per_lot_fen: int,
        hold_id: int,
    ) -> None:
        self.order_id = order_id
        self.member = member
        self.risk = risk
        self.side = side
        self.price_ticks = price_ticks
        self.open_lots = open_lots
        self.filled_lots = 0
        self.per_lot_fen = per_lot_fen
        self.hold_id = hold_id  # 0 when the hold is zero (a zero margin rate)
        self.accepted = False

    def to_list(self) -> list[object]:
        return [
            self.order_id,
            self.member,
            self.risk.symbol,
            self.side,
            self.price_ticks,
            self.open_lots,
            self.filled_lots,
            self.per_lot_fen,
            self.hold_id,
            self.accepted,
        ]


class Deal:
    """The money of one trade until delivery settles it (or a default or a cancel ends it)."""

    __slots__ = (
        "buyer",
        "buyer_fee_fen",
        "buyer_fee_hold",
        "buyer_margin_fen",
        "buyer_margin_hold",
        "deal_id",
        "escrow_fen",
        "escrow_hold",
        "notional_fen",
        "price_ticks",
        "quantity_lots",
        "seller",
        "seller_fee_fen",
        "seller_margin_fen",
        "seller_margin_hold",
        "state",
        "symbol",
    )

    def __init__(
        self,
        deal_id: int,
        symbol: str,
        price_ticks: int,
        quantity_lots: int,
        notional_fen: int,
        buyer: str,
        seller: str,
    ) -> None:
        self.deal_id = deal_id
        self.symbol = symbol
        self.price_ticks = price_ticks
        self.quantity_lots = quantity_lots
        self.notional_fen = notional_fen
        self.buyer = buyer
        self.seller = seller
        self.buyer_margin_fen = 0
        self.buyer_margin_hold = 0
        self.buyer_fee_fen = 0
        self.buyer_fee_hold = 0
        self.seller_margin_fen = 0
        self.seller_margin_hold = 0
        self.seller_fee_fen = 0
        self.escrow_fen = 0
        self.escrow_hold = 0
        self.state: str = DealState.OPEN

    _FIELDS: Final = (
        "deal_id",
        "symbol",
        "price_ticks",
        "quantity_lots",
        "notional_fen",
        "buyer",
        "seller",
        "buyer_margin_fen",
        "buyer_margin_hold",
        "buyer_fee_fen",
        "buyer_fee_hold",
        "seller_margin_fen",
        "seller_margin_hold",
        "seller_fee_fen",
        "escrow_fen",
        "escrow_hold",
        "state",
    )

    def to_list(self) -> list[object]:
        """The fields in ``_FIELDS`` order; written out, not read by name: a snapshot exports every
        deal of the day."""
        return [
            self.deal_id, self.symbol, self.price_ticks, self.quantity_lots, self.notional_fen, self.buyer,
            self.seller, self.buyer_margin_fen, self.buyer_margin_hold, self.buyer_fee_fen, self.buyer_fee_hold,
            self.seller_margin_fen, self.seller_margin_hold, self.seller_fee_fen, self.escrow_fen, self.escrow_hold,
            self.state,
        ]  # fmt: skip

    @classmethod
    def from_list(cls, items: list[Any]) -> Deal:
        deal = cls(*items[:7])
        for name, value in zip(Deal._FIELDS[7:], items[7:], strict=True):
            setattr(deal, name, value)
        return deal


class Withdrawal:
    __slots__ = (
        "amount_fen",
        "approved_by",
        "hold_id",
        "instructed_after",
        "member",
        "request_id",
        "requested_by",
        "status",
    )

    def __init__(self, request_id: str, member: str, amount_fen: int, requested_by: str, hold_id: int) -> None:
        self.request_id = request_id
        self.member = member
        self.amount_fen = amount_fen
        self.requested_by = requested_by
        self.approved_by = ""
        self.hold_id = hold_id
        self.status: str = WithdrawalStatus.PENDING_APPROVAL
        # the last closed day when it was approved ("" before the first close): the bank is asked to pay
        # it on the next business day, which is the value date reconciliation gives its payment
        self.instructed_after = ""

    def to_list(self) -> list[object]:
        return [
            self.request_id,
            self.member,
            self.amount_fen,
            self.requested_by,
            self.approved_by,
            self.hold_id,
            self.status,
            self.instructed_after,
        ]


Event = tuple[Any, ...]
_OK: Final = 0


class ClearingEngine:
    def __init__(self, config: ClearingConfig | None = None) -> None:
        self.config = config if config is not None else ClearingConfig()
        self.ledger = Ledger()
        self.members: dict[str, tuple[str, str]] = {}  # member -> (bank, sub_account)
        self.sub_accounts: dict[tuple[str, str], str] = {}  # (bank, sub_account) -> member
        self.instruments: dict[str, InstrumentRisk] = {}
        self.orders: dict[int, OrderHold] = {}
        self.deals: dict[int, Deal] = {}
        self.closed_deals: dict[int, str] = {}  # deal id -> final state
        self.withdrawals: dict[str, Withdrawal] = {}
        self.pending_by_member: dict[str, int] = {}  # withdrawals in progress (pending approval or approved)
        self.seen: dict[str, tuple[int, int]] = {}  # "r|bank|record" / "q|request" / "f|bank|file" -> (seq, code)
        self.file_hashes: dict[str, str] = {}  # "bank|file" -> sha256
        self.statements: dict[str, dict[str, int]] = {}  # "bank|statement|date" -> sub_account -> balance
        # open breaks: id -> [bank, sub, member, reason, bank_fen, ours, value date of the statement]
        self.breaks: dict[int, list[Any]] = {}
        self.breaks_by_member: dict[str, int] = {}  # member -> open breaks
        self.next_break_id = 1
        self.closings: dict[str, dict[str, list[int]]] = {}  # date -> member -> [available, frozen]
        # closed date -> member -> signed fen: what the close of that date saw differently from the bank's
        # books for that value date (bank money booked after the close with a value date on or before it,
        # less deposits booked before the close with a later value date); no zero entries
        self.late: dict[str, dict[str, int]] = {}
        # value date after the last close -> member -> fen of the deposits with that value date booked so far
        self.forward: dict[str, dict[str, int]] = {}
        self.last_closed_date = ""
        self._amending = 0  # the order reserve_amend topped up, trimmed by the next absorb
        self._handlers: dict[type, Callable[[Any, int, list[Event]], None]] = {
            RegisterMember: self._register,
            BankDeposit: self._deposit,
            RequestWithdrawal: self._request_withdrawal,
            ApproveWithdrawal: self._approve_withdrawal,
            CancelWithdrawal: self._cancel_withdrawal,
            WithdrawalResult: self._withdrawal_result,
            BankBalance: self._bank_balance,
            CloseStatement: self._close_statement,
            ResolveBreak: self._resolve_break,
            CloseDay: self._close_day,
            BankFileImport: self._file_import,
        }

    # ------------------------------------------------------------------ entry

    def apply(self, command: ClearingCommand, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Apply one clearing command with sequence number `seq`, appending its events."""
        del ts_ns
        self._handlers[type(command)](command, seq, out)

    def list_instrument(self, inst: Instrument) -> None:
        """Take an instrument's money parameters (call when matching lists it)."""
        self.instruments[inst.symbol] = InstrumentRisk.of(inst)

    @staticmethod
    def _reject(out: list[Event], seq: int, reference: str, code: int, detail: str = "") -> None:
        out.append((C_REJECTED, seq, reference, code, detail))

    def _first(self, key: str, seq: int, reference: str, out: list[Event]) -> bool:
        """True when `key` was seen before: answers with a C_DUPLICATE."""
        first = self.seen.get(key)
        if first is None:
            return False
        out.append((C_DUPLICATE, seq, reference, first[0], first[1]))
        return True

    # ---------------------------------------------------------------- members

    def _register(self, c: RegisterMember, seq: int, out: list[Event]) -> None:
        if not (valid_id(c.member) and valid_id(c.bank) and valid_id(c.sub_account)):
            self._reject(out, seq, c.member, ClearingCode.BAD_MEMBER)
        elif c.member in self.members:
            self._reject(out, seq, c.member, ClearingCode.MEMBER_EXISTS)
        elif (c.bank, c.sub_account) in self.sub_accounts:
            self._reject(out, seq, c.member, ClearingCode.SUB_ACCOUNT_TAKEN)
        elif len(self.members) >= self.config.max_members:
            self._reject(out, seq, c.member, ClearingCode.TOO_MANY_MEMBERS, f"limit {self.config.max_members}")
        else:
            self.members[c.member] = (c.bank, c.sub_account)
            self.sub_accounts[(c.bank, c.sub_account)] = c.member
            self.ledger.open_member(c.member)
            out.append((C_MEMBER, seq, c.member, c.bank, c.sub_account))

    # --------------------------------------------------------------- deposits

    def _check_deposit(self, bank: str, record_id: str, member: str, amount: int, value_date: str) -> tuple[int, str]:
        if not valid_id(record_id):
            return ClearingCode.BAD_RECORD_ID, ""
        if member not in self.members:
            return ClearingCode.UNKNOWN_MEMBER, member
        if self.members[member][0] != bank:
            return ClearingCode.WRONG_BANK, member
        if type(amount) is not int or amount <= 0:
            return ClearingCode.BAD_AMOUNT, str(amount)
        if amount > self.config.max_record_amount_fen:
            return ClearingCode.AMOUNT_ABOVE_LIMIT, f"limit {self.config.max_record_amount_fen} fen"
        if not valid_date(value_date):
            return ClearingCode.BAD_DATE, value_date
        return _OK, ""

    def _do_deposit(
        self, bank: str, record_id: str, member: str, amount: int, value_date: str, seq: int, out: list[Event]
    ) -> None:
        self.ledger.transfer_many(
            [(TransferCode.DEPOSIT, (EXCHANGE, BANK_CUSTODY), (member, AVAILABLE), amount, f"dep:{bank}:{record_id}")],
            seq,
            out,
        )
        self.seen[f"r|{bank}|{record_id}"] = (seq, _OK)
        out.append((C_DEPOSIT, seq, bank, record_id, member, amount, value_date))
        if value_date > self.last_closed_date:
            ahead = self.forward.setdefault(value_date, {})
            ahead[member] = ahead.get(member, 0) + amount
        self._booked_late(member, amount, value_date, seq, out)

    def _deposit(self, c: BankDeposit, seq: int, out: list[Event]) -> None:
        key = f"r|{c.bank}|{c.record_id}"
        if self._first(key, seq, c.record_id, out):
            return
        code, detail = self._check_deposit(c.bank, c.record_id, c.member, c.amount_fen, c.value_date)
        if code:
            if valid_id(c.record_id):
                self.seen[key] = (seq, code)
            self._reject(out, seq, c.record_id, code, detail)
            return
        self._do_deposit(c.bank, c.record_id, c.member, c.amount_fen, c.value_date, seq, out)

    # ------------------------------------------------------------ withdrawals

    def _request_withdrawal(self, c: RequestWithdrawal, seq: int, out: list[Event]) -> None:
        key = f"q|{c.request_id}"
        if self._first(key, seq, c.request_id, out):
            return
        code, detail = _OK, ""
        member = c.member
        if not valid_id(c.request_id) or not valid_id(c.requested_by):
            code = ClearingCode.BAD_RECORD_ID
        elif member not in self.members:
            code, detail = ClearingCode.UNKNOWN_MEMBER, member
        elif type(c.amount_fen) is not int or c.amount_fen <= 0:
            code, detail = ClearingCode.BAD_AMOUNT, str(c.amount_fen)
        elif c.amount_fen > self.config.max_record_amount_fen:
            code, detail = ClearingCode.AMOUNT_ABOVE_LIMIT, f"limit {self.config.max_record_amount_fen} fen"
        elif self.breaks_by_member.get(member, 0):
            code = ClearingCode.OPEN_BREAK
        elif self.pending_by_member.get(member, 0) >= self.config.max_pending_withdrawals_per_member:
            code, detail = ClearingCode.TOO_MANY_PENDING, f"limit {self.config.max_pending_withdrawals_per_member}"
        else:
            available = self.ledger.available(member)
            if available < c.amount_fen:
                code, detail = ClearingCode.INSUFFICIENT_FUNDS, f"shortfall {c.amount_fen - available} fen"
        if code:
            if valid_id(c.request_id):
                self.seen[key] = (seq, code)
            self._reject(out, seq, c.request_id, code, detail)
            return
        hold_id = self.ledger.freeze(member, FROZEN_ESCROW, c.amount_fen, "withdrawal", f"wd:{c.request_id}", seq, out)
        assert hold_id > 0
        w = Withdrawal(c.request_id, member, c.amount_fen, c.requested_by, hold_id)
        self.withdrawals[c.request_id] = w
        self.pending_by_member[member] = self.pending_by_member.get(member, 0) + 1
        self.seen[key] = (seq, _OK)
        out.append((C_WITHDRAWAL, seq, w.request_id, member, w.amount_fen, w.status, c.requested_by, ""))
        if c.amount_fen <= self.config.withdrawal_approval_threshold_fen:
            w.status = WithdrawalStatus.APPROVED
            w.approved_by = c.requested_by
            w.instructed_after = self.last_closed_date
            out.append(
                (
                    C_WITHDRAWAL,
                    seq,
                    w.request_id,
                    member,
                    w.amount_fen,
                    w.status,
                    c.requested_by,
                    "below the approval threshold",
                )
            )

    def _approve_withdrawal(self, c: ApproveWithdrawal, seq: int, out: list[Event]) -> None:
        w = self.withdrawals.get(c.request_id)
        if w is None:
            self._reject(out, seq, c.request_id, ClearingCode.UNKNOWN_REQUEST)
        elif w.status != WithdrawalStatus.PENDING_APPROVAL:
            self._reject(out, seq, c.request_id, ClearingCode.BAD_REQUEST_STATE, w.status)
        elif not valid_id(c.approver):
            self._reject(out, seq, c.request_id, ClearingCode.BAD_RECORD_ID, "approver")
        elif c.approver == w.requested_by:
            self._reject(out, seq, c.request_id, ClearingCode.SAME_APPROVER)
        else:
            w.status = WithdrawalStatus.APPROVED
            w.approved_by = c.approver
            w.instructed_after = self.last_closed_date
            out.append((C_WITHDRAWAL, seq, w.request_id, w.member, w.amount_fen, w.status, c.approver, ""))

    def _cancel_withdrawal(self, c: CancelWithdrawal, seq: int, out: list[Event]) -> None:
        w = self.withdrawals.get(c.request_id)
        if w is None:
            self._reject(out, seq, c.request_id, ClearingCode.UNKNOWN_REQUEST)
        elif w.status != WithdrawalStatus.PENDING_APPROVAL:
            self._reject(out, seq, c.request_id, ClearingCode.BAD_REQUEST_STATE, w.status)
        else:
            self.ledger.release(w.hold_id, seq, out)
            self._end_withdrawal(w, WithdrawalStatus.CANCELLED, c.cancelled_by, "", seq, out)

    def _end_withdrawal(self, w: Withdrawal, status: str, actor: str, reason: str, seq: int, out: list[Event]) -> None:
        w.status = status
        w.hold_id = 0
        self.pending_by_member[w.member] -= 1
        if not self.pending_by_member[w.member]:
            del self.pending_by_member[w.member]
        out.append((C_WITHDRAWAL, seq, w.request_id, w.member, w.amount_fen, status, actor, reason))

    def _check_result(
        self, bank: str, record_id: str, request_id: str, sub_account: str | None, amount: int | None
    ) -> tuple[int, str]:
        if not valid_id(record_id):
            return ClearingCode.BAD_RECORD_ID, ""
        w = self.withdrawals.get(request_id)
        if w is None:
            return ClearingCode.UNKNOWN_REQUEST, request_id
        if w.status != WithdrawalStatus.APPROVED:
            return ClearingCode.BAD_REQUEST_STATE, f"{request_id} is {w.status}"
        member_bank, member_sub = self.members[w.member]
        if member_bank != bank:
            return ClearingCode.WRONG_BANK, request_id
        if sub_account is not None and sub_account != member_sub:
            return ClearingCode.UNKNOWN_MEMBER, f"{request_id}: sub-account {sub_account} is not the member's"
        if amount is not None and amount != w.amount_fen:
            return ClearingCode.BAD_AMOUNT, f"{request_id}: {amount} fen, instructed {w.amount_fen} fen"
        return _OK, ""

    def _do_result(
        self, bank: str, record_id: str, request_id: str, ok: bool, reason: str, seq: int, out: list[Event]
    ) -> None:
        w = self.withdrawals[request_id]
        if ok:
            self.ledger.settle(w.hold_id, [(TransferCode.WITHDRAWAL, (EXCHANGE, BANK_CUSTODY), w.amount_fen)], seq, out)
            self._end_withdrawal(w, WithdrawalStatus.PAID, bank, reason, seq, out)
            later = [d for d in self.closings if d > w.instructed_after]
            if later:  # paid on the day it was instructed for, a day already closed
                self._booked_late(w.member, -w.amount_fen, min(later), seq, out)
        else:
            self.ledger.release(w.hold_id, seq, out)
            self._end_withdrawal(w, WithdrawalStatus.REJECTED_BY_BANK, bank, reason, seq, out)
        self.seen[f"r|{bank}|{record_id}"] = (seq, _OK)

    def _withdrawal_result(self, c: WithdrawalResult, seq: int, out: list[Event]) -> None:
        key = f"r|{c.bank}|{c.record_id}"
        if self._first(key, seq, c.record_id, out):
            return
        code, detail = self._check_result(c.bank, c.record_id, c.request_id, None, None)
        if code:
            if valid_id(c.record_id):
                self.seen[key] = (seq, code)
            self._reject(out, seq, c.record_id, code, detail)
            return
        self._do_result(c.bank, c.record_id, c.request_id, bool(c.ok), c.reason, seq, out)

    def pending_instructions(self, bank: str = "") -> list[Withdrawal]:
        """Approved withdrawals the bank has not answered yet (of `bank`, or all), by request id."""
        return [
            w
            for rid, w in sorted(self.withdrawals.items())
            if w.status == WithdrawalStatus.APPROVED and (not bank or self.members[w.member][0] == bank)
        ]

    # --------------------------------------------------------- reconciliation

    def _bank_balance(self, c: BankBalance, seq: int, out: list[Event]) -> None:
        if not (valid_id(c.bank) and valid_id(c.statement_id) and valid_id(c.sub_account)):
            self._reject(out, seq, c.statement_id, ClearingCode.BAD_RECORD_ID)
        elif type(c.balance_fen) is not int or not (0 <= c.balance_fen <= MAX_AMOUNT_FEN):
            self._reject(out, seq, c.statement_id, ClearingCode.BAD_AMOUNT, str(c.balance_fen))
        elif not valid_date(c.value_date):
            self._reject(out, seq, c.statement_id, ClearingCode.BAD_DATE, c.value_date)
        else:
            lines = self.statements.setdefault(f"{c.bank}|{c.statement_id}|{c.value_date}", {})
            if len(lines) >= self.config.max_members and c.sub_account not in lines:
                self._reject(out, seq, c.statement_id, ClearingCode.TOO_MANY_RECORDS)
                return
            lines[c.sub_account] = c.balance_fen

    def _close_statement(self, c: CloseStatement, seq: int, out: list[Event]) -> None:
        key = f"{c.bank}|{c.statement_id}|{c.value_date}"
        lines = self.statements.get(key, {})
        if c.value_date not in self.closings:
            self._reject(out, seq, c.statement_id, ClearingCode.UNKNOWN_STATEMENT, c.value_date)
        elif len(lines) != c.record_count:
            self._reject(
                out,
                seq,
                c.statement_id,
                ClearingCode.BAD_FILE_RECORDS,
                f"{len(lines)} balances received, statement says {c.record_count}",
            )
        else:
            self.statements.pop(key, None)
            self._reconcile(c.bank, c.statement_id, c.value_date, lines, seq, out)

    def _exchange_fen(self, value_date: str, member: str) -> int | None:
        """`member`'s money as the bank's books should show it at the end of
        the closed day `value_date`: the close's available + frozen, corrected
        by the bank money the close saw differently (see ``late``); None when
        the member has no closing balance that day."""
        balances = self.closings[value_date].get(member)
        if balances is None:
            return None
        fen = balances[0] + balances[1] + self.late.get(value_date, {}).get(member, 0)
        assert fen >= 0, (value_date, member, fen)
        return fen

    def _booked_late(self, member: str, amount_fen: int, value_date: str, seq: int, out: list[Event]) -> None:
        """Bank money of `member` (a deposit, or a paid withdrawal as a
        negative amount) with value date `value_date` is booked now: every
        kept day closed on or after that date did not see it. An open break of
        the member from such a day's statement that this explains is closed."""
        for date in self.closings:
            if date >= value_date:
                moved = self.late.setdefault(date, {})
                fen = moved.get(member, 0) + amount_fen
                if fen:
                    moved[member] = fen
                else:
                    del moved[member]
                    if not moved:
                        del self.late[date]
        if not self.breaks_by_member.get(member, 0):
            return
        for break_id in sorted(self.breaks):
            _, _, who, reason, bank_fen, _, date = self.breaks[break_id]
            if who != member or reason not in (AMOUNT_DIFFERS, MISSING_AT_BANK) or date < value_date:
                continue
            if date in self.closings and self._exchange_fen(date, member) == bank_fen:
                self._close_break(break_id, seq, out)

    def _reconcile(
        self, bank: str, statement_id: str, value_date: str, lines: dict[str, int], seq: int, out: list[Event]
    ) -> None:
        closing = self.closings[value_date]
        ledger_balances: dict[str, int] = {}
        for member in closing:
            fen = self._exchange_fen(value_date, member)
            assert fen is not None
            ledger_balances[member] = fen
        at_bank = {m: sub for m, (b, sub) in self.members.items() if b == bank and m in closing}
        found = reconcile(bank, lines, self.sub_accounts, at_bank, ledger_balances)
        # the statement supersedes the bank's open breaks of its day and earlier days, never of a later day
        for break_id in sorted(self.breaks):
            item = self.breaks[break_id]
            if item[0] == bank and item[6] <= value_date:
                self._close_break(break_id, seq, out)
        for b in found:
            break_id = self.next_break_id
            self.next_break_id += 1
            self.breaks[break_id] = [bank, b.sub_account, b.member, b.reason, b.bank_fen, b.exchange_fen, value_date]
            if b.member:
                self.breaks_by_member[b.member] = self.breaks_by_member.get(b.member, 0) + 1
            out.append(
                (C_BREAK, seq, break_id, bank, b.sub_account, b.member, b.reason, b.bank_fen, b.exchange_fen, True)
            )
        out.append((C_STATEMENT, seq, bank, statement_id, value_date, len(lines), len(found)))

    def _close_break(self, break_id: int, seq: int, out: list[Event]) -> None:
        bank, sub, member, reason, bank_fen, ours, _ = self.breaks.pop(break_id)
        if member:
            self.breaks_by_member[member] -= 1
            if not self.breaks_by_member[member]:
                del self.breaks_by_member[member]
        out.append((C_BREAK, seq, break_id, bank, sub, member, reason, bank_fen, ours, False))

    def _resolve_break(self, c: ResolveBreak, seq: int, out: list[Event]) -> None:
        if c.break_id not in self.breaks:
            code = ClearingCode.BREAK_RESOLVED if 0 < c.break_id < self.next_break_id else ClearingCode.UNKNOWN_BREAK
            self._reject(out, seq, str(c.break_id), code)
        elif not valid_id(c.resolved_by):
            self._reject(out, seq, str(c.break_id), ClearingCode.BAD_RECORD_ID, "resolved_by")
        else:
            self._close_break(c.break_id, seq, out)

    # -------------------------------------------------------------------- day

    def _close_day(self, c: CloseDay, seq: int, out: list[Event]) -> None:
        if not valid_date(c.business_date):
            self._reject(out, seq, c.business_date, ClearingCode.BAD_DATE)
            return
        if c.business_date <= self.last_closed_date:
            self._reject(
                out, seq, c.business_date, ClearingCode.DAY_ALREADY_CLOSED, f"last closed {self.last_closed_date}"
            )
            return
        balances = self.ledger.balances
        closing = {m: [b[AVAILABLE], b[FROZEN_MARGIN] + b[FROZEN_ESCROW]] for m, b in sorted(balances.items())}
        self.closings[c.business_date] = closing
        self.last_closed_date = c.business_date
        # deposits booked with a later value date are in this close, not in the bank's books of the day
        ahead: dict[str, int] = {}
        for value_date in sorted(self.forward):
            moved = self.forward[value_date]
            if value_date > c.business_date:
                for member, fen in moved.items():
                    ahead[member] = ahead.get(member, 0) - fen
            else:
                del self.forward[value_date]
        if ahead:
            self.late[c.business_date] = ahead
        while len(self.closings) > self.config.max_closings_kept:
            oldest = min(self.closings)
            del self.closings[oldest]
            self.late.pop(oldest, None)
        total = sum(a + f for a, f in closing.values())
        out.append((C_DAY_CLOSED, seq, c.business_date, len(closing), total))

    def opening_balances(self, business_date: str) -> dict[str, list[int]]:
        """Each member's [available, frozen] at the start of `business_date`:
        the closing of the latest closed day before it (empty if none)."""
        earlier = [d for d in self.closings if d < business_date]
        return {m: list(b) for m, b in self.closings[max(earlier)].items()} if earlier else {}

    # ------------------------------------------------------------------ files

    def _file_import(self, c: BankFileImport, seq: int, out: list[Event]) -> None:
        key = f"f|{c.bank}|{c.file_id}"
        hash_key = f"{c.bank}|{c.file_id}"
        known = self.file_hashes.get(hash_key)
        if known is not None:
            if known == c.file_sha256:
                self._first(key, seq, c.file_id, out)
            else:
                self._reject(out, seq, c.file_id, ClearingCode.FILE_ID_REUSED)
            return
        if not (valid_id(c.bank) and valid_id(c.file_id)):
            self._reject(out, seq, c.file_id, ClearingCode.BAD_RECORD_ID)
            return
        try:
            records = orjson.loads(c.records_json)
        except orjson.JSONDecodeError:
            self._reject(out, seq, c.file_id, ClearingCode.BAD_FILE_RECORDS, "records are not JSON")
            return
        if not isinstance(records, list):
            self._reject(out, seq, c.file_id, ClearingCode.BAD_FILE_RECORDS, "records must be a list")
            return
        if len(records) > self.config.max_records_per_file:
            self._reject(
                out, seq, c.file_id, ClearingCode.TOO_MANY_RECORDS, f"limit {self.config.max_records_per_file}"
            )
            return
        code, detail, plan, balances, value_date = self._check_file(c.bank, records)
        if code:
            self._reject(out, seq, c.file_id, code, detail)
            return
        applied = duplicates = 0
        for item in plan:
            if item is None:
                duplicates += 1
                continue
            applied += 1
            if item[0] == RECORD_DEPOSIT:
                _, record_id, member, amount, vdate = item
                self._do_deposit(c.bank, record_id, member, amount, vdate, seq, out)
            else:
                _, record_id, request_id, ok, reason = item
                self._do_result(c.bank, record_id, request_id, ok, reason, seq, out)
        self.file_hashes[hash_key] = c.file_sha256
        self.seen[key] = (seq, _OK)
        out.append((C_FILE, seq, c.bank, c.file_id, c.file_kind, applied, duplicates))
        if balances is not None:
            self._reconcile(c.bank, c.file_id, value_date, balances, seq, out)

    def _check_file(self, bank: str, records: list[Any]) -> tuple[int, str, list[Any], dict[str, int] | None, str]:
        """Check every record against the state before anything is applied.
        Returns (code, detail, plan, balances, value_date); plan holds one
        entry per record: None for a record seen before, else what to apply.
        A refused record is named "record <n> field <name>: ..." (n from 1 in
        file order, the field as in the text format), so the file's reader can
        point at its line; the detail names the sub-account and the member."""
        plan: list[Any] = []
        balances: dict[str, int] | None = None
        value_date = ""
        in_file: set[str] = set()
        requests: set[str] = set()
        for n, rec in enumerate(records, start=1):
            where = f"record {n}"
            if not isinstance(rec, list) or not rec or rec[0] not in (RECORD_DEPOSIT, RECORD_RESULT, RECORD_BALANCE):
                return ClearingCode.BAD_FILE_RECORDS, f"{where}: unknown record", [], None, ""
            tag = rec[0]
            shape = {
                RECORD_DEPOSIT: (str, str, str, int, str),
                RECORD_RESULT: (str, str, str, str, int, bool, str),
                RECORD_BALANCE: (str, str, int, str),
            }[tag]
            if len(rec) != len(shape) or any(type(v) is not t for v, t in zip(rec, shape, strict=True)):
                return ClearingCode.BAD_FILE_RECORDS, f"{where}: malformed", [], None, ""
            if tag == RECORD_BALANCE:
                _, sub, amount, vdate = rec
                if balances is None:
                    balances, value_date = {}, vdate
                if vdate != value_date or not valid_date(vdate) or sub in balances or not valid_id(sub):
                    field = "sub_account" if sub in balances or not valid_id(sub) else "value_date"
                    detail = f"{where} field {field}: balance of sub-account {sub} on {vdate}"
                    return ClearingCode.BAD_FILE_RECORDS, detail, [], None, ""
                if not (0 <= amount <= MAX_AMOUNT_FEN):
                    detail = f"{where} field balance: balance {amount} fen of sub-account {sub}"
                    return ClearingCode.BAD_FILE_RECORDS, detail, [], None, ""
                balances[sub] = amount
                continue
            record_id = rec[1]
            if record_id in in_file:
                detail = f"{where} field record_id: record id {record_id} repeated"
                return ClearingCode.BAD_FILE_RECORDS, detail, [], None, ""
            in_file.add(record_id)
            if f"r|{bank}|{record_id}" in self.seen:
                plan.append(None)
                continue
            if tag == RECORD_DEPOSIT:
                _, record_id, sub, amount, vdate = rec
                member = self.sub_accounts.get((bank, sub), "")
                code, detail = self._check_deposit(bank, record_id, member, amount, vdate)
                if code:
                    field = {
                        ClearingCode.BAD_RECORD_ID: "record_id",
                        ClearingCode.BAD_AMOUNT: "amount",
                        ClearingCode.AMOUNT_ABOVE_LIMIT: "amount",
                        ClearingCode.BAD_DATE: "value_date",
                    }.get(ClearingCode(code), "sub_account")
                    who = f"sub-account {sub} of member {member}"
                    if not member:
                        who = f"no member has sub-account {sub} at {bank}"
                    what = "; ".join(t for t in (detail, who) if t)
                    detail = f"{where} field {field}: {ClearingCode(code).name}: {what}"
                    return ClearingCode.BAD_FILE_RECORDS, detail, [], None, ""
                plan.append((RECORD_DEPOSIT, record_id, member, amount, vdate))
            else:
                _, record_id, request_id, sub, amount, ok, reason = rec
                code, detail = self._check_result(bank, record_id, request_id, sub, amount)
                if not code and request_id in requests:
                    code, detail = ClearingCode.BAD_REQUEST_STATE, f"{request_id} answered twice"
                if code:
                    field = {
                        ClearingCode.BAD_RECORD_ID: "record_id",
                        ClearingCode.UNKNOWN_MEMBER: "sub_account",
                        ClearingCode.BAD_AMOUNT: "amount",
                    }.get(ClearingCode(code), "request_id")
                    w = self.withdrawals.get(request_id)
                    who = f"sub-account {sub}" + (f", a withdrawal of member {w.member}" if w is not None else "")
                    what = "; ".join(t for t in (detail, who) if t)
                    detail = f"{where} field {field}: {ClearingCode(code).name}: {what}"
                    return ClearingCode.BAD_FILE_RECORDS, detail, [], None, ""
                requests.add(request_id)
                plan.append((RECORD_RESULT, record_id, request_id, ok, reason))
        if balances is not None and value_date not in self.closings:
            return ClearingCode.UNKNOWN_STATEMENT, f"balances of {value_date}: close that day first", [], None, ""
        return _OK, "", plan, balances, value_date

    # --------------------------------------------------------- pre-trade risk

    def order_hold_fen(self, instrument: str, side: int, price_ticks: int, quantity_lots: int) -> int:
        """The money an order freezes: quantity x the one-lot hold (margin,
        plus the taker fee for a buy), each rounded up per lot."""
        return quantity_lots * per_lot_hold_fen(self.instruments[instrument], side, price_ticks)

    def freeze_order(
        self,
        order_id: int,
        member: str,
        instrument: str,
        side: int,
        price_ticks: int,
        quantity_lots: int,
        seq: int,
        out: list[Event],
    ) -> bool:
        """Freeze the hold of a new order before the matching engine sees it.

        `order_id` is the order id matching will give it (the command's seq).
        For a market order pass the band edge matching will use (the band's
        high for a buy, for a sell also the band's high so the margin covers
        any price it can trade at). False, with a C_ORDER_REJECTED event
        naming the shortfall, when the member cannot afford it: the order
        must then not reach the book."""
        risk = self.instruments.get(instrument)
        bal = self.ledger.balances.get(member)
        id_o: Any = order_id  # boxed once for the dict (the compiled build boxes an int at each use)
        if (
            bal is not None
            and risk is not None
            and id_o not in self.orders
            and side in (BUY, SELL)
            and price_ticks > 0
            and quantity_lots > 0
        ):
            # the common path: ledger.freeze inlined (a FREEZE transfer and a C_HOLD "order")
            lot_notional = price_ticks * risk.lot_fen_per_tick
            per_lot = -(-lot_notional * risk.margin_rate_bps // BPS)  # per_lot_hold_fen: each part rounded up
            if side == BUY:
                per_lot += -(-lot_notional * risk.taker_fee_bps // BPS)
            amount = per_lot * quantity_lots
            hold_id = 0
            if amount:
                assert amount <= MAX_AMOUNT_FEN, amount
                if bal[AVAILABLE] < amount:
                    out.append(
                        (
                            C_ORDER_REJECTED,
                            seq,
                            order_id,
                            member,
                            ClearingCode.INSUFFICIENT_FUNDS,
                            f"needs {amount} fen, shortfall {amount - bal[AVAILABLE]} fen",
                        )
                    )
                    return False
                bal[AVAILABLE] -= amount
                bal[FROZEN_MARGIN] += amount
                ledger = self.ledger
                ref = f"order:{order_id}"
                tid = ledger.next_transfer_id
                hold_id = ledger.next_hold_id
                ledger.next_transfer_id = tid + 1
                ledger.next_hold_id = hold_id + 1
                # seq, the hold id and the amount boxed once each for the events and the dict
                seq_o: object = seq
                hold_o: Any = hold_id
                amount_o: object = amount
                ledger.holds[hold_o] = Hold(hold_id, member, FROZEN_MARGIN, amount, "order", ref)
                out.append(
                    (
                        TRANSFER_EVENT,
                        seq_o,
                        tid,
                        TransferCode.FREEZE,
                        member,
                        AVAILABLE,
                        member,
                        FROZEN_MARGIN,
                        amount_o,
                        ref,
                    )
                )
                out.append((HOLD_EVENT, seq_o, hold_o, member, FROZEN_MARGIN, amount_o, "order", ref))
            self.orders[id_o] = OrderHold(order_id, member, risk, side, price_ticks, quantity_lots, per_lot, hold_id)
            return True
        code, detail = _OK, ""
        if member not in self.ledger.balances:
            code, detail = ClearingCode.UNKNOWN_MEMBER, member
        elif risk is None:
            code, detail = ClearingCode.UNKNOWN_INSTRUMENT, instrument
        elif order_id in self.orders:
            code = ClearingCode.ORDER_EXISTS
        elif side not in (BUY, SELL):
            code = ClearingCode.BAD_SIDE
        elif price_ticks <= 0 or quantity_lots <= 0:
            code, detail = ClearingCode.BAD_AMOUNT, "price and quantity must be positive"
        if code:
            out.append((C_ORDER_REJECTED, seq, order_id, member, code, detail))
            return False
        assert risk is not None
        per_lot = per_lot_hold_fen(risk, side, price_ticks)
        amount = per_lot * quantity_lots
        hold_id = 0
        if amount:
            hold_id = self.ledger.freeze(member, FROZEN_MARGIN, amount, "order", f"order:{order_id}", seq, out)
            if not hold_id:
                shortfall = amount - self.ledger.balances[member][AVAILABLE]
                out.append(
                    (
                        C_ORDER_REJECTED,
                        seq,
                        order_id,
                        member,
                        ClearingCode.INSUFFICIENT_FUNDS,
                        f"needs {amount} fen, shortfall {shortfall} fen",
                    )
                )
                return False
        self.orders[order_id] = OrderHold(order_id, member, risk, side, price_ticks, quantity_lots, per_lot, hold_id)
        return True

    def reserve_amend(
        self, order_id: int, member: str, price_ticks: int, quantity_lots: int, seq: int, out: list[Event]
    ) -> bool:
        """Before matching applies an amend: top up the order's hold so it
        covers the amended order (`quantity_lots` is the new total size, as in
        AmendOrder). False, with a C_ORDER_REJECTED event naming the
        shortfall, when the member cannot afford it; the amend must then not
        reach the book. An unknown order, or another member's, passes
        untouched (matching will reject it). ``absorb`` then trims the hold to
        the order as matching left it, whether the amend went through or not."""
        order = self.orders.get(order_id)
        if order is None or order.member != member or price_ticks <= 0:
            return True  # matching will reject it
        self._amending = order_id
        new_open = max(0, quantity_lots - order.filled_lots)
        per_lot = per_lot_hold_fen(order.risk, order.side, price_ticks)
        need = new_open * per_lot - self._held(order)
        if need <= 0:
            return True
        if self.ledger.balances[order.member][AVAILABLE] < need:
            shortfall = need - self.ledger.balances[order.member][AVAILABLE]
            out.append(
                (
                    C_ORDER_REJECTED,
                    seq,
                    order_id,
                    order.member,
                    ClearingCode.INSUFFICIENT_FUNDS,
                    f"needs {need} fen more, shortfall {shortfall} fen",
                )
            )
            return False
        if order.hold_id:
            ok = self.ledger.top_up(order.hold_id, need, seq, out)
            assert ok
        else:
            order.hold_id = self.ledger.freeze(
                order.member, FROZEN_MARGIN, need, "order", f"order:{order_id}", seq, out
            )
            assert order.hold_id
        return True

    def _held(self, order: OrderHold) -> int:
        return self.ledger.holds[order.hold_id].amount_fen if order.hold_id else 0

    def absorb(self, out: list[Event], start: int, seq: int) -> None:
        """Follow the matching events ``out[start:]`` of the command `seq`:
        trades become deals, cancels and expiries release, amends re-size.
        Clearing's own events are appended to `out` after them. A new order
        whose hold was frozen under `seq` and that matching did not accept
        (rejected or a duplicate) has its hold released."""
        end = len(out)
        touched: list[OrderHold] | None = None
        orders = self.orders
        for ev in out[start:end]:  # matching's events (clearing's own are appended after them)
            kind = ev[0]
            if kind == BOOK:  # the most frequent: level totals, nothing to follow
                continue
            if kind == ACCEPTED:
                order = orders.get(ev[2])
                assert order is not None, f"order {ev[2]} reached the book without a clearing hold"
                order.accepted = True
            elif kind == TRADE:
                self._trade(ev, seq, out)
            elif kind == CANCELLED:
                order = orders.get(ev[2])
                if order is not None:
                    # an amend below the filled size reports AMENDED (open 0) before this CANCELLED
                    lots = order.open_lots - ev[8]
                    assert 0 <= lots <= ev[7], (order.to_list(), ev)
                    order.open_lots = ev[8]
                    if order.open_lots == 0:
                        self._finish_order(order, seq, out)
                    elif lots and order.per_lot_fen:
                        self.ledger.release_part(order.hold_id, lots * order.per_lot_fen, seq, out)
            elif kind == AMENDED:
                order = self.orders.get(ev[2])
                if order is not None:
                    order.price_ticks = ev[5]
                    order.per_lot_fen = per_lot_hold_fen(order.risk, order.side, ev[5])
                    order.open_lots = ev[7]
                    if touched is None:
                        touched = []
                    touched.append(order)
        if self._amending:
            amended = orders.get(self._amending)
            self._amending = 0
            if amended is not None:
                if touched is None:
                    touched = []
                touched.append(amended)
        if touched is not None:
            self._trim(touched, seq, out)
        order = self.orders.get(seq)
        if order is not None and not order.accepted:
            self._finish_order(order, seq, out)

    def _trim(self, touched: list[OrderHold], seq: int, out: list[Event]) -> None:
        """Amended orders: the hold trimmed to the order's open lots at its (new) price."""
        for order in touched:
            if order.order_id not in self.orders:
                continue
            if order.open_lots == 0:
                self._finish_order(order, seq, out)
                continue
            surplus = self._held(order) - order.open_lots * order.per_lot_fen
            assert surplus >= 0, "reserve_amend was not called before the amend"
            if surplus:
                self.ledger.release_part(order.hold_id, surplus, seq, out)

    def _finish_order(self, order: OrderHold, seq: int, out: list[Event]) -> None:
        del self.orders[order.order_id]
        hold_id = order.hold_id
        if hold_id:
            ledger = self.ledger
            # settled when all of it went into deals, else released (Ledger.close: one call less)
            state = HoldState.SETTLED if ledger.holds[hold_id].amount_fen == 0 else HoldState.RELEASED
            ledger.close(hold_id, _NO_PAYOUTS, state, seq, out)

    def _trade(self, ev: Event, seq: int, out: list[Event]) -> None:
        (_, _, trade_id, symbol, price, lots, buy_id, buyer, buy_open, sell_id, seller, sell_open, aggressor) = ev
        risk = self.instruments[symbol]
        bo = self.orders[buy_id]
        so = self.orders[sell_id]
        notional = price * risk.lot_fen_per_tick * lots
        deal = Deal(trade_id, symbol, price, lots, notional, buyer, seller)
        ref = f"deal:{trade_id}"
        ledger = self.ledger
        # buyer: margin and fee at the trade price out of the order's hold, the rest released (one draw)
        bo.open_lots -= lots
        bo.filled_lots += lots
        assert bo.open_lots == buy_open, (bo.to_list(), buy_open)
        consumed = lots * bo.per_lot_fen
        full_margin = -(-notional * risk.margin_rate_bps // BPS)  # margin_fen: ceiling
        fee_bps = risk.taker_fee_bps if aggressor == BUY else risk.maker_fee_bps
        fee = (notional * fee_bps * 2 + BPS) // (2 * BPS)  # fee_fen: half up
        assert full_margin + fee <= consumed, (full_margin, fee, consumed)
        if consumed:
            deal.buyer_margin_hold, deal.buyer_fee_hold = ledger.draw(
                bo.hold_id, full_margin, fee, consumed - full_margin - fee, ref, seq, out
            )
        deal.buyer_margin_fen = full_margin
        deal.buyer_fee_fen = fee
        # seller: margin at the trade price, at most what the order froze (its limit price's margin)
        so.open_lots -= lots
        so.filled_lots += lots
        assert so.open_lots == sell_open, (so.to_list(), sell_open)
        consumed = lots * so.per_lot_fen
        margin = min(full_margin, consumed)
        if consumed:
            deal.seller_margin_hold = ledger.draw(so.hold_id, margin, 0, consumed - margin, ref, seq, out)[0]
        deal.seller_margin_fen = margin
        fee_bps = risk.taker_fee_bps if aggressor == SELL else risk.maker_fee_bps
        deal.seller_fee_fen = (notional * fee_bps * 2 + BPS) // (2 * BPS)  # fee_fen: half up
        self.deals[trade_id] = deal
        out.append(
            (
                C_DEAL,
                seq,
                trade_id,
                symbol,
                price,
                lots,
                notional,
                buyer,
                seller,
                deal.buyer_margin_fen,
                deal.buyer_fee_fen,
                deal.seller_margin_fen,
                deal.seller_fee_fen,
            )
        )
        if bo.open_lots == 0:
            self._finish_order(bo, seq, out)
        if so.open_lots == 0 and sell_id in self.orders:
            self._finish_order(so, seq, out)

    # -------------------------------------------------------------- deal money

    def _open_deal(self, deal_id: int, states: tuple[str, ...]) -> tuple[Deal | None, int, str]:
        deal = self.deals.get(deal_id)
        if deal is None:
            if deal_id in self.closed_deals:
                return None, ClearingCode.BAD_DEAL_STATE, self.closed_deals[deal_id]
            return None, ClearingCode.UNKNOWN_DEAL, str(deal_id)
        if deal.state not in states:
            return None, ClearingCode.BAD_DEAL_STATE, deal.state
        return deal, _OK, ""

    def escrow_payment(self, deal_id: int, seq: int, out: list[Event]) -> tuple[int, str]:
        """Freeze the rest of the price (notional less the buyer's deal margin)
        from the buyer's available funds into escrow. (0, "") on success, else
        (code, detail) and nothing changed; INSUFFICIENT_FUNDS names the
        shortfall (the buyer is then in default at the payment deadline)."""
        deal, code, detail = self._open_deal(deal_id, (DealState.OPEN,))
        if deal is None:
            return code, detail
        rest = deal.notional_fen - deal.buyer_margin_fen
        if rest > 0:
            hold_id = self.ledger.freeze(deal.buyer, FROZEN_ESCROW, rest, "escrow", f"deal:{deal_id}", seq, out)
            if not hold_id:
                return ClearingCode.INSUFFICIENT_FUNDS, f"shortfall {rest - self.ledger.available(deal.buyer)} fen"
            deal.escrow_hold = hold_id
        deal.escrow_fen = max(rest, 0)
        deal.state = DealState.ESCROWED
        out.append((C_DEAL_STATE, seq, deal_id, DealState.ESCROWED, deal.escrow_fen, ""))
        return _OK, ""

    def settle_deal(self, deal_id: int, amount_fen: int, seq: int, out: list[Event]) -> tuple[int, str]:
        """Delivery versus payment, the money leg, all or nothing.

        The buyer pays `amount_fen` (the price adjusted to the delivered
        weight): first out of the deal margin, then out of escrow, any excess
        from the buyer's available funds; what is left of margin and escrow is
        refunded to the buyer. The seller receives `amount_fen`, pays the
        seller fee out of it, and has the deal margin released. The buyer's
        fee goes to fee income. (0, "") on success, else (code, detail) and
        nothing changed."""
        deal, code, detail = self._open_deal(deal_id, (DealState.ESCROWED,))
        if deal is None:
            return code, detail
        if type(amount_fen) is not int or not (0 < amount_fen <= MAX_AMOUNT_FEN):
            return ClearingCode.BAD_AMOUNT, str(amount_fen)
        buyer, seller = deal.buyer, deal.seller
        from_margin = min(deal.buyer_margin_fen, amount_fen)
        from_escrow = min(deal.escrow_fen, amount_fen - from_margin)
        extra = amount_fen - from_margin - from_escrow
        ledger = self.ledger
        buyer_available = ledger.available(buyer)
        if extra > buyer_available:
            return ClearingCode.INSUFFICIENT_FUNDS, f"buyer shortfall {extra - buyer_available} fen"
        seller_after = ledger.available(seller) + amount_fen + deal.seller_margin_fen
        if buyer == seller:
            seller_after += deal.buyer_margin_fen - from_margin + deal.escrow_fen - from_escrow - extra
        if deal.seller_fee_fen > seller_after:
            return ClearingCode.INSUFFICIENT_FUNDS, f"seller fee shortfall {deal.seller_fee_fen - seller_after} fen"
        to_seller = (seller, AVAILABLE)
        if deal.buyer_margin_hold:
            ledger.settle(
                deal.buyer_margin_hold,
                [(TransferCode.SETTLEMENT, to_seller, from_margin)] if from_margin else [],
                seq,
                out,
            )
        if deal.escrow_hold:
            ledger.settle(
                deal.escrow_hold, [(TransferCode.SETTLEMENT, to_seller, from_escrow)] if from_escrow else [], seq, out
            )
        if extra and buyer != seller:
            ledger.transfer_many(
                [(TransferCode.SETTLEMENT, (buyer, AVAILABLE), to_seller, extra, f"deal:{deal_id}")], seq, out
            )
        if deal.buyer_fee_hold:
            ledger.settle(
                deal.buyer_fee_hold, [(TransferCode.FEE, (EXCHANGE, FEE_INCOME), deal.buyer_fee_fen)], seq, out
            )
        if deal.seller_margin_hold:
            ledger.release(deal.seller_margin_hold, seq, out)
        if deal.seller_fee_fen:
            ledger.transfer_many(
                [(TransferCode.FEE, to_seller, (EXCHANGE, FEE_INCOME), deal.seller_fee_fen, f"deal:{deal_id}")],
                seq,
                out,
            )
        self._end_deal(deal, DealState.SETTLED, amount_fen, "", seq, out)
        return _OK, ""

    def default_deal(self, deal_id: int, defaulter_side: int, seq: int, out: list[Event]) -> tuple[int, str]:
        """A missed deadline: the defaulter's deal margin is forfeited, the
        risk fund's share (rounded down) to the risk fund, the rest to the
        other side; every other hold of the deal is released."""
        if defaulter_side not in (BUY, SELL):
            return ClearingCode.BAD_SIDE, str(defaulter_side)
        deal, code, detail = self._open_deal(deal_id, (DealState.OPEN, DealState.ESCROWED))
        if deal is None:
            return code, detail
        ledger = self.ledger
        if defaulter_side == BUY:
            margin_hold, margin, other = deal.buyer_margin_hold, deal.buyer_margin_fen, deal.seller
            others = (deal.buyer_fee_hold, deal.escrow_hold, deal.seller_margin_hold)
        else:
            margin_hold, margin, other = deal.seller_margin_hold, deal.seller_margin_fen, deal.buyer
            others = (deal.buyer_fee_hold, deal.escrow_hold, deal.buyer_margin_hold)
        if margin_hold:
            fund, rest = forfeit_split(margin, self.config.risk_fund_share_bps)
            payouts: list[tuple[int, tuple[str, int], int]] = []
            if fund:
                payouts.append((TransferCode.RISK_FUND, (EXCHANGE, RISK_FUND), fund))
            if rest:
                payouts.append((TransferCode.FORFEIT, (other, AVAILABLE), rest))
            ledger.forfeit(margin_hold, payouts, seq, out)
        for hold_id in others:
            if hold_id:
                ledger.release(hold_id, seq, out)
        self._end_deal(deal, DealState.DEFAULTED, margin, "buyer" if defaulter_side == BUY else "seller", seq, out)
        return _OK, ""

    def cancel_deal(self, deal_id: int, seq: int, out: list[Event]) -> tuple[int, str]:
        """Cancel a deal (a dispute resolved by cancellation): every hold released."""
        deal, code, detail = self._open_deal(deal_id, (DealState.OPEN, DealState.ESCROWED))
        if deal is None:
            return code, detail
        for hold_id in (deal.buyer_margin_hold, deal.buyer_fee_hold, deal.escrow_hold, deal.seller_margin_hold):
            if hold_id:
                self.ledger.release(hold_id, seq, out)
        self._end_deal(deal, DealState.CANCELLED, 0, "", seq, out)
        return _OK, ""

    def _end_deal(self, deal: Deal, state: str, amount: int, detail: str, seq: int, out: list[Event]) -> None:
        del self.deals[deal.deal_id]
        self.closed_deals[deal.deal_id] = state
        out.append((C_DEAL_STATE, seq, deal.deal_id, state, amount, detail))

    # -------------------------------------------------------------- invariants

    def check_invariants(self) -> None:
        """Assert every invariant of the clearing state (tests call this after every step)."""
        self.ledger.check()
        order_holds = 0
        for order in self.orders.values():
            assert order.open_lots > 0, order.to_list()
            held = self._held(order)
            assert held == order.open_lots * order.per_lot_fen, order.to_list()
            order_holds += 1 if order.hold_id else 0
        deal_holds = 0
        for deal in self.deals.values():
            for hold_id in (deal.buyer_margin_hold, deal.buyer_fee_hold, deal.escrow_hold, deal.seller_margin_hold):
                if hold_id:
                    assert hold_id in self.ledger.holds, (deal.deal_id, hold_id)
                    deal_holds += 1
        withdrawal_holds = 0
        pending: dict[str, int] = {}
        for w in self.withdrawals.values():
            if w.status in (WithdrawalStatus.PENDING_APPROVAL, WithdrawalStatus.APPROVED):
                assert self.ledger.holds[w.hold_id].amount_fen == w.amount_fen
                withdrawal_holds += 1
                pending[w.member] = pending.get(w.member, 0) + 1
            else:
                assert w.hold_id == 0
        assert pending == self.pending_by_member
        assert order_holds + deal_holds + withdrawal_holds == len(self.ledger.holds)
        per_member: dict[str, int] = {}
        for item in self.breaks.values():
            if item[2]:
                per_member[item[2]] = per_member.get(item[2], 0) + 1
        assert per_member == self.breaks_by_member
        for item in self.breaks.values():
            assert len(item) == 7, item
        for date, moved in self.late.items():
            assert date in self.closings, date
            assert moved, date
            assert all(moved.values()), (date, moved)
            for member in moved:
                if member in self.closings[date]:
                    self._exchange_fen(date, member)  # asserts it is not negative
        for date, moved in self.forward.items():
            assert date > self.last_closed_date, (date, self.last_closed_date)
            assert all(fen > 0 for fen in moved.values()), (date, moved)

    # ------------------------------------------------------------------ state

    def export_state(self) -> dict[str, Any]:
        """The whole state as canonical JSON-able data (equal states, equal dicts)."""
        return {
            "config": self.config.to_list(),
            "ledger": self.ledger.export_state(),
            "members": [[m, b, s] for m, (b, s) in sorted(self.members.items())],
            "instruments": [self.instruments[s].to_list() for s in sorted(self.instruments)],
            "orders": [self.orders[o].to_list() for o in sorted(self.orders)],
            "deals": [self.deals[d].to_list() for d in sorted(self.deals)],
            "closed_deals": [[d, s] for d, s in sorted(self.closed_deals.items())],
            "withdrawals": [w.to_list() for _, w in sorted(self.withdrawals.items())],
            "seen": [[k, v[0], v[1]] for k, v in sorted(self.seen.items())],
            "file_hashes": [[k, v] for k, v in sorted(self.file_hashes.items())],
            "statements": [[k, sorted(v.items())] for k, v in sorted(self.statements.items())],
            "breaks": [[b, *item] for b, item in sorted(self.breaks.items())],
            "next_break_id": self.next_break_id,
            "closings": [[d, sorted(c.items())] for d, c in sorted(self.closings.items())],
            "late": [[d, sorted(m.items())] for d, m in sorted(self.late.items())],
            "forward": [[d, sorted(m.items())] for d, m in sorted(self.forward.items())],
            "last_closed_date": self.last_closed_date,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> ClearingEngine:
        eng = cls(ClearingConfig(*d["config"]))
        eng.ledger = Ledger.from_state(d["ledger"])
        for m, b, s in d["members"]:
            eng.members[m] = (b, s)
            eng.sub_accounts[(b, s)] = m
        for item in d["instruments"]:
            eng.instruments[item[0]] = InstrumentRisk(*item)
        for oid, member, symbol, side, price, open_lots, filled, per_lot, hold_id, accepted in d["orders"]:
            order = OrderHold(oid, member, eng.instruments[symbol], side, price, open_lots, per_lot, hold_id)
            order.filled_lots = filled
            order.accepted = accepted
            eng.orders[oid] = order
        for item in d["deals"]:
            deal = Deal.from_list(item)
            eng.deals[deal.deal_id] = deal
        eng.closed_deals = {int(k): v for k, v in d["closed_deals"]}
        for rid, member, amount, by, approved_by, hold_id, status, *after in d["withdrawals"]:
            w = Withdrawal(rid, member, amount, by, hold_id)
            w.approved_by = approved_by
            w.status = status
            w.instructed_after = after[0] if after else ""  # snapshots before value dates: as before any close
            eng.withdrawals[rid] = w
            if status in (WithdrawalStatus.PENDING_APPROVAL, WithdrawalStatus.APPROVED):
                eng.pending_by_member[member] = eng.pending_by_member.get(member, 0) + 1
        eng.seen = {k: (s, c) for k, s, c in d["seen"]}
        eng.file_hashes = dict(d["file_hashes"])
        eng.statements = {k: dict(v) for k, v in d["statements"]}
        for b, *item in d["breaks"]:
            eng.breaks[b] = item if len(item) == 7 else [*item, ""]  # snapshots before value dates: the oldest
            if item[2]:
                eng.breaks_by_member[item[2]] = eng.breaks_by_member.get(item[2], 0) + 1
        eng.next_break_id = d["next_break_id"]
        eng.closings = {date: {m: list(b) for m, b in c} for date, c in d["closings"]}
        eng.late = {date: dict(m) for date, m in d.get("late", [])}
        eng.forward = {date: dict(m) for date, m in d.get("forward", [])}
        eng.last_closed_date = d["last_closed_date"]
        return eng
