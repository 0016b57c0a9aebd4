"""Reject reasons of the clearing core, one enumeration, each with a message
that tells the sender how to fix the command.

    ClearingCode
    ├── members:      UNKNOWN_MEMBER, MEMBER_EXISTS, SUB_ACCOUNT_TAKEN,
    │                 BAD_MEMBER, WRONG_BANK
    ├── amounts:      BAD_AMOUNT, AMOUNT_ABOVE_LIMIT, INSUFFICIENT_FUNDS
    ├── bank records: BAD_RECORD_ID, BAD_DATE, FILE_ID_REUSED, BAD_FILE_RECORDS
    ├── withdrawals:  UNKNOWN_REQUEST, BAD_REQUEST_STATE, SAME_APPROVER,
    │                 OPEN_BREAK, TOO_MANY_PENDING
    ├── orders:       UNKNOWN_INSTRUMENT, UNKNOWN_ORDER, ORDER_EXISTS
    ├── deals:        UNKNOWN_DEAL, BAD_DEAL_STATE, BAD_SIDE
    ├── days:         DAY_ALREADY_CLOSED, UNKNOWN_STATEMENT, UNKNOWN_BREAK,
    │                 BREAK_RESOLVED
    └── limits:       TOO_MANY_MEMBERS, TOO_MANY_RECORDS

INSUFFICIENT_FUNDS has the same number as matching's code of that name, so
one table of codes serves a trader whichever core refused the order.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CLEARING_MESSAGES", "ClearingCode", "clearing_message"]


class ClearingCode(IntEnum):
    INSUFFICIENT_FUNDS = 80
    UNKNOWN_MEMBER = 100
    MEMBER_EXISTS = 101
    SUB_ACCOUNT_TAKEN = 102
    BAD_MEMBER = 103
    WRONG_BANK = 104
    BAD_AMOUNT = 110
    AMOUNT_ABOVE_LIMIT = 111
    BAD_RECORD_ID = 120
    BAD_DATE = 121
    FILE_ID_REUSED = 122
    BAD_FILE_RECORDS = 123
    UNKNOWN_REQUEST = 130
    BAD_REQUEST_STATE = 131
    SAME_APPROVER = 132
    OPEN_BREAK = 133
    TOO_MANY_PENDING = 134
    UNKNOWN_INSTRUMENT = 140
    UNKNOWN_ORDER = 141
    ORDER_EXISTS = 142
    UNKNOWN_DEAL = 150
    BAD_DEAL_STATE = 151
    BAD_SIDE = 152
    DAY_ALREADY_CLOSED = 160
    UNKNOWN_STATEMENT = 161
    UNKNOWN_BREAK = 162
    BREAK_RESOLVED = 163
    TOO_MANY_MEMBERS = 170
    TOO_MANY_RECORDS = 171


CLEARING_MESSAGES: dict[ClearingCode, str] = {
    ClearingCode.INSUFFICIENT_FUNDS: "available funds do not cover the amount; deposit more or reduce the amount "
    "(the detail names the shortfall in fen)",
    ClearingCode.UNKNOWN_MEMBER: "no member with this id (or sub-account) is registered; register the member first",
    ClearingCode.MEMBER_EXISTS: "a member with this id is already registered; use another id",
    ClearingCode.SUB_ACCOUNT_TAKEN: "this bank sub-account already belongs to another member; check the number",
    ClearingCode.BAD_MEMBER: "member, bank and sub-account must be 1 to 64 printable characters without commas",
    ClearingCode.WRONG_BANK: "the member's sub-account is held at another bank; send the record from that bank",
    ClearingCode.BAD_AMOUNT: "the amount must be a positive whole number of fen",
    ClearingCode.AMOUNT_ABOVE_LIMIT: "the amount is above the per-record limit; split it or ask staff to raise it",
    ClearingCode.BAD_RECORD_ID: "record, request and file ids must be 1 to 64 printable characters without commas",
    ClearingCode.BAD_DATE: "dates are written YYYY-MM-DD",
    ClearingCode.FILE_ID_REUSED: "this file id was used for a file with other contents; give the new file a new id",
    ClearingCode.BAD_FILE_RECORDS: "a record of the file cannot be applied, so none is (the detail names it); "
    "correct the file and send it again",
    ClearingCode.UNKNOWN_REQUEST: "no withdrawal request with this id; check the id",
    ClearingCode.BAD_REQUEST_STATE: "the withdrawal request is not in a state that allows this step",
    ClearingCode.SAME_APPROVER: "a withdrawal above the threshold needs a second, different staff user to approve",
    ClearingCode.OPEN_BREAK: "the member has an open reconciliation break; withdrawals wait until staff resolve it",
    ClearingCode.TOO_MANY_PENDING: "the member has too many withdrawals in progress; wait for the bank's results",
    ClearingCode.UNKNOWN_INSTRUMENT: "clearing has no risk parameters for this instrument; list it first",
    ClearingCode.UNKNOWN_ORDER: "clearing holds no money for this order id",
    ClearingCode.ORDER_EXISTS: "clearing already holds money for this order id",
    ClearingCode.UNKNOWN_DEAL: "no deal with this id",
    ClearingCode.BAD_DEAL_STATE: "the deal is not in a state that allows this step",
    ClearingCode.BAD_SIDE: "side must be buy (0) or sell (1)",
    ClearingCode.DAY_ALREADY_CLOSED: "this business date (or a later one) is already closed",
    ClearingCode.UNKNOWN_STATEMENT: "no closed business day matches the statement's value date; close the day first",
    ClearingCode.UNKNOWN_BREAK: "no reconciliation break with this id",
    ClearingCode.BREAK_RESOLVED: "the reconciliation break is already resolved",
    ClearingCode.TOO_MANY_MEMBERS: "the exchange has reached its limit of members",
    ClearingCode.TOO_MANY_RECORDS: "too many records in one command; split the file",
}


def clearing_message(code: int, detail: str = "") -> str:
    """The message for `code`, with an optional detail appended."""
    text = CLEARING_MESSAGES[ClearingCode(code)]
    return f"{text} ({detail})" if detail else text
