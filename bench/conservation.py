"""Conservation under concurrency (in the manner of Jepsen's bank test), on any database,
meant for PostgreSQL.

    bulkex torture conservation --seconds 30 --seed 7 --database-url postgresql://...

Concurrent submitter threads move money and goods through every path the core has, into one
running sequencer:

- traders: limit orders (GTC and IOC) on two steel instruments, sells locking receipts, and
  mass cancels: holds frozen, released, trades opening deals;
- the bank: deposits, withdrawal requests and the bank's results (confirmed or refused);
- the warehouse and staff: for most deals the buyer's payment and the operator's delivery
  confirmation (delivery versus payment), for some nothing, so that deadline sweeps turn them
  into defaults (margin forfeited to the other side and the risk fund); receipts pledged to
  the bank and released.

The sequencer's clock runs four hours per second (deadlines pass within the run). Meanwhile two
readers check the totals continuously, never the live core:

- the journal reader follows the committed journal (each poll one consistent read, ending at a
  commit) and replays it into a core of its own; at every batch boundary (a new timestamp) the
  ledger must balance (sum of member and exchange accounts = custody, nothing negative, frozen
  money covered by holds) and custody must equal the deposits minus the confirmed
  withdrawals; goods conservation is checked after every poll;
- the SQL reader brings the clearing read models up to date and, in one transaction, checks
  that every member's balances row equals the sum of its transfers, that nothing is negative,
  and that the members' balances plus the exchange's accounts equal custody.

At the end the reader's state hash must equal the live state's and a replay's.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from bench.torture import BANK, DATE, OPERATOR, STEEL, _setup, _traders
from clearing import (
    BANK_CUSTODY,
    C_TRANSFER,
    FEE_INCOME,
    RISK_FUND,
    SUSPENSE,
    BankDeposit,
    RequestWithdrawal,
    TransferCode,
    WithdrawalResult,
)
from exchange import Core, Sequencer, Store, WriterStopped, catch_up_clearing, decode, make_engine
from matching import BUY, GTC, IOC, SELL, TRADE, MassCancel, NewOrder
from warehouse import (
    DL_SETTLED,
    ConfirmDelivery,
    PayDeal,
    PledgeReceipt,
    ReleasePledge,
    SweepDeadlines,
)

__all__ = ["ConservationFailure", "ConservationReport", "conservation"]

CLOCK_SPEED = 14_400
"""The sequencer's clock runs four hours per second: payment and delivery deadlines (business
days) pass within a run, so deadline sweeps produce defaults."""
MAX_SECONDS = 24 * 3600


class ConservationFailure(AssertionError):
    """A total did not add up; the message names the seed and the seq."""


@dataclass
class ConservationReport:
    seed: int
    database: str
    seconds: float = 0.0
    commands: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    journal_checks: int = 0
    sql_checks: int = 0
    last_seq: int = 0
    deposits_fen: int = 0
    withdrawals_fen: int = 0
    deliveries_settled: int = 0
    defaults: int = 0
    trades: int = 0

    def lines(self) -> list[str]:
        paths = ", ".join(f"{k} {v}" for k, v in sorted(self.by_path.items()))
        return [
            f"conservation on {self.database}, seed {self.seed}: {self.commands} commands in {self.seconds:.1f} s "
            f"({self.commands / max(self.seconds, 1e-9):.0f}/s), journal at seq {self.last_seq}",
            f"  by path: {paths}",
            f"  outcomes: {self.trades} trades, {self.deliveries_settled} deliveries settled, {self.defaults} "
            f"defaults, {self.deposits_fen} fen deposited, {self.withdrawals_fen} fen withdrawn",
            f"  checked: {self.journal_checks} batch boundaries by the journal reader, {self.sql_checks} "
            f"read-model totals by the SQL reader; the reader's final hash equals the live and the replayed",
        ]


class _Readers:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.seed = seed
        self.core = Core()
        self.last_seq = 0
        self.deposits_fen = 0
        self.withdrawals_fen = 0
        self.trades = 0
        self.journal_checks = 0
        self.sql_checks = 0
        self.failure: BaseException | None = None
        self.stop = threading.Event()

    def fail(self, message: str) -> ConservationFailure:
        return ConservationFailure(f"seed {self.seed}, seq {self.last_seq}: {message}")

    def _check_ledger(self) -> None:
        ledger = self.core.clearing.ledger
        try:
            ledger.check()
        except AssertionError as exc:
            raise self.fail(f"the ledger does not balance: {exc}") from None
        custody = ledger.exchange[BANK_CUSTODY]
        if custody != self.deposits_fen - self.withdrawals_fen:
            raise self.fail(f"custody {custody} != deposits {self.deposits_fen} - withdrawals {self.withdrawals_fen}")
        self.journal_checks += 1

    def poll_journal(self, store: Store) -> int:
        """Apply what was committed since the last poll; returns the commands read."""
        last_ts = -1
        count = 0
        for seq, ts_ns, kind, body, crc in store.journal(self.last_seq):
            if seq != self.last_seq + 1:
                raise self.fail(f"journal gap: seq {self.last_seq + 1} missing")
            if last_ts not in (ts_ns, -1):
                self._check_ledger()  # a batch boundary: a commit happened here
            last_ts = ts_ns
            out: list[Any] = []
            self.core.apply(decode(seq, kind, bytes(body), crc), seq, ts_ns, out)
            for e in out:
                if e[0] == TRADE:
                    self.trades += 1
                elif e[0] == C_TRANSFER and e[3] == TransferCode.DEPOSIT:
                    self.deposits_fen += e[8]
                elif e[0] == C_TRANSFER and e[3] == TransferCode.WITHDRAWAL:
                    self.withdrawals_fen += e[8]
            self.last_seq = seq
            count += 1
        if count:
            self._check_ledger()  # the end of a consistent read is a commit boundary
            problems = self.core.warehouse.conservation_problems()
            if problems:
                raise self.fail(f"goods not conserved: {problems[:3]}")
        return count

    def check_sql(self) -> None:
        catch_up_clearing(self.url)
        engine = make_engine(self.url)
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                balances = {
                    str(r[0]): (int(r[1]), int(r[2]), int(r[3]))
                    for r in conn.execute(
                        text(
                            "SELECT member, available_fen, frozen_margin_fen, frozen_escrow_fen FROM clearing_balances"
                        )
                    )
                }
                nets: dict[tuple[str, int], int] = {}
                for debit_member, debit_account, credit_member, credit_account, summed in conn.execute(
                    text(
                        "SELECT debit_member, debit_account, credit_member, credit_account, SUM(amount_fen) "
                        "FROM clearing_transfers GROUP BY debit_member, debit_account, credit_member, credit_account"
                    )
                ):
                    amount = int(summed)
                    nets[(debit_member, debit_account)] = nets.get((debit_member, debit_account), 0) - amount
                    nets[(credit_member, credit_account)] = nets.get((credit_member, credit_account), 0) + amount
        finally:
            engine.dispose()
        total = 0
        for member, row in balances.items():
            if min(row) < 0:
                raise self.fail(f"read model: {member} has a negative balance {row}")
            from_transfers = tuple(nets.get((member, account), 0) for account in range(3))
            if row != from_transfers:
                raise self.fail(f"read model: {member} balances {row} != its transfers {from_transfers}")
            total += sum(row)
        custody = -nets.get(("", BANK_CUSTODY), 0)
        exchange = sum(nets.get(("", account), 0) for account in (FEE_INCOME, RISK_FUND, SUSPENSE))
        if total + exchange != custody:
            raise self.fail(f"read model: members {total} + exchange {exchange} != custody {custody}")
        self.sql_checks += 1

    def run_journal(self) -> None:
        store = Store(self.url)
        store.connect()
        try:
            while True:
                stopping = self.stop.is_set()
                self.poll_journal(store)
                if stopping:
                    return
                time.sleep(0.05)
        except BaseException as exc:
            self.failure = exc
        finally:
            store.close()

    def run_sql(self) -> None:
        try:
            while not self.stop.wait(1.0):
                self.check_sql()
        except BaseException as exc:
            self.failure = self.failure or exc


def conservation(
    database_url: str, seconds: float, seed: int, traders: int = 8, log: Callable[[str], None] = print
) -> ConservationReport:
    """Run the load for `seconds` on an empty database; raise ConservationFailure when a total is off."""
    if not (0 < seconds <= MAX_SECONDS):
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], not {seconds}")
    if not (2 <= traders <= 64):
        raise ValueError(f"traders must be 2..64, not {traders}")
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    report = ConservationReport(seed, backend)
    accounts = _traders(traders)
    _setup(database_url, accounts)
    start_ns = time.time_ns()
    sequencer = Sequencer(
        database_url,
        snapshot_every_commands=5_000,
        clock=lambda: start_ns + (time.time_ns() - start_ns) * CLOCK_SPEED,
    )
    sequencer.start()
    deals: list[tuple[int, str, int]] = []
    deals_lock = threading.Lock()

    def on_commit(pairs: Any) -> None:
        found = [(e[2], e[7], e[5]) for _c, ack in pairs for e in ack.events if e[0] == TRADE]
        if found:
            with deals_lock:
                deals.extend(found)

    sequencer.listeners.append(on_commit)
    counts: dict[str, int] = {}
    counts_lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def submitter(name: str, make: Callable[[random.Random, int], list[Any]], salt: int) -> None:
        rnd = random.Random(seed * 1_000 + salt)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                commands = make(rnd, n)
                if not commands:
                    time.sleep(0.01)
                    continue
                tickets = sequencer.submit_many(commands)
                tickets[-1].result(timeout=60)
                with counts_lock:
                    for command in commands:
                        counts[type(command).KIND] = counts.get(type(command).KIND, 0) + 1
        except WriterStopped as exc:
            errors.append(exc)
        except BaseException as exc:
            errors.append(exc)

    def trader(account: str) -> Callable[[random.Random, int], list[Any]]:
        def make(rnd: random.Random, n: int) -> list[Any]:
            if n % 25 == 0:
                return [MassCancel(account, "")]
            out = []
            for k in range(rnd.randint(1, 8)):
                symbol = rnd.choice(STEEL)
                reference = 3_500 if symbol == STEEL[0] else 3_800
                side = rnd.choice((BUY, SELL))
                offset = rnd.randint(-6, 3) if side == BUY else rnd.randint(-3, 6)
                tif = IOC if rnd.random() < 0.2 else GTC
                out.append(
                    NewOrder(account, symbol, f"{account}-{n}-{k}", side, reference + offset, rnd.randint(1, 4), tif)
                )
            return out

        return make

    def bank(rnd: random.Random, n: int) -> list[Any]:
        member = rnd.choice(accounts)
        if n % 3:
            return [BankDeposit(BANK, f"CD-{seed}-{n}", member, rnd.randint(1, 10**8), DATE)]
        request = f"CW-{seed}-{n}"
        ok = rnd.random() < 0.7
        return [
            RequestWithdrawal(member, request, rnd.randint(1, 10**6), "conservation"),
            WithdrawalResult(BANK, f"CR-{seed}-{n}", request, ok, "" if ok else "account closed"),
        ]

    def warehouse(rnd: random.Random, n: int) -> list[Any]:
        if n % 20 == 0:
            return [SweepDeadlines("staff")]
        if n % 15 == 0:
            trader_account = rnd.choice(accounts)
            number = f"R-{trader_account}-{rnd.choice(STEEL)[:2]}-{rnd.randrange(30)}"
            return [PledgeReceipt(number, trader_account, BANK), ReleasePledge(number, BANK)]
        with deals_lock:
            taken = deals[:100]
            del deals[:100]
        out: list[Any] = []
        for deal_id, buyer, lots in taken:
            roll = rnd.random()
            if roll < 0.15:
                continue  # nobody pays: the deadline sweep defaults it
            out.append(PayDeal(deal_id, buyer))
            if roll < 0.25:
                continue  # paid, never delivered: the seller defaults
            out.append(ConfirmDelivery(deal_id, OPERATOR, lots * 9_900 + rnd.randint(0, lots * 200), True, 5))
        return out

    readers = _Readers(database_url, seed)
    threads = [threading.Thread(target=submitter, args=(a, trader(a), i), daemon=True) for i, a in enumerate(accounts)]
    threads.append(threading.Thread(target=submitter, args=("bank", bank, 901), daemon=True))
    threads.append(threading.Thread(target=submitter, args=("warehouse", warehouse, 902), daemon=True))
    reader_threads = [
        threading.Thread(target=readers.run_journal, daemon=True),
        threading.Thread(target=readers.run_sql, daemon=True),
    ]
    started = time.perf_counter()
    for thread in threads + reader_threads:
        thread.start()
    deadline = started + seconds
    while time.perf_counter() < deadline and readers.failure is None and not errors:
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    report.seconds = time.perf_counter() - started
    live_hash = sequencer.state_hash()
    live_seq = sequencer.committed_seq
    sequencer.close()
    readers.stop.set()
    for thread in reader_threads:
        thread.join(timeout=120)
    if readers.failure is not None:
        raise readers.failure
    if errors:
        raise ConservationFailure(f"seed {seed}: a submitter failed: {errors[0]!r}")
    readers.check_sql()
    if readers.last_seq != live_seq or readers.core.state_hash() != live_hash:
        raise ConservationFailure(
            f"seed {seed}: the journal reader ends at {readers.last_seq}, the writer at {live_seq}"
        )
    with Sequencer(database_url, use_snapshots=False) as replayed:
        if replayed.state_hash() != live_hash:
            raise ConservationFailure(f"seed {seed}: a replay differs from the live state")
    w = readers.core.warehouse
    report.commands = sum(counts.values())
    report.by_path = counts
    report.journal_checks = readers.journal_checks
    report.sql_checks = readers.sql_checks
    report.last_seq = live_seq
    report.deposits_fen = readers.deposits_fen
    report.withdrawals_fen = readers.withdrawals_fen
    report.deliveries_settled = sum(1 for d in w.deliveries.values() if d.state == DL_SETTLED)
    report.defaults = sum(1 for d in w.deliveries.values() if "default" in str(d.state).lower())
    report.trades = readers.trades
    log("\n".join(report.lines()))
    return report
