"""Reconciliation by value date: the bank's balance of a day against the
exchange's balance of the same day, whenever the bank's records arrive.

The exchange's balance of a closed day D is the close's available + frozen,
plus the bank money with a value date on or before D booked after the close
(deposits, withdrawals paid on the day they were instructed for), less the
deposits booked before the close with a later value date. A statement closes
the bank's open breaks of its own day and earlier days only; a break closes
too when bank money booked later explains it."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from clearing import (
    C_BREAK,
    C_REJECTED,
    C_STATEMENT,
    C_WITHDRAWAL,
    ApproveWithdrawal,
    BankBalance,
    BankDeposit,
    ClearingCode,
    ClearingConfig,
    ClearingEngine,
    CloseDay,
    CloseStatement,
    RegisterMember,
    RequestWithdrawal,
    WithdrawalResult,
)
from clearing.bankfiles import (
    BALANCES,
    BalanceRecord,
    ResultRecord,
    StatementAccount,
    parse_iso_file,
    parse_text_file,
    to_import_command,
    write_camt053,
    write_pain002,
    write_text_file,
)

BANK = "ICBC"
KEY = b"example-key-do-not-use"
D1, D2, D3 = "2025-03-03", "2025-03-04", "2025-03-05"
START_FEN = 100_000_000_000  # 1,000,000,000.00 CNY


class Clearing:
    """The clearing core alone, one command at a time, invariants checked after each."""

    def __init__(self, config: ClearingConfig | None = None) -> None:
        self.engine = ClearingEngine(config)
        self.seq = 0
        self.files = 0

    def cmd(self, command: Any) -> list[Any]:
        self.seq += 1
        out: list[Any] = []
        self.engine.apply(command, self.seq, self.seq, out)
        self.engine.check_invariants()
        return out

    def member(self, name: str, fen: int = START_FEN, value_date: str = D1) -> None:
        self.cmd(RegisterMember(name, BANK, f"SUB-{name}"))
        if fen:
            self.cmd(BankDeposit(BANK, f"open-{name}", name, fen, value_date))

    def total(self, member: str) -> int:
        return sum(self.engine.ledger.balances[member])

    def balances_file(self, date: str, balances: dict[str, int]) -> list[Any]:
        self.files += 1
        records = [BalanceRecord(f"SUB-{m}", fen, date) for m, fen in sorted(balances.items())]
        data = write_text_file(BALANCES, BANK, f"BAL-{date}-{self.files}", date, records, KEY)
        return self.cmd(to_import_command(parse_text_file(data, {BANK: KEY}), data))

    def statement(self, date: str, balances: dict[str, int]) -> list[Any]:
        self.files += 1
        statement_id = f"ST-{self.files}"
        for m, fen in sorted(balances.items()):
            assert not self.cmd(BankBalance(BANK, statement_id, f"SUB-{m}", fen, date))
        return self.cmd(CloseStatement(BANK, statement_id, date, len(balances)))

    def pain002(self, request_id: str, member: str, amount_fen: int, ok: bool = True) -> list[Any]:
        self.files += 1
        result = ResultRecord(f"RES-{request_id}", request_id, f"SUB-{member}", amount_fen, ok, "")
        data = write_pain002(f"PSR-{self.files}", "2025-03-04T06:00:00", "PAY-1", [(result, "ACSC" if ok else "RJCT")])
        return self.cmd(to_import_command(parse_iso_file(data, BANK), data))

    def withdraw(self, member: str, request_id: str, amount_fen: int) -> list[Any]:
        return self.cmd(RequestWithdrawal(member, request_id, amount_fen, f"{member}.staff"))

    def blocked(self, member: str) -> bool:
        """Does an open break block `member`'s withdrawals? (The probe is cancelled again.)"""
        self.files += 1
        out = self.withdraw(member, f"PROBE-{self.files}", 1)
        if out[0][0] == C_REJECTED:
            assert out[0][3] in (ClearingCode.OPEN_BREAK, ClearingCode.INSUFFICIENT_FUNDS), out
            return bool(out[0][3] == ClearingCode.OPEN_BREAK)
        self.cmd(WithdrawalResult(BANK, f"PROBE-R-{self.files}", f"PROBE-{self.files}", False, "probe"))
        return False


def opened(out: list[Any]) -> list[tuple[str, str, int, int]]:
    return [(e[5], e[6], e[7], e[8]) for e in out if e[0] == C_BREAK and e[9]]


