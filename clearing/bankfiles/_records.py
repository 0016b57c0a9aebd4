"""The records bank files carry, whatever their format, and their
conversion into the clearing core's ``BankFileImport`` command."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

import orjson

from clearing._commands import BankFileImport
from clearing._errors import ClearingCode

__all__ = [
    "BALANCES",
    "CAMT053",
    "CAMT054",
    "CLEARING",
    "DEPOSITS",
    "IMPORT_KINDS",
    "PAIN001",
    "PAIN002",
    "WITHDRAWAL_INSTRUCTIONS",
    "WITHDRAWAL_RESULTS",
    "BalanceRecord",
    "BankFile",
    "BankRecord",
    "ClearingRecord",
    "DepositRecord",
    "InstructionRecord",
    "Place",
    "ResultRecord",
    "locate_refusal",
    "records_to_json",
    "to_import_command",
]

# File kinds: the text format's header names the first five; ISO messages the last four.
DEPOSITS: Final = "DEPOSITS"
WITHDRAWAL_RESULTS: Final = "WITHDRAWAL_RESULTS"
BALANCES: Final = "BALANCES"
WITHDRAWAL_INSTRUCTIONS: Final = "WITHDRAWAL_INSTRUCTIONS"
CLEARING: Final = "CLEARING"
CAMT053: Final = "camt.053"
CAMT054: Final = "camt.054"
PAIN001: Final = "pain.001"
PAIN002: Final = "pain.002"
# What a bank sends the exchange: the only kinds `bank import` and the drop folder accept.
# WITHDRAWAL_INSTRUCTIONS, CLEARING and pain.001 are the exchange's own outgoing files.
IMPORT_KINDS: Final = (DEPOSITS, WITHDRAWAL_RESULTS, BALANCES, CAMT053, CAMT054, PAIN002)


@dataclass(frozen=True, slots=True)
class DepositRecord:
    """Money received into a member's sub-account."""

    record_id: str
    sub_account: str
    amount_fen: int
    value_date: str


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """The bank's answer to a withdrawal instruction."""

    record_id: str
    request_id: str
    sub_account: str
    amount_fen: int
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    """A sub-account's closing balance on a day, for reconciliation."""

    sub_account: str
    balance_fen: int
    value_date: str


@dataclass(frozen=True, slots=True)
class InstructionRecord:
    """A withdrawal the bank is asked to pay out of a member's sub-account."""

    request_id: str
    member: str
    sub_account: str
    amount_fen: int
    requested_by: str
    approved_by: str


@dataclass(frozen=True, slots=True)
class ClearingRecord:
    """One member's day, for the end-of-day clearing file.

    opening_fen + deposits_fen - withdrawals_fen - fees_fen + settlement_in_fen
    - settlement_out_fen + forfeit_in_fen - forfeit_out_fen + adjustments_fen
    == closing_available_fen + closing_frozen_fen.
    margin_frozen_fen and margin_released_fen move money between available
    and frozen inside the member's sub-account and do not change its total.
    """

    member: str
    sub_account: str
    opening_fen: int
    deposits_fen: int
    withdrawals_fen: int
    fees_fen: int
    margin_frozen_fen: int
    margin_released_fen: int
    settlement_in_fen: int
    settlement_out_fen: int
    forfeit_in_fen: int
    forfeit_out_fen: int
    adjustments_fen: int
    closing_available_fen: int
    closing_frozen_fen: int

    def adds_up(self) -> bool:
        movements = (
            self.deposits_fen
            - self.withdrawals_fen
            - self.fees_fen
            + self.settlement_in_fen
            - self.settlement_out_fen
            + self.forfeit_in_fen
            - self.forfeit_out_fen
            + self.adjustments_fen
        )
        return self.opening_fen + movements == self.closing_available_fen + self.closing_frozen_fen


BankRecord = DepositRecord | ResultRecord | BalanceRecord | InstructionRecord | ClearingRecord


@dataclass(frozen=True, slots=True)
class Place:
    """Where something sits in its file: the line it starts on, and the file's
    name (a column, or an XML element path) of each field of the record that
    is not named as in the text format (record_id, sub_account, amount, ...)."""

    line: int
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> str:
        return next((path for logical, path in self.fields if logical == name), name)


@dataclass(frozen=True, slots=True)
class BankFile:
    """A parsed file: its kind, the bank, the file id, the business date and
    the records in file order; `places` (one per record) and `header` say
    where in the file each record and the file id are, for error messages."""

    kind: str
    bank: str
    file_id: str
    business_date: str
    records: tuple[BankRecord, ...]
    places: tuple[Place, ...] = field(default=(), compare=False)
    header: Place = field(default=Place(1), compare=False)


def records_to_json(records: tuple[BankRecord, ...] | list[BankRecord]) -> str:
    """The canonical JSON of the records the clearing core applies
    (deposits, withdrawal results, balances); others are refused."""
    items: list[list[object]] = []
    for r in records:
        if isinstance(r, DepositRecord):
            items.append(["D", r.record_id, r.sub_account, r.amount_fen, r.value_date])
        elif isinstance(r, ResultRecord):
            items.append(["R", r.record_id, r.request_id, r.sub_account, r.amount_fen, r.ok, r.reason])
        elif isinstance(r, BalanceRecord):
            items.append(["B", r.sub_account, r.balance_fen, r.value_date])
        else:
            raise ValueError(f"{type(r).__name__} is not imported into the ledger")
    return orjson.dumps(items).decode()


def to_import_command(parsed: BankFile, data: bytes) -> BankFileImport:
    """The command that applies a parsed file (whole or not at all); `data`
    is the file's bytes, whose SHA-256 makes a re-import recognisable.
    ValueError for a kind the exchange does not import (see IMPORT_KINDS)."""
    if parsed.kind not in IMPORT_KINDS:
        raise ValueError(f"{parsed.kind} is not a kind the exchange imports ({', '.join(IMPORT_KINDS)})")
    return BankFileImport(
        parsed.bank, parsed.file_id, hashlib.sha256(data).hexdigest(), parsed.kind, records_to_json(parsed.records)
    )


# The clearing core names a refused record "record <n> field <name>: ..." (n counts
# every record of the file from 1, in file order; the field as in the text format;
# "record <n>: ..." for a record it cannot read at all).
_REFUSED_RECORD: Final = re.compile(r"record (\d+)(?: field ([a-z_]+))?: ")


def locate_refusal(parsed: BankFile, code: int, detail: str) -> tuple[int, str, str]:
    """Where in the file the clearing core's refusal of `parsed` points:
    (line, field, the detail without the core's record number)."""
    found = _REFUSED_RECORD.match(detail)
    if found is not None and 1 <= int(found[1]) <= len(parsed.places):
        place = parsed.places[int(found[1]) - 1]
        return place.line, place.field(found[2]) if found[2] else "", detail[found.end() :]
    if code == ClearingCode.FILE_ID_REUSED:
        return parsed.header.line, parsed.header.field("file_id"), detail
    if code == ClearingCode.UNKNOWN_STATEMENT:
        for record, place in zip(parsed.records, parsed.places, strict=False):
            if isinstance(record, BalanceRecord):
                return place.line, place.field("value_date"), detail
    return parsed.header.line, "", detail
