"""Bank files on disk: every import and export format round-tripped, every
tampering case rejected with its code, line and field and changing nothing,
re-imports as no-ops, and the end-of-day clearing file re-run identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clearing import (
    C_DUPLICATE,
    C_FILE,
    C_REJECTED,
    C_TRANSFER,
    BankDeposit,
    ClearingCode,
    CloseDay,
    RegisterMember,
    RequestWithdrawal,
    build_clearing_records,
    instruction_records,
)
from clearing.bankfiles import (
    BALANCES,
    CLEARING,
    DEPOSITS,
    WITHDRAWAL_INSTRUCTIONS,
    WITHDRAWAL_RESULTS,
    BalanceRecord,
    DepositRecord,
    FileError,
    FileErrorCode,
    ResultRecord,
    StatementAccount,
    format_amount,
    parse_amount,
    parse_iso_file,
    parse_text_file,
    sign_body,
    to_import_command,
    write_camt053,
    write_camt054,
    write_pain001,
    write_pain002,
    write_text_file,
)
from matching import BUY, SELL, NewOrder
from tests.test_clearing_engine import BANK, REBAR, Combined

KEY = b"bank-shared-secret-0123456789abcdef"
KEYS = {BANK: KEY}


def resign(data: bytes) -> bytes:
    """Re-sign changed contents (a bank that signs a wrong file)."""
    body = data[: data.rindex(b"S,HMAC-SHA256,")]
    return body + sign_body(body, KEY)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def exchange() -> Combined:
    ex = Combined()
    ex.list_instrument(REBAR)
    for m in ("A", "B", "C"):
        ex.cmd(RegisterMember(m, BANK, f"62220{m}"))
    return ex


def deposits_file() -> bytes:
    records = [
        DepositRecord("DEP-001", "62220A", 50_000_000, "2025-03-03"),
        DepositRecord("DEP-002", "62220B", 12_345_678, "2025-03-03"),
        DepositRecord("DEP-003", "62220C", 1, "2025-03-03"),
    ]
    return write_text_file(DEPOSITS, BANK, "ICBC-DEP-20250303-1", "2025-03-03", records, KEY)


def state_and_error(ex: Combined, data: bytes, name: str) -> tuple[dict[str, Any], FileError]:
    before = ex.clearing.export_state()
    with pytest.raises(FileError) as info:
        parse_text_file(data, KEYS, name=name)
    return before, info.value


# ------------------------------------------------------------------ amounts


@pytest.mark.parametrize(("text", "fen"), [("0", 0), ("12", 1200), ("12.5", 1250), ("1234.56", 123_456), ("0.01", 1)])
def test_amounts_exact(text: str, fen: int) -> None:
    assert parse_amount(text) == fen
    assert parse_amount(format_amount(fen)) == fen


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1.234", FileErrorCode.SUB_FEN_AMOUNT),
        ("1.230", FileErrorCode.SUB_FEN_AMOUNT),
        ("1e3", FileErrorCode.BAD_AMOUNT),
        ("+1", FileErrorCode.BAD_AMOUNT),
        (" 1", FileErrorCode.BAD_AMOUNT),
        ("1,000", FileErrorCode.BAD_AMOUNT),
        (".5", FileErrorCode.BAD_AMOUNT),
        ("5.", FileErrorCode.BAD_AMOUNT),
        ("-1", FileErrorCode.BAD_AMOUNT),
        ("١٢", FileErrorCode.BAD_AMOUNT),
        ("99999999999999999", FileErrorCode.BAD_AMOUNT),
    ],
)
def test_amounts_refused(text: str, code: FileErrorCode) -> None:
    with pytest.raises(FileError) as info:
        parse_amount(text, line=7, field="amount")
    assert info.value.code == code
    assert (info.value.line, info.value.field) == (7, "amount")


# ------------------------------------------------------------ text format


def test_deposit_file_round_trip_and_reimport(tmp_path: Path) -> None:
    ex = exchange()
    path = write(tmp_path, "deposits.csv", deposits_file())
    data = path.read_bytes()
    parsed = parse_text_file(data, KEYS, name=path.name)
    assert [r.amount_fen for r in parsed.records if isinstance(r, DepositRecord)] == [50_000_000, 12_345_678, 1]
    assert write_text_file(parsed.kind, parsed.bank, parsed.file_id, parsed.business_date, parsed.records, KEY) == data
    out = ex.cmd(to_import_command(parsed, data))
    assert next(e for e in out if e[0] == C_FILE)[5:] == (3, 0)
    assert ex.bal("B") == 12_345_678
    before = ex.clearing.export_state()
    again = ex.cmd(to_import_command(parse_text_file(path.read_bytes(), KEYS), path.read_bytes()))
    assert again[0][0] == C_DUPLICATE
    assert ex.clearing.export_state() == before
    # a new file repeating two old records and one new: old ones skipped, new one applied
    records = [*parsed.records[:2], DepositRecord("DEP-004", "62220A", 5, "2025-03-04")]
    data2 = write_text_file(DEPOSITS, BANK, "ICBC-DEP-20250304-1", "2025-03-04", records, KEY)
    out = ex.cmd(to_import_command(parse_text_file(data2, KEYS), data2))
    assert next(e for e in out if e[0] == C_FILE)[5:] == (1, 2)
    assert ex.bal("A") == 50_000_005
    # same file id, other contents: refused
    data3 = write_text_file(DEPOSITS, BANK, "ICBC-DEP-20250304-1", "2025-03-04", records[:1], KEY)
    out = ex.cmd(to_import_command(parse_text_file(data3, KEYS), data3))
    assert out[0][3] == ClearingCode.FILE_ID_REUSED
    ex.check()


def test_file_with_one_bad_record_applies_nothing(tmp_path: Path) -> None:
    ex = exchange()
    records = [
        DepositRecord("DEP-1", "62220A", 100, "2025-03-03"),
        DepositRecord("DEP-2", "UNKNOWN", 100, "2025-03-03"),
    ]
    data = write(tmp_path, "d.csv", write_text_file(DEPOSITS, BANK, "F-1", "2025-03-03", records, KEY)).read_bytes()
    before = ex.clearing.export_state()
    out = ex.cmd(to_import_command(parse_text_file(data, KEYS), data))
    detail = "record 2 field sub_account: UNKNOWN_MEMBER: no member has sub-account UNKNOWN at ICBC"
    assert out == [(C_REJECTED, ex.seq, "F-1", ClearingCode.BAD_FILE_RECORDS, detail)]
    assert ex.clearing.export_state() == before


def tamper_cases() -> list[tuple[str, bytes, FileErrorCode, int, str]]:
    good = deposits_file()
    lines = good.split(b"\n")
    return [
        ("bad hmac", good.replace(b"500000.00", b"600000.00"), FileErrorCode.BAD_SIGNATURE, 6, "signature"),
        ("wrong count", resign(good.replace(b"\nT,3,", b"\nT,4,")), FileErrorCode.COUNT_MISMATCH, 5, "record_count"),
        (
            "wrong control sum",
            resign(good.replace(b"DEP-003,62220C,0.01", b"DEP-003,62220C,0.02")),
            FileErrorCode.CONTROL_SUM_MISMATCH,
            5,
            "amount_total",
        ),
        ("truncated mid-line", good[:-20], FileErrorCode.TRUNCATED, 6, ""),
        ("truncated at a line", b"\n".join(lines[:4]) + b"\n", FileErrorCode.TRUNCATED, 4, "signature"),
        ("bad field", resign(good.replace(b"DEP-002", b"DEP 002")), FileErrorCode.BAD_FIELD, 3, "record_id"),
        ("sub-fen amount", resign(good.replace(b"0.01,", b"0.011,")), FileErrorCode.SUB_FEN_AMOUNT, 4, "amount"),
        (
            "bad date",
            resign(good.replace(b"0.01,2025-03-03", b"0.01,2025-02-30")),
            FileErrorCode.BAD_DATE,
            4,
            "value_date",
        ),
        (
            "duplicate record",
            resign(good.replace(b"DEP-003", b"DEP-001")),
            FileErrorCode.DUPLICATE_RECORD,
            4,
            "record_id",
        ),
        ("field count", resign(good.replace(b"DEP-003,", b"DEP-003,X,")), FileErrorCode.FIELD_COUNT, 4, ""),
        ("not utf-8", good.replace(b"DEP-002", b"DEP-\xff02"), FileErrorCode.NOT_UTF8, 3, ""),
        ("unknown bank", good.replace(b",ICBC,", b",ABC,"), FileErrorCode.UNKNOWN_BANK, 1, "bank"),
        ("bad header", b"X" + good[1:], FileErrorCode.BAD_HEADER, 1, "header"),
        ("data after signature", good + b"D,x\n", FileErrorCode.DATA_AFTER_SIGNATURE, 7, ""),
        (
            "record type",
            resign(good.replace(b"\nD,DEP-002", b"\nW,DEP-002")),
            FileErrorCode.BAD_RECORD_TYPE,
            3,
            "record_type",
        ),
    ]


@pytest.mark.parametrize(("name", "data", "code", "line", "field"), tamper_cases(), ids=[c[0] for c in tamper_cases()])
def test_tampered_text_files(
    tmp_path: Path, name: str, data: bytes, code: FileErrorCode, line: int, field: str
) -> None:
    ex = exchange()
    path = write(tmp_path, "tampered.csv", data)
    before, err = state_and_error(ex, path.read_bytes(), path.name)
    assert (err.code, err.line, err.field) == (code, line, field), err.message
    assert err.file == "tampered.csv"
    assert "tampered.csv" in err.message
    assert ex.clearing.export_state() == before


def test_limits_on_file_size_and_records() -> None:
    data = deposits_file()
    with pytest.raises(FileError) as info:
        parse_text_file(data, KEYS, max_bytes=len(data) - 1)
    assert info.value.code == FileErrorCode.FILE_TOO_LARGE
    parse_text_file(data, KEYS, max_bytes=len(data), max_records=3)
    with pytest.raises(FileError) as info:
        parse_text_file(data, KEYS, max_records=2)
    assert info.value.code == FileErrorCode.TOO_MANY_RECORDS


def test_results_balances_and_instruction_files(tmp_path: Path) -> None:
    ex = exchange()
    ex.cmd(BankDeposit(BANK, "D1", "A", 10_000_000, "2025-03-03"))
    ex.cmd(RequestWithdrawal("A", "W-1", 3_000_000, "alice"))
    ex.cmd(RequestWithdrawal("A", "W-2", 1_000_000, "alice"))
    instructions = instruction_records(ex.clearing, BANK)
    data = write(
        tmp_path,
        "wd.csv",
        write_text_file(WITHDRAWAL_INSTRUCTIONS, BANK, "WD-20250303", "2025-03-03", instructions, KEY),
    ).read_bytes()
    assert list(parse_text_file(data, KEYS).records) == instructions
    results = [
        ResultRecord("BR-1", "W-1", "62220A", 3_000_000, True, ""),
        ResultRecord("BR-2", "W-2", "62220A", 1_000_000, False, "AC04 account closed"),
    ]
    data = write(
        tmp_path, "res.csv", write_text_file(WITHDRAWAL_RESULTS, BANK, "RES-1", "2025-03-03", results, KEY)
    ).read_bytes()
    parsed = parse_text_file(data, KEYS)
    assert list(parsed.records) == results
    ex.cmd(to_import_command(parsed, data))
    assert ex.bal("A") == 7_000_000
    ex.cmd(CloseDay("2025-03-03"))
    balances = [BalanceRecord("62220A", 7_000_000, "2025-03-03"), BalanceRecord("62220B", 0, "2025-03-03")]
    data = write(
        tmp_path, "bal.csv", write_text_file(BALANCES, BANK, "BAL-1", "2025-03-03", balances, KEY)
    ).read_bytes()
    out = ex.cmd(to_import_command(parse_text_file(data, KEYS), data))
    assert next(e for e in out if e[0] == 115)[6] == 0  # no breaks
    ex.check()


# ---------------------------------------------------------------- end of day


def run_day(ex: Combined) -> list[Any]:
    ex.cmd(BankDeposit(BANK, "D-A", "A", 100_000_000, "2025-03-03"))
    ex.cmd(BankDeposit(BANK, "D-B", "B", 100_000_000, "2025-03-03"))
    ex.cmd(CloseDay("2025-03-03"))
    start = len(ex.events)
    ex.order(NewOrder("A", "RB2510", "s1", SELL, 3800, 2))
    out = ex.order(NewOrder("B", "RB2510", "b1", BUY, 3810, 3))
    deal_id = next(e[2] for e in out if e[0] == 110)
    ex.deal("escrow_payment", deal_id)
    ex.deal("settle_deal", deal_id, 7_590_000)
    ex.cmd(BankDeposit(BANK, "D-C", "C", 5_000, "2025-03-04"))
    ex.cmd(RequestWithdrawal("C", "W-C", 2_000, "c"))
    ex.cmd(CloseDay("2025-03-04"))
    return ex.events[start:]


def test_clearing_file_adds_up_and_reruns_identically(tmp_path: Path) -> None:
    ex = exchange()
    day = run_day(ex)
    opening = ex.clearing.opening_balances("2025-03-04")
    closing = ex.clearing.closings["2025-03-04"]
    records = build_clearing_records(ex.clearing.members, BANK, opening, day, closing)
    by_member = {r.member: r for r in records}
    a, b = by_member["A"], by_member["B"]
    assert (a.settlement_in_fen, a.fees_fen, a.closing_available_fen) == (7_590_000, 1_520, 107_588_480)
    # the trade: 2 lots at 3800 (the resting sell's price) = 7,600,000 fen; the buyer is the taker (5 bp)
    assert (b.settlement_out_fen, b.fees_fen) == (7_590_000, 3_800)
    # frozen: the order's hold (3 lots at the buy limit 3810) and the escrow (the price less the deal margin)
    assert b.margin_frozen_fen == 3 * (381_000 + 1_905) + (7_600_000 - 760_000)
    assert b.closing_frozen_fen == 381_000 + 1_905  # the 1 lot still resting
    data = write_text_file(CLEARING, BANK, "CLR-20250304", "2025-03-04", records, KEY)
    path = write(tmp_path, "clearing-2025-03-04.csv", data)
    again = build_clearing_records(ex.clearing.members, BANK, opening, day, closing)
    assert write_text_file(CLEARING, BANK, "CLR-20250304", "2025-03-04", again, KEY) == path.read_bytes()
    assert list(parse_text_file(path.read_bytes(), KEYS).records) == records
    assert b"C,A,62220A," in data
    assert b",1075884.80," in data
    broken = resign(data.replace(b",1075884.80,", b",1075884.81,"))
    with pytest.raises(FileError) as info:
        parse_text_file(broken, KEYS)
    assert info.value.code == FileErrorCode.BALANCE_MISMATCH
    with pytest.raises(ValueError, match="ledger closed"):
        build_clearing_records(ex.clearing.members, BANK, opening, [e for e in day if e[-1] != "wd:W-C"], closing)
    assert all(e[0] != C_TRANSFER or e[8] > 0 for e in day)


# ---------------------------------------------------------------- ISO 20022


def test_camt053_and_camt054_import(tmp_path: Path) -> None:
    ex = exchange()
    ex.cmd(CloseDay("2025-03-03"))
    camt054 = write(
        tmp_path,
        "n.xml",
        write_camt054(
            "N-1", "2025-03-04T10:00:00", [StatementAccount("62220A", 0, [("BNK-1", 250_000, "2025-03-04")])]
        ),
    ).read_bytes()
    parsed = parse_iso_file(camt054, BANK, name="n.xml")
    assert list(parsed.records) == [DepositRecord("BNK-1", "62220A", 250_000, "2025-03-04")]
    ex.cmd(to_import_command(parsed, camt054))
    ex.cmd(CloseDay("2025-03-04"))
    camt053 = write(
        tmp_path,
        "s.xml",
        write_camt053(
            "S-1",
            "2025-03-05T06:00:00",
            "2025-03-04",
            [
                StatementAccount("62220A", 0, [("BNK-1", 250_000, "2025-03-04")]),
                StatementAccount("62220B", 0, []),
            ],
        ),
    ).read_bytes()
    parsed = parse_iso_file(camt053, BANK, name="s.xml")
    assert parsed.business_date == "2025-03-04"
    assert BalanceRecord("62220A", 250_000, "2025-03-04") in parsed.records
    out = ex.cmd(to_import_command(parsed, camt053))
    file_event = next(e for e in out if e[0] == C_FILE)
    assert file_event[5:] == (0, 1)  # the deposit was already booked from the camt.054
    assert next(e for e in out if e[0] == 115)[6] == 0
    assert ex.bal("A") == 250_000
    ex.check()


def test_pain001_export_and_pain002_import(tmp_path: Path) -> None:
    ex = exchange()
    ex.cmd(BankDeposit(BANK, "D1", "A", 10_000_000, "2025-03-03"))
    ex.cmd(RequestWithdrawal("A", "W-1", 3_000_000, "alice"))
    ex.cmd(RequestWithdrawal("A", "W-2", 100_050, "alice"))
    instructions = instruction_records(ex.clearing, BANK)
    data = write(
        tmp_path, "p1.xml", write_pain001("PAY-1", "2025-03-03T17:00:00", instructions, "2025-03-04")
    ).read_bytes()
    assert write_pain001("PAY-1", "2025-03-03T17:00:00", instructions, "2025-03-04") == data
    assert list(parse_iso_file(data, BANK).records) == instructions
    report = write(
        tmp_path,
        "p2.xml",
        write_pain002(
            "STS-1",
            "2025-03-04T09:00:00",
            "PAY-1",
            [
                (ResultRecord("ST-1", "W-1", "62220A", 3_000_000, True, ""), "ACSC"),
                (ResultRecord("ST-2", "W-2", "62220A", 100_050, False, "AC04"), "RJCT"),
            ],
        ),
    ).read_bytes()
    parsed = parse_iso_file(report, BANK)
    assert [(r.request_id, r.ok) for r in parsed.records if isinstance(r, ResultRecord)] == [
        ("W-1", True),
        ("W-2", False),
    ]
    ex.cmd(to_import_command(parsed, report))
    assert ex.bal("A") == 7_000_000
    ex.check()


def iso_cases() -> list[tuple[str, bytes, FileErrorCode, str]]:
    stmt = write_camt053(
        "S-1",
        "2025-03-05T06:00:00",
        "2025-03-04",
        [StatementAccount("62220A", 1_000, [("R1", 250_000, "2025-03-04"), ("R2", -100, "2025-03-04")])],
    )
    pain = write_pain001("PAY-1", "2025-03-03T17:00:00", [], "2025-03-04")
    return [
        (
            "roll-forward",
            stmt.replace(b'<Amt Ccy="CNY">2509.00</Amt>', b'<Amt Ccy="CNY">2509.01</Amt>'),
            FileErrorCode.ROLL_FORWARD_MISMATCH,
            "Document/BkToCstmrStmt/Stmt/Bal/Amt",
        ),
        (
            "entry count",
            stmt.replace(b"<NbOfNtries>2</NbOfNtries>", b"<NbOfNtries>3</NbOfNtries>"),
            FileErrorCode.COUNT_MISMATCH,
            "Document/BkToCstmrStmt/Stmt/TxsSummry/TtlNtries/NbOfNtries",
        ),
        (
            "currency",
            stmt.replace(b'Ccy="CNY">2500.00', b'Ccy="USD">2500.00'),
            FileErrorCode.BAD_CURRENCY,
            "Document/BkToCstmrStmt/Stmt/Ntry/Amt",
        ),
        (
            "sub-fen",
            stmt.replace(b">2500.00<", b">2500.001<"),
            FileErrorCode.SUB_FEN_AMOUNT,
            "Document/BkToCstmrStmt/Stmt/Ntry/Amt",
        ),
        ("doctype", b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x "y">]>\n<d/>', FileErrorCode.FORBIDDEN_XML, ""),
        ("not xml", stmt[:200], FileErrorCode.BAD_XML, ""),
        (
            "ctrl sum",
            pain.replace(b"<CtrlSum>0.00</CtrlSum>", b"<CtrlSum>1.00</CtrlSum>"),
            FileErrorCode.CONTROL_SUM_MISMATCH,
            "Document/CstmrCdtTrfInitn/GrpHdr/CtrlSum",
        ),
        (
            "missing",
            stmt.replace(b"<MsgId>S-1</MsgId>", b""),
            FileErrorCode.MISSING_ELEMENT,
            "Document/BkToCstmrStmt/GrpHdr/MsgId",
        ),
    ]


@pytest.mark.parametrize(("name", "data", "code", "field"), iso_cases(), ids=[c[0] for c in iso_cases()])
def test_tampered_iso_files(tmp_path: Path, name: str, data: bytes, code: FileErrorCode, field: str) -> None:
    path = write(tmp_path, "bad.xml", data)
    with pytest.raises(FileError) as info:
        parse_iso_file(path.read_bytes(), BANK, name=path.name)
    assert info.value.code == code, info.value.message
    assert info.value.field == field
    assert info.value.line > 0
    assert info.value.file == "bad.xml"