def closed(out: list[Any]) -> list[int]:
    return [e[2] for e in out if e[0] == C_BREAK and not e[9]]


# ---------------------------------------------------------------- the table


def test_camt053_with_the_days_credits_after_the_close_matches() -> None:
    c = Clearing()
    c.member("M1")
    before = c.total("M1")
    c.cmd(CloseDay(D1))
    data = write_camt053(
        "ICBC-STMT-20250303", "2025-03-04T06:00:00", D1, [StatementAccount("SUB-M1", before, [("TX-9", 50_000, D1)])]
    )
    out = c.cmd(to_import_command(parse_iso_file(data, BANK), data))
    assert opened(out) == []
    assert next(e for e in out if e[0] == C_STATEMENT)[6] == 0
    assert c.total("M1") == before + 50_000
    assert not c.blocked("M1")


def test_camt053_with_a_real_difference_opens_a_break() -> None:
    c = Clearing()
    c.member("M1")
    before = c.total("M1")
    c.cmd(CloseDay(D1))
    # the bank's closing balance says one fen more than the opening + the credit
    data = write_camt053(
        "ICBC-STMT-20250303",
        "2025-03-04T06:00:00",
        D1,
        [StatementAccount("SUB-M1", before + 1, [("TX-9", 50_000, D1)])],
    )
    out = c.cmd(to_import_command(parse_iso_file(data, BANK), data))
    assert opened(out) == [("M1", "amount_differs", before + 50_001, before + 50_000)]
    assert c.blocked("M1")


def test_an_older_statement_leaves_a_newer_break_open() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.cmd(CloseDay(D1))
    c.cmd(CloseDay(D2))
    out = c.balances_file(D2, {"M1": total - 1})
    assert opened(out) == [("M1", "amount_differs", total - 1, total)]
    assert c.blocked("M1")
    out = c.balances_file(D1, {"M1": total})  # the older statement, matching, arrives later
    assert opened(out) == []
    assert closed(out) == []
    assert c.blocked("M1")
    out = c.balances_file(D2, {"M1": total})  # the bank's corrected statement of the same day
    assert len(closed(out)) == 1
    assert not c.blocked("M1")


def test_an_older_mismatching_statement_is_closed_by_a_newer_matching_one() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.cmd(CloseDay(D1))
    c.cmd(CloseDay(D2))
    assert opened(c.balances_file(D1, {"M1": total + 7})) == [("M1", "amount_differs", total + 7, total)]
    assert c.blocked("M1")
    out = c.balances_file(D2, {"M1": total})
    assert len(closed(out)) == 1
    assert not c.blocked("M1")


def test_pain002_after_the_close_for_a_withdrawal_paid_that_day() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    out = c.withdraw("M1", "W1", 30_000)
    assert [e[5] for e in out if e[0] == C_WITHDRAWAL] == ["pending_approval", "approved"]
    c.cmd(CloseDay(D1))  # W1 is in the close (frozen); the bank pays it on D1
    assert c.pain002("W1", "M1", 30_000)[-1][4:7] == ("pain.002", 1, 0)
    assert opened(c.balances_file(D1, {"M1": total - 30_000})) == []
    assert not c.blocked("M1")


def test_a_statement_before_the_pain002_is_explained_by_it() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.withdraw("M1", "W1", 30_000)
    c.cmd(CloseDay(D1))
    assert opened(c.balances_file(D1, {"M1": total - 30_000})) == [("M1", "amount_differs", total - 30_000, total)]
    assert c.blocked("M1")
    out = c.pain002("W1", "M1", 30_000)
    assert len(closed(out)) == 1
    assert not c.blocked("M1")


def test_a_rejected_payment_moves_nothing() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.withdraw("M1", "W1", 30_000)
    c.cmd(CloseDay(D1))
    c.pain002("W1", "M1", 30_000, ok=False)
    assert opened(c.balances_file(D1, {"M1": total})) == []


def test_a_withdrawal_approved_after_a_close_belongs_to_the_next_day() -> None:
    c = Clearing(ClearingConfig(withdrawal_approval_threshold_fen=10_000))
    c.member("M1")
    total = c.total("M1")
    c.withdraw("M1", "W1", 30_000)  # above the threshold: waits for a second person
    c.cmd(CloseDay(D1))
    c.cmd(ApproveWithdrawal("W1", "staff.wang"))  # instructed for D2
    c.cmd(CloseDay(D2))
    c.pain002("W1", "M1", 30_000)
    assert opened(c.statement(D1, {"M1": total})) == []
    assert opened(c.statement(D2, {"M1": total - 30_000})) == []


