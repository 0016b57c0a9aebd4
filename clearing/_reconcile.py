"""Reconciliation: the bank's balances per sub-account against the ledger's
closing balances per member. Pure.

Break reasons:
    amount_differs       both sides know the sub-account and the amounts differ
    unknown_member       the bank reports a sub-account no member is registered with
    missing_at_exchange  a registered member's sub-account, but the ledger has no
                         closing balance for it on that date (registered after
                         the close) or it is registered at another bank
    missing_at_bank      the ledger has a non-zero closing balance for a member of
                         this bank and the bank's statement does not list it
                         (a bank may leave out sub-accounts with a zero balance)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AMOUNT_DIFFERS",
    "BREAK_REASONS",
    "MISSING_AT_BANK",
    "MISSING_AT_EXCHANGE",
    "UNKNOWN_MEMBER",
    "Break",
    "reconcile",
]

AMOUNT_DIFFERS: Final = "amount_differs"
UNKNOWN_MEMBER: Final = "unknown_member"
MISSING_AT_BANK: Final = "missing_at_bank"
MISSING_AT_EXCHANGE: Final = "missing_at_exchange"
BREAK_REASONS: Final = (AMOUNT_DIFFERS, UNKNOWN_MEMBER, MISSING_AT_BANK, MISSING_AT_EXCHANGE)


@dataclass(frozen=True, slots=True)
class Break:
    sub_account: str
    member: str  # "" when no member is registered with the sub-account
    reason: str
    bank_fen: int  # 0 when missing at the bank
    exchange_fen: int  # 0 when missing at the exchange


def reconcile(
    bank: str,
    bank_balances: Mapping[str, int],
    sub_accounts: Mapping[tuple[str, str], str],
    member_banks: Mapping[str, str],
    ledger_balances: Mapping[str, int],
) -> list[Break]:
    """Breaks between `bank`'s statement and the ledger, sorted by sub-account.

    bank_balances: sub-account -> balance in fen, as the bank reports it.
    sub_accounts: (bank, sub-account) -> member, every registration.
    member_banks: member -> (bank, sub-account) flattened as member -> sub-account
                  for the members registered at `bank` only.
    ledger_balances: member -> closing balance (available + frozen) in fen.
    """
    breaks: list[Break] = []
    for sub in sorted(bank_balances):
        amount = bank_balances[sub]
        member = sub_accounts.get((bank, sub))
        if member is None:
            breaks.append(Break(sub, "", UNKNOWN_MEMBER, amount, 0))
            continue
        ours = ledger_balances.get(member)
        if ours is None:
            breaks.append(Break(sub, member, MISSING_AT_EXCHANGE, amount, 0))
        elif ours != amount:
            breaks.append(Break(sub, member, AMOUNT_DIFFERS, amount, ours))
    for member in sorted(member_banks):
        sub = member_banks[member]
        ours = ledger_balances.get(member, 0)
        if sub not in bank_balances and ours != 0:
            breaks.append(Break(sub, member, MISSING_AT_BANK, 0, ours))
    breaks.sort(key=lambda b: (b.sub_account, b.reason))
    return breaks
