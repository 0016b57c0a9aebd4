"""Clearing inside the running exchange: pre-trade risk through the core, bank
files through the sequencer and the CLI (real files on disk), the drop folder,
the end of day, racing withdrawals and the clearing read models. Every test
that touches the database runs on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from clearing import (
    C_DEAL,
    C_ORDER_REJECTED,
    C_WITHDRAWAL,
    BankDeposit,
    RegisterMember,
    RequestWithdrawal,
    WithdrawalStatus,
)
from clearing.bankfiles import (
    CLEARING,
    DEPOSITS,
    WITHDRAWAL_INSTRUCTIONS,
    ClearingRecord,
    DepositRecord,
    StatementAccount,
    parse_iso_file,
    parse_text_file,
    write_camt054,
    write_text_file,
)
from exchange import Ack, Core, Sequencer, Settings, catch_up_clearing, load_instruments, make_engine, stocking_commands
from matching import ACCEPTED, BUY, CONTINUOUS, REJECTED, SELL, Event, NewOrder, SetTradingState

INSTRUMENTS = load_instruments(Settings().instruments_file)
BANK = "ICBC"
KEY = b"test-key-do-not-use"
DATE = "2025-03-03"


@pytest.fixture(autouse=True)
def _bank_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKEX_BANK_KEY_ICBC", KEY.decode())
    monkeypatch.delenv("BULKEX_BANK_KEYS_FILE", raising=False)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def state_hash(url: str) -> str:
    with Sequencer(url) as sequencer:
        return sequencer.state_hash()


def register(url: str, members: list[str]) -> None:
    with Sequencer(url) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute([RegisterMember(m, BANK, f"SUB-{m}") for m in members])


def deposit_file(path: Path, file_id: str, deposits: list[tuple[str, str, int]]) -> Path:
    records = [DepositRecord(rid, sub, amount, DATE) for rid, sub, amount in deposits]
    path.write_bytes(write_text_file(DEPOSITS, BANK, file_id, DATE, records, KEY))
    return path


def test_order_the_member_cannot_afford_never_reaches_the_book() -> None:
    core = Core()
    out: list[Event] = []
    inst = INSTRUMENTS[0]
    core.apply(__import__("matching").ListInstrument(inst), 1, 0, out)
    core.apply(SetTradingState(inst.symbol, CONTINUOUS), 2, 0, out)
    core.apply(RegisterMember("M1", BANK, "S1"), 3, 0, out)
    core.apply(BankDeposit(BANK, "D1", "M1", 1_000, DATE), 4, 0, out)
    out.clear()
    price = inst.reference_price_ticks
    core.apply(NewOrder("M1", inst.symbol, "b1", BUY, price, 1), 5, 0, out)
    kinds = [e[0] for e in out]
    assert C_ORDER_REJECTED in kinds
    assert ACCEPTED not in kinds
    reject = next(e for e in out if e[0] == REJECTED)
    assert reject[4] == 80
    assert "shortfall" in reject[5]
    assert not core.matching.orders
    assert core.clearing.ledger.available("M1") == 1_000
    out.clear()
    core.apply(NewOrder("NOBODY", inst.symbol, "b1", BUY, price, 1), 6, 0, out)
    assert [e[0] for e in out] == [C_ORDER_REJECTED, REJECTED]
    # funded: the order rests with its hold, a crossing sell makes a deal
    core.apply(BankDeposit(BANK, "D2", "M1", 10**12, DATE), 7, 0, out)
    core.apply(RegisterMember("M2", BANK, "S2"), 8, 0, out)
    core.apply(BankDeposit(BANK, "D3", "M2", 10**12, DATE), 9, 0, out)
    stocking = stocking_commands([inst], ["M2"], receipts_each=1, lots_each=1)  # M2 sells goods it holds
    for seq, command in enumerate(stocking, 10):
        core.apply(command, seq, 0, out)
    out.clear()
    core.apply(NewOrder("M1", inst.symbol, "b2", BUY, price, 2), 14, 0, out)
    assert ACCEPTED in [e[0] for e in out]
    core.apply(NewOrder("M2", inst.symbol, "s1", SELL, price, 1), 15, 0, out)
    assert C_DEAL in [e[0] for e in out]
    core.check_invariants()
    held = core.clearing.orders[14]
    assert held.open_lots == 1


def test_bank_import_through_the_cli_and_reimport_changes_nothing(database_url: str, tmp_path: Path) -> None:
    register(database_url, ["M1", "M2"])
    path = deposit_file(tmp_path / "dep.txt", "DEP-1", [("R1", "SUB-M1", 50_000), ("R2", "SUB-M2", 12_345)])
    code, output = cli("bank", "import", str(path), "--database-url", database_url)
    assert code == 0, output
    assert "2 records" in output
    with Sequencer(database_url) as sequencer:
        ledger = sequencer.core.clearing.ledger
        assert (ledger.available("M1"), ledger.available("M2")) == (50_000, 12_345)
        before = sequencer.state_hash()
        last = sequencer.last_seq
    code, output = cli("bank", "import", str(path), "--database-url", database_url)
    assert code == 0, output
    assert "seen before" in output
    assert "nothing changed" in output
    with Sequencer(database_url) as sequencer:
        assert sequencer.last_seq == last + 1  # the repeat is journaled and answered
        ledger = sequencer.core.clearing.ledger
        assert (ledger.available("M1"), ledger.available("M2")) == (50_000, 12_345)
        assert (
            sequencer.core.export_state()["clearing"]["ledger"]
            == Core.from_state(sequencer.core.export_state()).clearing.export_state()["ledger"]
        )
    assert before != ""


def test_tampered_file_is_rejected_with_line_and_field_and_changes_nothing(database_url: str, tmp_path: Path) -> None:
    register(database_url, ["M1"])
    good = deposit_file(tmp_path / "dep.txt", "DEP-1", [("R1", "SUB-M1", 50_000)])
    tampered = tmp_path / "tampered.txt"
    tampered.write_bytes(good.read_bytes().replace(b"500.00", b"900.00"))
    before = state_hash(database_url)
    code, output = cli("bank", "import", str(tampered), "--database-url", database_url)
    assert code == 1
    assert f"{tampered}:4 field signature: BAD_SIGNATURE" in output
    assert state_hash(database_url) == before
    # a correctly signed file the ledger cannot apply (unknown sub-account) is refused whole
    partly = deposit_file(tmp_path / "partly.txt", "DEP-2", [("R1", "SUB-M1", 1), ("R2", "SUB-NOBODY", 2)])
    code, output = cli("bank", "import", str(partly), "--database-url", database_url)
    assert code == 1
    assert f"{partly}:3 field sub_account: BAD_FILE_RECORDS" in output
    assert "no member has sub-account SUB-NOBODY at ICBC" in output
    with Sequencer(database_url) as sequencer:
        assert sequencer.core.clearing.ledger.available("M1") == 0


def test_iso_notification_imports_with_the_channel_bank(database_url: str, tmp_path: Path) -> None:
    register(database_url, ["M1"])
    path = tmp_path / "camt054.xml"
    path.write_bytes(
        write_camt054("NTF-1", f"{DATE}T10:00:00", [StatementAccount("SUB-M1", 0, [("REF-1", 70_000, DATE)])])
    )
    assert parse_iso_file(path.read_bytes(), BANK).records
    code, output = cli("bank", "import", str(path), "--database-url", database_url, "--bank", BANK)
    assert code == 0, output
    with Sequencer(database_url) as sequencer:
        assert sequencer.core.clearing.ledger.available("M1") == 70_000


def test_drop_folder_moves_files_to_done_or_rejected(database_url: str, tmp_path: Path) -> None:
    register(database_url, ["M1"])
    folder = tmp_path / "drop"
    (folder / "in").mkdir(parents=True)
    deposit_file(folder / "in" / "a.txt", "DEP-A", [("RA", "SUB-M1", 100)])
    (folder / "in" / "b.txt").write_bytes((folder / "in" / "a.txt").read_bytes())  # the same file again
    (folder / "in" / "c.txt").write_bytes(b"H,BULKEX-BANK,1,DEPOSITS,ICBC,DEP-C,2025-03-03\nT,0,0.00\n")
    code, output = cli("bank", "watch", str(folder), "--once", "--database-url", database_url)
    assert code == 1, output  # one file was rejected
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in (folder / "rejected").iterdir()) == ["c.txt", "c.txt.reason.txt"]
    reason = (folder / "rejected" / "c.txt.reason.txt").read_text()
    assert "c.txt:2" in reason
    assert "TRUNCATED" in reason
    assert not list((folder / "in").iterdir())
    with Sequencer(database_url) as sequencer:
        assert sequencer.core.clearing.ledger.available("M1") == 100


def trading_day(url: str) -> None:
    """Two funded members trade, one asks to withdraw."""
    with Sequencer(url) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        inst = INSTRUMENTS[0]
        price = inst.reference_price_ticks
        acks = sequencer.execute(
            [
                SetTradingState(inst.symbol, CONTINUOUS),
                RegisterMember("M1", BANK, "SUB-M1"),
                RegisterMember("M2", BANK, "SUB-M2"),
                BankDeposit(BANK, "R1", "M1", 10**10, DATE),
                BankDeposit(BANK, "R2", "M2", 10**10, DATE),
                *stocking_commands([inst], ["M2"], receipts_each=1, lots_each=2),
                NewOrder("M1", inst.symbol, "b1", BUY, price, 3),
                NewOrder("M2", inst.symbol, "s1", SELL, price, 2),
                RequestWithdrawal("M2", "W-1", 5_000_000, "m2.user"),
            ]
        )
        assert sum(1 for a in acks for e in a.events if e[0] == C_DEAL) == 1


def test_end_of_day_rerun_writes_identical_files(database_url: str, tmp_path: Path) -> None:
    trading_day(database_url)
    out = tmp_path / "out"
    code, first_output = cli("clearing", "run", "--date", DATE, "--database-url", database_url, "--out", str(out))
    assert code == 0, first_output
    assert "closing business day" in first_output
    files = sorted((out / DATE).iterdir())
    first = {p.name: p.read_bytes() for p in files}
    assert f"{BANK}-CLEARING-{DATE}.txt" in first
    clearing_file = parse_text_file(first[f"{BANK}-CLEARING-{DATE}.txt"], {BANK: KEY})
    assert clearing_file.kind == CLEARING
    records = [r for r in clearing_file.records if isinstance(r, ClearingRecord)]
    assert [r.member for r in records] == ["M1", "M2"]
    assert all(r.adds_up() for r in records)
    assert records[0].deposits_fen == 10**10
    assert records[1].margin_frozen_fen > 0
    instructions = parse_text_file(first[f"{BANK}-WITHDRAWALS-{DATE}.txt"], {BANK: KEY})
    assert instructions.kind == WITHDRAWAL_INSTRUCTIONS
    assert [r.request_id for r in instructions.records] == ["W-1"]  # type: ignore[union-attr]
    assert b"<EndToEndId>W-1</EndToEndId>" in first[f"{BANK}-pain001-{DATE}.xml"]
    # more activity after the close does not change the day's files
    with Sequencer(database_url) as sequencer:
        sequencer.execute([BankDeposit(BANK, "R3", "M1", 777, "2025-03-04")])
    code, output = cli("clearing", "run", "--date", DATE, "--database-url", database_url, "--out", str(out))
    assert code == 0, output
    assert "closed already" in output
    assert {p.name: p.read_bytes() for p in sorted((out / DATE).iterdir())} == first
    code, output = cli("bank", "export", "--date", DATE, "--database-url", database_url, "--out", str(tmp_path / "e"))
    assert code == 0, output
    assert (tmp_path / "e" / DATE / f"{BANK}-CLEARING-{DATE}.txt").read_bytes() == first[f"{BANK}-CLEARING-{DATE}.txt"]


def test_clearing_read_models_follow_the_ledger(database_url: str) -> None:
    trading_day(database_url)
    projected = catch_up_clearing(database_url)
    with Sequencer(database_url) as sequencer:
        assert projected == sequencer.last_seq
        ledger = sequencer.core.clearing.ledger
        engine = make_engine(database_url)
        with engine.connect() as conn:
            balances = {
                m: [a, f, e]
                for m, a, f, e in conn.execute(
                    text("SELECT member, available_fen, frozen_margin_fen, frozen_escrow_fen FROM clearing_balances")
                )
            }
            transfers = conn.execute(
                text("SELECT COUNT(*), COALESCE(MAX(transfer_id), 0) FROM clearing_transfers")
            ).one()
            open_holds = conn.execute(text("SELECT COUNT(*) FROM clearing_holds WHERE state = 0")).scalar()
            deals = conn.execute(text("SELECT buyer, seller, state FROM clearing_deals")).all()
            withdrawals = conn.execute(
                text("SELECT request_id, status FROM clearing_withdrawals ORDER BY seq, step")
            ).all()
        engine.dispose()
    assert balances == {m: list(b) for m, b in ledger.balances.items()}
    assert tuple(transfers) == (ledger.next_transfer_id - 1, ledger.next_transfer_id - 1)
    assert open_holds == len(ledger.holds)
    assert [tuple(d) for d in deals] == [("M1", "M2", "open")]
    assert [tuple(w) for w in withdrawals] == [("W-1", WithdrawalStatus.PENDING_APPROVAL), ("W-1", "approved")]
    assert catch_up_clearing(database_url) == projected  # nothing new: nothing written


def test_two_withdrawals_racing_for_the_same_money(database_url: str) -> None:
    amount = 40_000_000
    with Sequencer(database_url) as sequencer:
        sequencer.execute([RegisterMember("M1", BANK, "SUB-M1"), BankDeposit(BANK, "R1", "M1", amount, DATE)])
        sequencer.start()
        barrier = threading.Barrier(2)
        acks: list[Ack | None] = [None, None]

        def request(i: int) -> None:
            barrier.wait()
            acks[i] = sequencer.submit(RequestWithdrawal("M1", f"W-{i}", amount, f"user{i}")).result(timeout=30)

        threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answered = [ack for ack in acks if ack is not None]
        assert len(answered) == 2, acks
        outcomes = [any(e[0] == C_WITHDRAWAL for e in ack.events) for ack in answered]
        assert sorted(outcomes) == [False, True], "exactly one withdrawal freezes the money"
        clearing = sequencer.core.clearing
        assert clearing.ledger.available("M1") == 0
        assert clearing.ledger.balances["M1"][2] == amount
        clearing.check_invariants()
        live = sequencer.state_hash()
    with Sequencer(database_url, use_snapshots=False) as sequencer:
        assert sequencer.state_hash() == live
        sequencer.core.clearing.check_invariants()
        assert sequencer.core.clearing.ledger.member_total("M1") == amount