def test_a_late_deposit_counts_for_every_closed_day_from_its_value_date() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.cmd(CloseDay(D1))
    c.cmd(CloseDay(D2))
    c.cmd(BankDeposit(BANK, "DEP-LATE", "M1", 5_000, D1))  # value date D1, booked after the close of D2
    assert opened(c.statement(D1, {"M1": total + 5_000})) == []
    assert opened(c.statement(D2, {"M1": total + 5_000})) == []
    c.cmd(CloseDay(D3))
    assert opened(c.statement(D3, {"M1": total + 5_000})) == []


def test_a_deposit_value_dated_after_the_close_is_not_in_that_days_balance() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.cmd(BankDeposit(BANK, "DEP-FWD", "M1", 5_000, D2))  # booked on D1, value date D2
    c.cmd(CloseDay(D1))
    assert opened(c.statement(D1, {"M1": total})) == []
    c.cmd(CloseDay(D2))
    assert opened(c.statement(D2, {"M1": total + 5_000})) == []
    assert c.engine.forward == {}


def test_a_member_missing_at_the_bank_is_explained_by_a_late_withdrawal() -> None:
    c = Clearing()
    c.member("M1", 40_000)
    c.withdraw("M1", "W1", 40_000)
    c.cmd(CloseDay(D1))
    c.cmd(RegisterMember("M2", BANK, "SUB-M2"))
    c.cmd(BankDeposit(BANK, "DEP-M2", "M2", 1, D2))
    assert opened(c.statement(D1, {})) == [("M1", "missing_at_bank", 0, 40_000)]
    assert len(closed(c.pain002("W1", "M1", 40_000))) == 1
    assert not c.blocked("M1")


def test_value_dates_survive_export_and_restore() -> None:
    c = Clearing()
    c.member("M1")
    total = c.total("M1")
    c.withdraw("M1", "W1", 30_000)
    c.cmd(BankDeposit(BANK, "DEP-FWD", "M1", 5_000, D2))
    c.cmd(CloseDay(D1))
    c.cmd(BankDeposit(BANK, "DEP-LATE", "M1", 7_000, D1))
    c.balances_file(D1, {"M1": total + 1})  # a break of D1
    state = c.engine.export_state()
    again = ClearingEngine.from_state(state)
    assert again.export_state() == state
    again.check_invariants()
    c.engine = again
    assert c.blocked("M1")
    assert len(closed(c.pain002("W1", "M1", 30_000))) == 0  # does not explain the one fen
    assert opened(c.balances_file(D1, {"M1": total + 7_000 - 30_000})) == []
    assert not c.blocked("M1")


# --------------------------------------------------------------- properties

MEMBERS = ("A", "B")
FIRST_DAY = datetime.date(2025, 3, 3)


def day(n: int) -> str:
    return (FIRST_DAY + datetime.timedelta(days=n)).isoformat()


deposits = st.tuples(
    st.just("deposit"), st.sampled_from(MEMBERS), st.integers(1, 5_000_000), st.integers(-2, 0)
)  # member, fen, value date relative to the day it is booked
withdrawals = st.tuples(
    st.just("withdraw"), st.sampled_from(MEMBERS), st.integers(1, 3_000_000), st.booleans(), st.integers(0, 3)
)  # member, fen, paid by the bank?, days until the exchange books the bank's answer
statements = st.tuples(st.just("statement"), st.integers(0, 3))  # how many closed days back
actions = st.lists(st.one_of(deposits, withdrawals, statements), max_size=8)


