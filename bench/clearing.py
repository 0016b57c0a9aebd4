"""Clearing at scale: the end of day for many members and trades, and a
large bank file import.

    bulkex bench clearing [--database-url URL] [--members 10000] [--trades 1000000] [--deposits 100000] [--json]

End of day. The state is built quickly and untimed: a core in memory gets
the members (one bank, funded), resting sells of every member and one-lot
buys crossing them until the trades are done, 1 % of the members asking to
withdraw, and the day's close (CloseDay); the clearing read models the end
of day reads (transfers, withdrawals, the closed day) are written to the
database in bulk. Timed: ``exchange.day_files`` (the day's movement sums
from the transfers table, the clearing file, the withdrawal instructions as
text and pain.001, statements, the reconciliation report), then the
reconciliation of a bank statement of every member against the close.

Bank import. A signed DEPOSITS file of N records for the members; timed:
parse, BankFileImport through ``Sequencer.execute`` (apply and commit, one
transaction, all or nothing).

Without --database-url a temporary SQLite file is used; the figures of
record are on PostgreSQL (a database is created and dropped).
"""

from __future__ import annotations

import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._database import with_database
from bench.workload import BENCH_INSTRUMENT, BENCH_LIMITS, SYMBOL
from clearing import BankDeposit, CloseDay, RegisterMember, RequestWithdrawal, reconcile
from clearing.bankfiles import DEPOSITS, DepositRecord, write_text_file
from exchange import ClearingProjection, Core, Sequencer, day_files, import_bank_file, make_engine, upgrade
from matching import BUY, CONTINUOUS, IOC, SELL, ListInstrument, MatchingEngine, NewOrder, SetTradingState
from matching._native import native_status

__all__ = ["report", "run"]

BANK = "BENCHBANK"
KEY = b"bench-key"
DATE = "2025-03-03"
FUNDS_FEN = 10**12


def _members(count: int) -> list[str]:
    return [f"M{n:05d}" for n in range(count)]


