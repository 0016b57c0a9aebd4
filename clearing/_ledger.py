"""The double-entry ledger: accounts, immutable transfers and two-phase holds.

Pure and deterministic, integer fen only.

Accounts. Every member has three: AVAILABLE, FROZEN_MARGIN and FROZEN_ESCROW.
The exchange has four: BANK_CUSTODY (the mirror of the bank's aggregate
account; an asset), FEE_INCOME, RISK_FUND and SUSPENSE. An account is named
by ``(owner, account)``: the member id and one of the member codes, or
``EXCHANGE`` ("") and one of the exchange codes.

Transfers. Every movement is a transfer ``(transfer_id, code, debit,
credit, amount_fen, ref)``: a debit lowers a member or exchange liability
account and raises BANK_CUSTODY; a credit does the opposite. A deposit
debits BANK_CUSTODY and credits the member's AVAILABLE; a confirmed
withdrawal debits the member's FROZEN_ESCROW and credits BANK_CUSTODY. So
at every moment

    BANK_CUSTODY == sum(all member accounts) + FEE_INCOME + RISK_FUND + SUSPENSE

and nothing but BANK_CUSTODY ever moves in the other direction. Transfers
are never changed: a correction is a new transfer. ``transfer_many``
applies several legs all together or not at all.

Holds. Money in a FROZEN_* account is always covered, fen for fen, by open
holds: freeze (AVAILABLE -> FROZEN_*) opens a hold; then exactly one of
settle (pay some of it away, release the rest), release or forfeit closes
it. While open, a hold may be drawn down (part of it released, moved into a
new hold, or paid away) - an order's hold shrinks as the order trades or is
partly cancelled - but it closes exactly once.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ACCOUNT_NAMES",
    "AVAILABLE",
    "BANK_CUSTODY",
    "EXCHANGE",
    "EXCHANGE_ACCOUNTS",
    "FEE_INCOME",
    "FROZEN_ESCROW",
    "FROZEN_MARGIN",
    "HOLD_CHANGED_EVENT",
    "HOLD_CLOSED_EVENT",
    "HOLD_EVENT",
    "MAX_AMOUNT_FEN",
    "MEMBER_ACCOUNTS",
    "RISK_FUND",
    "SUSPENSE",
    "TRANSFER_EVENT",
    "Hold",
    "HoldState",
    "Ledger",
    "LedgerError",
    "TransferCode",
]

AVAILABLE: Final = 0
FROZEN_MARGIN: Final = 1
FROZEN_ESCROW: Final = 2
BANK_CUSTODY: Final = 3
FEE_INCOME: Final = 4
RISK_FUND: Final = 5
SUSPENSE: Final = 6
EXCHANGE: Final = ""
MEMBER_ACCOUNTS: Final = (AVAILABLE, FROZEN_MARGIN, FROZEN_ESCROW)
EXCHANGE_ACCOUNTS: Final = (BANK_CUSTODY, FEE_INCOME, RISK_FUND, SUSPENSE)
ACCOUNT_NAMES: Final = (
    "available",
    "frozen_margin",
    "frozen_escrow",
    "bank_custody",
    "fee_income",
    "risk_fund",
    "suspense",
)

# A single amount above this is a programmer error or a corrupt record: 10^15 fen is 10 trillion CNY.
MAX_AMOUNT_FEN: Final = 10**15

# Event kind codes (the clearing core's events start at 101; see _events.py for all layouts).
TRANSFER_EVENT: Final = 101
HOLD_EVENT: Final = 102
HOLD_CHANGED_EVENT: Final = 103
HOLD_CLOSED_EVENT: Final = 104

Account = tuple[str, int]
Event = tuple[object, ...]


class TransferCode:
    """What a transfer is for; the end-of-day file classifies movements by it."""

    DEPOSIT: Final = 1  # BANK_CUSTODY -> member AVAILABLE
    WITHDRAWAL: Final = 2  # member FROZEN_ESCROW -> BANK_CUSTODY, on the bank's confirmation
    FREEZE: Final = 3  # member AVAILABLE -> member FROZEN_*
    RELEASE: Final = 4  # member FROZEN_* -> member AVAILABLE
    MOVE: Final = 5  # member FROZEN_* -> member FROZEN_* (same member)
    FEE: Final = 6  # member -> FEE_INCOME
    SETTLEMENT: Final = 7  # buyer -> seller, the price of a deal
    FORFEIT: Final = 8  # defaulter FROZEN_MARGIN -> the other side's AVAILABLE
    RISK_FUND: Final = 9  # defaulter FROZEN_MARGIN -> RISK_FUND
    ADJUSTMENT: Final = 10  # SUSPENSE <-> member AVAILABLE, a staff correction
    NAMES: Final = (
        "",
        "deposit",
        "withdrawal",
        "freeze",
        "release",
        "move",
        "fee",
        "settlement",
        "forfeit",
        "risk_fund",
        "adjustment",
    )


class HoldState:
    OPEN: Final = 0
    SETTLED: Final = 1
    RELEASED: Final = 2
    FORFEITED: Final = 3
    NAMES: Final = ("open", "settled", "released", "forfeited")


class LedgerError(Exception):
    """A transfer that would break a ledger rule (an account below zero, an
    unknown account). Callers check first; this guards against mistakes."""


class Hold:
    """An open hold: `amount_fen` of `member`'s `account` set aside for `ref`."""

    __slots__ = ("account", "amount_fen", "hold_id", "member", "purpose", "ref")

    def __init__(self, hold_id: int, member: str, account: int, amount_fen: int, purpose: str, ref: str) -> None:
        self.hold_id = hold_id
        self.member = member
        self.account = account
        self.amount_fen = amount_fen
        self.purpose = purpose
        self.ref = ref

    def to_list(self) -> list[object]:
        return [self.hold_id, self.member, self.account, self.amount_fen, self.purpose, self.ref]