class BankModel:
    """The bank's books: every deposit by value date, every payment on the day it was instructed for."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str, int]] = []  # value date, member, signed fen

    def balance(self, member: str, date: str) -> int:
        return sum(fen for d, m, fen in self.moves if m == member and d <= date)


def run_days(c: Clearing, bank: BankModel, days: list[list[Any]], tail: list[int]) -> None:
    """Day by day: each day's actions, then its close; the bank's answers
    come `delay` days after the instruction. Then `tail` orders the rest:
    the answers still due and a true statement of every closed day."""
    due: dict[int, list[tuple[str, bool]]] = {}  # day -> (request id, paid) answered that day
    # the bank has every credit from its value date on, however late the exchange books it
    bank.moves += [(day(n + a[3]), a[1], a[2]) for n, todo in enumerate(days) for a in todo if a[0] == "deposit"]
    statement_no = 0
    for n, todo in enumerate(days):
        for request_id, paid in due.pop(n, []):
            answer(c, request_id, paid)
        for action in todo:
            if action[0] == "deposit":
                _, member, fen, back = action
                statement_no += 1
                value_date = day(n + back)
                if closed(c.cmd(BankDeposit(BANK, f"D-{statement_no}", member, fen, value_date))):
                    event("a deposit explains an open break")
            elif action[0] == "withdraw":
                _, member, fen, paid, delay = action
                statement_no += 1
                request_id = f"W-{statement_no}"
                out = c.withdraw(member, request_id, fen)
                if out[0][0] == C_REJECTED:
                    continue  # not enough money, or an open break: no instruction
                if paid:
                    bank.moves.append((day(n), member, -fen))
                due.setdefault(n + delay, []).append((request_id, paid))
            else:
                back = action[1]
                if n - 1 - back >= 0:
                    date = day(n - 1 - back)
                    true_statement(c, bank, date)
        c.cmd(CloseDay(day(n)))
    rest: list[Any] = [("answer", item) for n in sorted(due) for item in due[n]]
    rest += [("statement", day(n)) for n in range(len(days))]
    turn = 0
    while rest:
        kind, item = rest.pop(tail[turn % len(tail)] % len(rest))
        turn += 1
        if kind == "answer":
            answer(c, *item)
        else:
            true_statement(c, bank, item)


def answer(c: Clearing, request_id: str, paid: bool) -> None:
    out = c.cmd(WithdrawalResult(BANK, f"R-{request_id}", request_id, paid, ""))
    if closed(out):
        event("a bank answer explains an open break")


def true_statement(c: Clearing, bank: BankModel, date: str) -> None:
    out = c.statement(date, {m: bank.balance(m, date) for m in MEMBERS})
    if opened(out):
        event("a true statement opens a break (bank money not booked yet)")
    if closed(out):
        event("a statement closes a break")


def setup_members() -> tuple[Clearing, BankModel]:
    c = Clearing(ClearingConfig(withdrawal_approval_threshold_fen=10_000_000))
    bank = BankModel()
    for m in MEMBERS:
        c.member(m, 10_000_000, day(0))
        bank.moves.append((day(0), m, 10_000_000))
    return c, bank


@settings(max_examples=300, deadline=None)
@given(
    days=st.lists(actions, min_size=1, max_size=4),
    tail=st.lists(st.integers(0, 1_000), min_size=1, max_size=40),
)
def test_true_statements_in_any_order_leave_no_break(days: list[list[Any]], tail: list[int]) -> None:
    c, bank = setup_members()
    run_days(c, bank, days, tail)
    assert c.engine.breaks == {}, c.engine.breaks
    for m in MEMBERS:
        assert not c.blocked(m)
        # conservation: the ledger's check ran after every command; the money is the bank's
        assert c.total(m) == bank.balance(m, "9999-12-31")


@settings(max_examples=200, deadline=None)
@given(
    days=st.lists(actions, min_size=1, max_size=3),
    member=st.sampled_from(MEMBERS),
    difference=st.integers(1, 1_000),
    more=st.booleans(),
    back=st.integers(0, 2),
)
def test_a_real_difference_blocks_until_a_later_matching_statement(
    days: list[list[Any]], member: str, difference: int, more: bool, back: int
) -> None:
    c, bank = setup_members()
    run_days(c, bank, days, [0])
    last = len(days) - 1
    wrong_day = day(max(0, last - back))
    truth = {m: bank.balance(m, wrong_day) for m in MEMBERS}
    truth[member] += difference if more or truth[member] < difference else -difference
    out = c.statement(wrong_day, truth)
    assert [(b[0], b[1]) for b in opened(out)] == [(member, "amount_differs")]
    assert c.blocked(member)
    # older statements, even matching ones, leave it open
    for n in range(max(0, last - back)):
        c.statement(day(n), {m: bank.balance(m, day(n)) for m in MEMBERS})
        assert c.blocked(member)
    # the next day's true statement closes it
    c.cmd(CloseDay(day(last + 1)))
    assert opened(c.statement(day(last + 1), {m: bank.balance(m, day(last + 1)) for m in MEMBERS})) == []
    assert c.engine.breaks == {}
    assert not c.blocked(member)