def build_day(members: int, trades: int) -> tuple[Core, ClearingProjection]:
    """A closed day: `trades` one-lot trades between `members` funded members."""
    core = Core(MatchingEngine(BENCH_LIMITS))
    projection = ClearingProjection()
    out: list[Any] = []
    seq = 0

    def apply(command: Any) -> None:
        nonlocal seq
        seq += 1
        core.apply(command, seq, 1_741_000_000_000_000_000, out)
        projection.add(out, seq, 1_741_000_000_000_000_000)
        out.clear()

    names = _members(members)
    apply(ListInstrument(BENCH_INSTRUMENT))
    apply(SetTradingState(SYMBOL, CONTINUOUS))
    for m in names:
        apply(RegisterMember(m, BANK, f"S{m}"))
        apply(BankDeposit(BANK, f"F{m}", m, FUNDS_FEN, DATE))
    price = BENCH_INSTRUMENT.reference_price_ticks
    lots_per_sell = max(1, min(BENCH_INSTRUMENT.max_lots, -(-trades // members)))
    done = 0
    buyer = 0
    for i, seller in enumerate(names):
        if done >= trades:
            break
        apply(NewOrder(seller, SYMBOL, f"s{i}", SELL, price, lots_per_sell))
        for _ in range(min(lots_per_sell, trades - done)):
            b = names[(buyer + members // 2) % members]
            buyer += 1
            apply(NewOrder(b, SYMBOL, f"b{buyer}", BUY, price, 1, IOC))
            done += 1
    for m in names[:: max(1, members // 100)]:
        apply(RequestWithdrawal(m, f"W{m}", 1_000_000, "staff.a"))
    apply(CloseDay(DATE))
    return core, projection


def _write_models(url: str, core: Core, projection: ClearingProjection) -> None:
    """The read models the end of day reads, in bulk (PostgreSQL: COPY)."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if url.startswith("postgresql"):
                raw = conn.connection.dbapi_connection
                assert raw is not None
                buffer = io.StringIO()
                for t in projection.transfers:
                    buffer.write(
                        f"{t['transfer_id']}\t{t['seq']}\t{t['code']}\t{t['debit_member']}\t{t['debit_account']}\t"
                        f"{t['credit_member']}\t{t['credit_account']}\t{t['amount_fen']}\t{t['ref']}\n"
                    )
                buffer.seek(0)
                cur: Any = raw.cursor()
                cur.copy_expert(
                    "COPY clearing_transfers (transfer_id, seq, code, debit_member, debit_account, credit_member, "
                    "credit_account, amount_fen, ref) FROM STDIN",
                    buffer,
                )
                cur.close()
                transfers = projection.transfers
                projection.transfers = []
                projection.write(conn, core)
                projection.transfers = transfers
            else:
                projection.write(conn, core)
    finally:
        engine.dispose()


def _end_of_day(url: str, members: int, trades: int) -> dict[str, Any]:
    started = time.perf_counter()
    core, projection = build_day(members, trades)
    built = time.perf_counter() - started
    transfers = len(projection.transfers)
    _write_models(url, core, projection)
    written = time.perf_counter() - started - built
    os.environ.setdefault("BULKEX_BANK_KEY_" + BANK, KEY.decode())
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        paths = day_files(core, url, DATE, Path(folder), {BANK: KEY}, lambda _line: None)
        files_s = time.perf_counter() - started
        sizes = sum(p.stat().st_size for p in paths)
    clearing = core.clearing
    closing = clearing.closings[DATE]
    started = time.perf_counter()
    statement = {clearing.members[m][1]: a + f for m, (a, f) in closing.items()}
    statement[clearing.members[_members(members)[0]][1]] += 1  # one break, to see one
    at_bank = {m: sub for m, (_b, sub) in clearing.members.items()}
    breaks = reconcile(BANK, statement, clearing.sub_accounts, at_bank, {m: a + f for m, (a, f) in closing.items()})
    reconcile_s = time.perf_counter() - started
    assert len(breaks) == 1, breaks
    return {
        "members": members,
        "trades": clearing.ledger.next_hold_id and len(clearing.deals),
        "transfers": transfers,
        "build_s": round(built, 2),
        "write_models_s": round(written, 2),
        "files_s": round(files_s, 2),
        "file_bytes": sizes,
        "reconcile_s": round(reconcile_s, 3),
        "end_of_day_s": round(files_s + reconcile_s, 2),
    }


def _bank_import(url: str, members: int, deposits: int) -> dict[str, Any]:
    names = _members(members)
    with Sequencer(url, snapshot_every_commands=0) as sequencer:
        sequencer.execute([RegisterMember(m, BANK, f"S{m}") for m in names])
        records = [DepositRecord(f"D{n:07d}", f"S{names[n % members]}", 100 + n, DATE) for n in range(deposits)]
        data = write_text_file(DEPOSITS, BANK, "BENCH-DEP-1", DATE, records, KEY)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "deposits.txt"
            path.write_bytes(data)
            started = time.perf_counter()
            try:
                result = import_bank_file(sequencer, path, {BANK: KEY})
            except ValueError as exc:
                return {"deposits": deposits, "file_bytes": len(data), "error": str(exc)}
            elapsed = time.perf_counter() - started
        assert result.status == "applied", result.message
        total = sum(sequencer.core.clearing.ledger.available(m) for m in names)
    return {
        "deposits": deposits,
        "file_bytes": len(data),
        "import_s": round(elapsed, 2),
        "booked_fen": total,
    }


def run(
    database_url: str | None, members: int = 10_000, trades: int = 1_000_000, deposits: int = 100_000
) -> dict[str, Any]:
    eod = with_database(database_url, "clearing", lambda url: _end_of_day(url, members, trades))
    bank_import = with_database(database_url, "clearing", lambda url: _bank_import(url, members, deposits))
    backend = "postgresql" if database_url and database_url.startswith("postgresql") else "sqlite"
    return {
        "benchmark": "clearing",
        "database": backend,
        "python": platform.python_version(),
        "build": native_status()[1],
        "end_of_day": eod,
        "bank_import": bank_import,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    eod = result["end_of_day"]
    print(
        f"end of day on {result['database']}: {eod['members']:,} members, {eod['trades']:,} trades, "
        f"{eod['transfers']:,} transfers: files {eod['files_s']} s + reconciliation {eod['reconcile_s']} s "
        f"= {eod['end_of_day_s']} s (state built in {eod['build_s']} s, read models written in "
        f"{eod['write_models_s']} s, untimed)"
    )
    imp = result["bank_import"]
    if "error" in imp:
        print(f"bank import of {imp['deposits']:,} deposits ({imp['file_bytes']:,} bytes): {imp['error']}")
    else:
        print(f"bank import of {imp['deposits']:,} deposits ({imp['file_bytes']:,} bytes): {imp['import_s']} s")
    if as_json:
        print(json.dumps(result))