class Ledger:
    """Balances, holds and the transfer counter. Emits TRANSFER and HOLD_*
    events into the caller's `out` list; keeps no transfer history (the
    journal and the projections do)."""

    __slots__ = ("balances", "closed_holds", "exchange", "holds", "next_hold_id", "next_transfer_id")

    def __init__(self) -> None:
        self.balances: dict[str, list[int]] = {}
        self.exchange: list[int] = [0, 0, 0, 0, 0, 0, 0]  # indexed by the exchange account codes
        self.holds: dict[int, Hold] = {}
        self.next_transfer_id = 1
        self.next_hold_id = 1
        self.closed_holds = 0

    # --------------------------------------------------------------- accounts

    def open_member(self, member: str) -> None:
        assert member != EXCHANGE
        assert member not in self.balances
        self.balances[member] = [0, 0, 0]

    def balance(self, owner: str, account: int) -> int:
        if owner == EXCHANGE:
            assert account in EXCHANGE_ACCOUNTS, account
            return self.exchange[account]
        assert account in MEMBER_ACCOUNTS, account
        return self.balances[owner][account]

    def available(self, member: str) -> int:
        return self.balances[member][AVAILABLE]

    def member_total(self, member: str) -> int:
        b = self.balances[member]
        return b[0] + b[1] + b[2]

    def _delta(self, owner: str, account: int) -> int:
        """+1 if a credit raises the account, -1 if it lowers it."""
        return -1 if owner == EXCHANGE and account == BANK_CUSTODY else 1

    def _check_account(self, owner: str, account: int) -> None:
        if owner == EXCHANGE:
            if account not in EXCHANGE_ACCOUNTS:
                raise LedgerError(f"no exchange account {account}")
        elif owner not in self.balances or account not in MEMBER_ACCOUNTS:
            raise LedgerError(f"no account {owner}/{account}")

    # -------------------------------------------------------------- transfers

    def transfer_many(self, legs: list[tuple[int, Account, Account, int, str]], seq: int, out: list[Event]) -> None:
        """Apply legs ``(code, debit, credit, amount_fen, ref)`` all together
        or not at all: raises LedgerError, changing nothing, when an account
        is unknown, an amount is not positive, or any account would end below
        zero. Plain accounts only: frozen money moves through the hold methods."""
        net: dict[Account, int] = {}
        for code, debit, credit, amount, _ref in legs:
            if not (0 < amount <= MAX_AMOUNT_FEN):
                raise LedgerError(f"amount {amount} out of range")
            if debit == credit:
                raise LedgerError("debit and credit are the same account")
            if not (0 < code < len(TransferCode.NAMES)):
                raise LedgerError(f"bad transfer code {code}")
            for acct in (debit, credit):
                self._check_account(*acct)
                if acct[0] != EXCHANGE and acct[1] != AVAILABLE:
                    raise LedgerError("frozen accounts move only through holds")
            net[debit] = net.get(debit, 0) - self._delta(*debit) * amount
            net[credit] = net.get(credit, 0) + self._delta(*credit) * amount
        for acct, change in net.items():
            if self.balance(*acct) + change < 0:
                raise LedgerError(f"account {acct[0]}/{ACCOUNT_NAMES[acct[1]]} would go below zero")
        for code, debit, credit, amount, ref in legs:
            self._post(code, debit[0], debit[1], credit[0], credit[1], amount, ref, seq, out)

    def _post(
        self,
        code: int,
        d_owner: str,
        d_account: int,
        c_owner: str,
        c_account: int,
        amount: int,
        ref: str,
        seq: int,
        out: list[Event],
    ) -> None:
        """One transfer, checked by the caller; asserts the rules anyway."""
        assert amount > 0, amount
        if d_owner == EXCHANGE:
            if d_account == BANK_CUSTODY:
                self.exchange[d_account] += amount
            else:
                self.exchange[d_account] -= amount
            assert self.exchange[d_account] >= 0
        else:
            bal = self.balances[d_owner]
            bal[d_account] -= amount
            assert bal[d_account] >= 0, (d_owner, d_account)
        if c_owner == EXCHANGE:
            if c_account == BANK_CUSTODY:
                self.exchange[c_account] -= amount
            else:
                self.exchange[c_account] += amount
            assert self.exchange[c_account] >= 0
        else:
            self.balances[c_owner][c_account] += amount
        tid = self.next_transfer_id
        self.next_transfer_id = tid + 1
        out.append((TRANSFER_EVENT, seq, tid, code, d_owner, d_account, c_owner, c_account, amount, ref))

    # ------------------------------------------------------------------ holds

    def freeze(self, member: str, account: int, amount: int, purpose: str, ref: str, seq: int, out: list[Event]) -> int:
        """Move `amount` from AVAILABLE into a new hold in `account`; the new
        hold's id, or 0 (nothing changed) when AVAILABLE is short."""
        bal = self.balances[member]
        assert account in (FROZEN_MARGIN, FROZEN_ESCROW)
        assert 0 < amount <= MAX_AMOUNT_FEN, amount
        if bal[AVAILABLE] < amount:
            return 0
        bal[AVAILABLE] -= amount
        bal[account] += amount
        tid = self.next_transfer_id
        self.next_transfer_id = tid + 1
        out.append((TRANSFER_EVENT, seq, tid, TransferCode.FREEZE, member, AVAILABLE, member, account, amount, ref))
        return self._open(member, account, amount, purpose, ref, seq, out)

    def _open(self, member: str, account: int, amount: int, purpose: str, ref: str, seq: int, out: list[Event]) -> int:
        hold_id = self.next_hold_id
        self.next_hold_id = hold_id + 1
        self.holds[hold_id] = Hold(hold_id, member, account, amount, purpose, ref)
        out.append((HOLD_EVENT, seq, hold_id, member, account, amount, purpose, ref))
        return hold_id

    def release_part(self, hold_id: int, amount: int, seq: int, out: list[Event]) -> None:
        """Release `amount` of an open hold back to AVAILABLE; the hold stays open."""
        hold = self.holds[hold_id]
        assert 0 < amount <= hold.amount_fen, (amount, hold.amount_fen)
        self._post(TransferCode.RELEASE, hold.member, hold.account, hold.member, AVAILABLE, amount, hold.ref, seq, out)
        hold.amount_fen -= amount
        out.append((HOLD_CHANGED_EVENT, seq, hold_id, hold.amount_fen))

    def split(self, hold_id: int, amount: int, account: int, purpose: str, ref: str, seq: int, out: list[Event]) -> int:
        """Carve `amount` out of an open hold into a new hold of the same
        member in `account` (a MOVE transfer when the account differs)."""
        hold = self.holds[hold_id]
        assert 0 < amount <= hold.amount_fen, (amount, hold.amount_fen)
        assert account in (FROZEN_MARGIN, FROZEN_ESCROW)
        if account != hold.account:
            self._post(TransferCode.MOVE, hold.member, hold.account, hold.member, account, amount, ref, seq, out)
        hold.amount_fen -= amount
        out.append((HOLD_CHANGED_EVENT, seq, hold_id, hold.amount_fen))
        return self._open(hold.member, account, amount, purpose, ref, seq, out)

    def draw(
        self, hold_id: int, margin: int, fee: int, release: int, ref: str, seq: int, out: list[Event]
    ) -> tuple[int, int]:
        """Draw a FROZEN_MARGIN hold (an order's) down in one step for a
        trade: `margin` into a new FROZEN_MARGIN hold ("deal_margin"), `fee`
        into a new FROZEN_ESCROW hold ("deal_fee", a MOVE transfer) and
        `release` back to AVAILABLE. One HOLD_CHANGED carries the hold's
        amount after all three (the same as ``split``, ``split`` and
        ``release_part`` one after another, without their intermediate
        HOLD_CHANGED events). Returns (margin hold id, fee hold id), 0 for a
        zero part."""
        hold = self.holds[hold_id]
        member = hold.member
        assert hold.account == FROZEN_MARGIN, hold.to_list()
        assert margin >= 0
        assert fee >= 0
        assert release >= 0
        left = hold.amount_fen - margin - fee - release
        assert left >= 0, (hold_id, margin, fee, release, hold.amount_fen)
        bal = self.balances[member]
        holds = self.holds
        seq_o: object = seq  # boxed once for the events (the compiled build boxes an int at each use)
        margin_hold = fee_hold = 0
        hid = self.next_hold_id
        tid = self.next_transfer_id
        if margin:
            margin_hold = hid
            hid += 1
            key: Any = margin_hold
            holds[key] = Hold(margin_hold, member, FROZEN_MARGIN, margin, "deal_margin", ref)
            out.append((HOLD_EVENT, seq_o, key, member, FROZEN_MARGIN, margin, "deal_margin", ref))
        if fee:
            bal[FROZEN_MARGIN] -= fee
            bal[FROZEN_ESCROW] += fee
            fee_o: object = fee
            out.append(
                (
                    TRANSFER_EVENT,
                    seq_o,
                    tid,
                    TransferCode.MOVE,
                    member,
                    FROZEN_MARGIN,
                    member,
                    FROZEN_ESCROW,
                    fee_o,
                    ref,
                )
            )
            tid += 1
            fee_hold = hid
            hid += 1
            key = fee_hold
            holds[key] = Hold(fee_hold, member, FROZEN_ESCROW, fee, "deal_fee", ref)
            out.append((HOLD_EVENT, seq_o, key, member, FROZEN_ESCROW, fee_o, "deal_fee", ref))
        if release:
            bal[FROZEN_MARGIN] -= release
            bal[AVAILABLE] += release
            out.append(
                (
                    TRANSFER_EVENT,
                    seq_o,
                    tid,
                    TransferCode.RELEASE,
                    member,
                    FROZEN_MARGIN,
                    member,
                    AVAILABLE,
                    release,
                    hold.ref,
                )
            )
            tid += 1
        assert bal[FROZEN_MARGIN] >= 0, (member, bal)
        self.next_hold_id = hid
        self.next_transfer_id = tid
        hold.amount_fen = left
        out.append((HOLD_CHANGED_EVENT, seq_o, hold_id, left))
        return margin_hold, fee_hold

    def top_up(self, hold_id: int, amount: int, seq: int, out: list[Event]) -> bool:
        """Freeze `amount` more from AVAILABLE into an open hold; False
        (nothing changed) when AVAILABLE is short."""
        hold = self.holds[hold_id]
        assert 0 < amount <= MAX_AMOUNT_FEN
        if self.balances[hold.member][AVAILABLE] < amount:
            return False
        self._post(TransferCode.FREEZE, hold.member, AVAILABLE, hold.member, hold.account, amount, hold.ref, seq, out)
        hold.amount_fen += amount
        out.append((HOLD_CHANGED_EVENT, seq, hold_id, hold.amount_fen))
        return True

    def settle(self, hold_id: int, payouts: list[tuple[int, Account, int]], seq: int, out: list[Event]) -> None:
        """Close a hold: pay ``(code, credit account, amount_fen)`` legs out of
        it, release what is left to the member's AVAILABLE."""
        self.close(hold_id, payouts, HoldState.SETTLED, seq, out)

    def release(self, hold_id: int, seq: int, out: list[Event]) -> None:
        """Close a hold, all of it back to AVAILABLE."""
        self.close(hold_id, [], HoldState.RELEASED, seq, out)

    def forfeit(self, hold_id: int, payouts: list[tuple[int, Account, int]], seq: int, out: list[Event]) -> None:
        """Close a hold by forfeiting all of it to the `payouts` (which must add up to the hold)."""
        hold = self.holds[hold_id]
        assert sum(p[2] for p in payouts) == hold.amount_fen
        self.close(hold_id, payouts, HoldState.FORFEITED, seq, out)

    def close(
        self, hold_id: int, payouts: list[tuple[int, Account, int]], state: int, seq: int, out: list[Event]
    ) -> None:
        """Close a hold in `state` (HoldState): pay the `payouts` out of it, release the rest to
        AVAILABLE. ``settle``, ``release`` and ``forfeit`` name the three ways; hot paths that
        already know which call this directly."""
        hold_o: Any = hold_id  # boxed once for the pop and the event
        hold = self.holds.pop(hold_o)  # KeyError: closing a hold twice is a programmer error
        if not payouts:  # the common case (an order's hold): release what is left
            seq_o: object = seq
            rest = hold.amount_fen
            assert rest >= 0, (hold_id, rest)
            if rest:
                bal = self.balances[hold.member]
                bal[hold.account] -= rest
                bal[AVAILABLE] += rest
                assert bal[hold.account] >= 0, (hold.member, hold.account)
                tid = self.next_transfer_id
                self.next_transfer_id = tid + 1
                out.append(
                    (
                        TRANSFER_EVENT,
                        seq_o,
                        tid,
                        TransferCode.RELEASE,
                        hold.member,
                        hold.account,
                        hold.member,
                        AVAILABLE,
                        rest,
                        hold.ref,
                    )
                )
            self.closed_holds += 1
            out.append((HOLD_CLOSED_EVENT, seq_o, hold_o, state, 0, rest, 0))
            return
        paid = 0
        for code, (owner, account), amount in payouts:
            assert amount > 0
            self._check_account(owner, account)
            self._post(code, hold.member, hold.account, owner, account, amount, hold.ref, seq, out)
            paid += amount
        rest = hold.amount_fen - paid
        assert rest >= 0, (hold_id, paid, hold.amount_fen)
        if rest:
            self._post(
                TransferCode.RELEASE, hold.member, hold.account, hold.member, AVAILABLE, rest, hold.ref, seq, out
            )
        self.closed_holds += 1
        settled = paid if state == HoldState.SETTLED else 0
        forfeited = paid if state == HoldState.FORFEITED else 0
        out.append((HOLD_CLOSED_EVENT, seq, hold_id, state, settled, rest, forfeited))

    # ------------------------------------------------------------- invariants

    def check(self) -> None:
        """Assert the ledger's invariants: custody equals everything owed,
        nothing negative, frozen money covered fen for fen by open holds."""
        total = 0
        frozen: dict[tuple[str, int], int] = {}
        for hold in self.holds.values():
            assert hold.amount_fen >= 0, hold.to_list()
            key = (hold.member, hold.account)
            frozen[key] = frozen.get(key, 0) + hold.amount_fen
        for member, bal in self.balances.items():
            for account in MEMBER_ACCOUNTS:
                assert bal[account] >= 0, (member, account, bal[account])
                total += bal[account]
            assert bal[FROZEN_MARGIN] == frozen.get((member, FROZEN_MARGIN), 0), member
            assert bal[FROZEN_ESCROW] == frozen.get((member, FROZEN_ESCROW), 0), member
        for account in EXCHANGE_ACCOUNTS:
            assert self.exchange[account] >= 0, account
        total += self.exchange[FEE_INCOME] + self.exchange[RISK_FUND] + self.exchange[SUSPENSE]
        assert total == self.exchange[BANK_CUSTODY], (total, self.exchange[BANK_CUSTODY])

    # ------------------------------------------------------------------ state

    def export_state(self) -> dict[str, object]:
        return {
            "balances": {m: list(b) for m, b in sorted(self.balances.items())},
            "exchange": list(self.exchange),
            "holds": [self.holds[h].to_list() for h in sorted(self.holds)],
            "next_transfer_id": self.next_transfer_id,
            "next_hold_id": self.next_hold_id,
            "closed_holds": self.closed_holds,
        }

    @classmethod
    def from_state(cls, d: dict[str, object]) -> Ledger:
        ledger = cls()
        balances = d["balances"]
        assert isinstance(balances, dict)
        ledger.balances = {str(m): [int(x) for x in b] for m, b in balances.items()}
        exchange = d["exchange"]
        assert isinstance(exchange, list)
        ledger.exchange = [int(x) for x in exchange]
        holds = d["holds"]
        assert isinstance(holds, list)
        for h in holds:
            hold = Hold(int(h[0]), str(h[1]), int(h[2]), int(h[3]), str(h[4]), str(h[5]))
            ledger.holds[hold.hold_id] = hold
        ledger.next_transfer_id = int(d["next_transfer_id"])  # type: ignore[call-overload]
        ledger.next_hold_id = int(d["next_hold_id"])  # type: ignore[call-overload]
        ledger.closed_holds = int(d["closed_holds"])  # type: ignore[call-overload]
        return ledger
