"""Commands of the clearing core.

A command is a plain record; the sequencer gives it a sequence number and a
timestamp and hands it to ``ClearingEngine.apply``. Every field is a
primitive, in declaration order, so the journal can store a command as a
list of values. Amounts are integer fen; dates are ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "CLEARING_COMMANDS",
    "ApproveWithdrawal",
    "BankBalance",
    "BankDeposit",
    "BankFileImport",
    "CancelWithdrawal",
    "ClearingCommand",
    "CloseDay",
    "CloseStatement",
    "RegisterMember",
    "RequestWithdrawal",
    "ResolveBreak",
    "WithdrawalResult",
]


@dataclass(slots=True)
class RegisterMember:
    """Register a member with its supervised sub-account at `bank`."""

    KIND: ClassVar[str] = "register_member"
    member: str
    bank: str
    sub_account: str


@dataclass(slots=True)
class BankDeposit:
    """The bank reports money received into `member`'s sub-account.
    (`bank`, `record_id`) is applied once; a repeat is answered as the first."""

    KIND: ClassVar[str] = "bank_deposit"
    bank: str
    record_id: str
    member: str
    amount_fen: int
    value_date: str


@dataclass(slots=True)
class RequestWithdrawal:
    """A member asks to take money out. Freezes the amount at once; above the
    approval threshold it waits for a second staff user's approval, else it
    is approved (becomes an instruction to the bank) at once."""

    KIND: ClassVar[str] = "request_withdrawal"
    member: str
    request_id: str
    amount_fen: int
    requested_by: str


@dataclass(slots=True)
class ApproveWithdrawal:
    KIND: ClassVar[str] = "approve_withdrawal"
    request_id: str
    approver: str


@dataclass(slots=True)
class CancelWithdrawal:
    """Withdraw a request that has not been approved yet; releases its hold."""

    KIND: ClassVar[str] = "cancel_withdrawal"
    request_id: str
    cancelled_by: str


@dataclass(slots=True)
class WithdrawalResult:
    """The bank's answer to a withdrawal instruction: `ok` posts the
    withdrawal, otherwise the hold is released. (`bank`, `record_id`) once."""

    KIND: ClassVar[str] = "withdrawal_result"
    bank: str
    record_id: str
    request_id: str
    ok: bool
    reason: str = ""


@dataclass(slots=True)
class BankBalance:
    """One line of the bank's daily statement: the closing balance of a
    sub-account on `value_date`. Collected until ``CloseStatement``."""

    KIND: ClassVar[str] = "bank_balance"
    bank: str
    statement_id: str
    sub_account: str
    balance_fen: int
    value_date: str


@dataclass(slots=True)
class CloseStatement:
    """The bank's statement `statement_id` is complete: reconcile its
    balances against the ledger's closing balances of `value_date`."""

    KIND: ClassVar[str] = "close_statement"
    bank: str
    statement_id: str
    value_date: str
    record_count: int


@dataclass(slots=True)
class ResolveBreak:
    """Staff mark a reconciliation break resolved (after a correction or an explanation)."""

    KIND: ClassVar[str] = "resolve_break"
    break_id: int
    resolved_by: str
    note: str = ""


@dataclass(slots=True)
class CloseDay:
    """Close `business_date`: record every member's closing balances (the
    next day's opening) for the clearing file and reconciliation."""

    KIND: ClassVar[str] = "close_day"
    business_date: str


@dataclass(slots=True)
class BankFileImport:
    """A whole bank file, parsed at the edge, applied all or nothing.

    `records_json` is the canonical JSON list of the file's records (see
    ``clearing.bankfiles.records_to_json``). A file id seen before with the
    same `file_sha256` changes nothing and says so."""

    KIND: ClassVar[str] = "bank_file_import"
    bank: str
    file_id: str
    file_sha256: str
    file_kind: str
    records_json: str


ClearingCommand = (
    RegisterMember
    | BankDeposit
    | RequestWithdrawal
    | ApproveWithdrawal
    | CancelWithdrawal
    | WithdrawalResult
    | BankBalance
    | CloseStatement
    | ResolveBreak
    | CloseDay
    | BankFileImport
)

CLEARING_COMMANDS: dict[str, type[ClearingCommand]] = {
    cls.KIND: cls
    for cls in (
        RegisterMember,
        BankDeposit,
        RequestWithdrawal,
        ApproveWithdrawal,
        CancelWithdrawal,
        WithdrawalResult,
        BankBalance,
        CloseStatement,
        ResolveBreak,
        CloseDay,
        BankFileImport,
    )
}
