"""Importing bank files: camt.053 roll-forward over booked entries only,
pain.002 record ids within the id limit, a UTF-8 byte order mark before XML,
refusals of the clearing core pointing at the file's line and field, and only
the kinds a bank sends accepted. Every refusal changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing import MAX_ID_CHARS, BankDeposit, CloseDay, RegisterMember, RequestWithdrawal, valid_id
from clearing.bankfiles import (
    BALANCES,
    CAMT053,
    CLEARING,
    DEPOSITS,
    IMPORT_KINDS,
    WITHDRAWAL_INSTRUCTIONS,
    BalanceRecord,
    ClearingRecord,
    DepositRecord,
    FileError,
    FileErrorCode,
    ResultRecord,
    StatementAccount,
    format_amount,
    parse_iso_file,
    parse_text_file,
    status_record_id,
    to_import_command,
    write_camt053,
    write_camt054,
    write_pain001,
    write_pain002,
    write_text_file,
)
from exchange import Sequencer, Settings, import_bank_file, load_instruments

BANK = "ICBC"
KEY = b"test-key-do-not-use"
KEYS = {BANK: KEY}
DATE = "2025-03-03"
STMT = "Document/BkToCstmrStmt/Stmt"
TX = "Document/CstmrPmtStsRpt/OrgnlPmtInfAndSts/TxInfAndSts"


# ------------------------------------------------------------- ISO builders


def camt053(
    opening_fen: int, closing_fen: int, entries: list[tuple[str, int, str | None]], sub: str = "SUB-M1"
) -> bytes:
    """A camt.053 of one account; entries: (reference, signed fen, status or None for no Sts)."""

    def bal(code: str, fen: int) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">{format_amount(abs(fen))}</Amt>'
            f"<CdtDbtInd>{'DBIT' if fen < 0 else 'CRDT'}</CdtDbtInd><Dt><Dt>{DATE}</Dt></Dt></Bal>"
        )

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">',
        "<BkToCstmrStmt>",
        "<GrpHdr><MsgId>STMT-1</MsgId><CreDtTm>2025-03-04T06:00:00</CreDtTm></GrpHdr>",
        "<Stmt>",
        f"<Acct><Id><Othr><Id>{sub}</Id></Othr></Id></Acct>",
        bal("OPBD", opening_fen),
        bal("CLBD", closing_fen),
    ]
    for ref, fen, status in entries:
        sts = f"<Sts><Cd>{status}</Cd></Sts>" if status is not None else ""
        lines += [
            "<Ntry>",
            f'<Amt Ccy="CNY">{format_amount(abs(fen))}</Amt><CdtDbtInd>{"CRDT" if fen > 0 else "DBIT"}</CdtDbtInd>',
            f"{sts}<BookgDt><Dt>{DATE}</Dt></BookgDt><AcctSvcrRef>{ref}</AcctSvcrRef>",
            "</Ntry>",
        ]
    lines += ["</Stmt>", "</BkToCstmrStmt>", "</Document>", ""]
    return "\n".join(lines).encode()


def pain002(msg_id: str, statuses: list[tuple[str | None, str, int]], sub: str = "SUB-M1") -> bytes:
    """A pain.002: (StsId or None, OrgnlEndToEndId, fen) settled (ACSC) statuses, one TxInfAndSts each."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">',
        "<CstmrPmtStsRpt>",
        f"<GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2025-03-04T09:00:00</CreDtTm></GrpHdr>",
        "<OrgnlGrpInfAndSts><OrgnlMsgId>BULKEX-PAY-20250303</OrgnlMsgId></OrgnlGrpInfAndSts>",
        "<OrgnlPmtInfAndSts>",
    ]
    for status_id, end_to_end, fen in statuses:
        lines += [
            "<TxInfAndSts>",
            *([f"<StsId>{status_id}</StsId>"] if status_id is not None else []),
            f"<OrgnlEndToEndId>{end_to_end}</OrgnlEndToEndId>",
            "<TxSts>ACSC</TxSts>",
            f'<OrgnlTxRef><Amt><InstdAmt Ccy="CNY">{format_amount(fen)}</InstdAmt></Amt>',
            f"<DbtrAcct><Id><Othr><Id>{sub}</Id></Othr></Id></DbtrAcct></OrgnlTxRef>",
            "</TxInfAndSts>",
        ]
    lines += ["</OrgnlPmtInfAndSts>", "</CstmrPmtStsRpt>", "</Document>", ""]
    return "\n".join(lines).encode()


def refused(data: bytes, name: str = "f.xml") -> FileError:
    with pytest.raises(FileError) as info:
        parse_iso_file(data, BANK, name=name)
    return info.value


# ------------------------------------------------- camt.053 roll-forward


def test_camt053_pending_entry_is_neither_a_deposit_nor_in_the_roll_forward() -> None:
    """OPBD and CLBD are booked balances: a pending credit moves neither."""
    data = camt053(0, 10_000, [("TX-1", 10_000, "BOOK"), ("TX-2", 5_000, "PDNG"), ("TX-3", -700, "INFO")])
    parsed = parse_iso_file(data, BANK, name="camt053-pending.xml")
    assert list(parsed.records) == [
        DepositRecord("TX-1", "SUB-M1", 10_000, DATE),
        BalanceRecord("SUB-M1", 10_000, DATE),
    ]
    # the closing balance that counts the pending entry is wrong
    err = refused(camt053(0, 15_000, [("TX-1", 10_000, "BOOK"), ("TX-2", 5_000, "PDNG")]))
    assert (err.code, err.field) == (FileErrorCode.ROLL_FORWARD_MISMATCH, f"{STMT}/Bal/Amt")
    assert "booked entries 100.00 != 150.00" in err.message


@settings(max_examples=200, deadline=None)
@given(
    opening_fen=st.integers(0, 10**9),
    entries=st.lists(
        st.tuples(st.integers(1, 10**7), st.booleans(), st.sampled_from(["BOOK", "PDNG", "INFO", "FUTR", None])),
        max_size=8,
    ),
    off_fen=st.integers(-(10**6), 10**6).filter(lambda n: n != 0),
)
def test_camt053_rolls_forward_over_booked_entries(
    opening_fen: int, entries: list[tuple[int, bool, str | None]], off_fen: int
) -> None:
    """Opening + booked entries = closing is accepted, whatever the pending
    ones; the deposits are exactly the booked credits; any other closing is refused."""
    rows = [(f"TX-{n}", fen if credit else -fen, status) for n, (fen, credit, status) in enumerate(entries)]
    booked = [(ref, fen) for ref, fen, status in rows if status in ("BOOK", None)]
    closing_fen = opening_fen + sum(fen for _, fen in booked)
    if closing_fen < 0:
        return
    parsed = parse_iso_file(camt053(opening_fen, closing_fen, rows), BANK)
    assert [r.record_id for r in parsed.records if isinstance(r, DepositRecord)] == [
        ref for ref, fen in booked if fen > 0
    ]
    assert parsed.records[-1] == BalanceRecord("SUB-M1", closing_fen, DATE)
    if closing_fen + off_fen >= 0:
        err = refused(camt053(opening_fen, closing_fen + off_fen, rows))
        assert err.code == FileErrorCode.ROLL_FORWARD_MISMATCH


# ------------------------------------------------------- pain.002 record ids


def test_pain002_without_status_id_and_long_ids_is_accepted() -> None:
    """MsgId and OrgnlEndToEndId may each be 35 characters (ISO 20022): the
    record id built from them stays within the id limit and is stable."""
    msg_id = "ICBC-PAYMENT-STATUS-REPORT-20250304"  # 35
    end_to_end = "W-20250303-000000000000000000000007"  # 35
    data = pain002(msg_id, [(None, end_to_end, 30_000), (None, "W-8", 100)])
    parsed = parse_iso_file(data, BANK, name="pain002.xml")
    first, second = (r for r in parsed.records if isinstance(r, ResultRecord))
    assert valid_id(first.record_id)
    assert first.record_id == status_record_id(msg_id, end_to_end)
    assert second.record_id == f"{msg_id}/W-8"  # short enough: kept readable, as before
    assert parse_iso_file(data, BANK).records == parsed.records  # the same status, the same id
    # the review's case: a 49-character MsgId
    long_msg = "ICBC-PAYMENT-STATUS-REPORT-20250304-0000000000001"
    (result,) = parse_iso_file(pain002(long_msg, [(None, "W-20250303-0000007", 1)]), BANK).records
    assert isinstance(result, ResultRecord)
    assert valid_id(result.record_id)


@given(
    st.text(st.sampled_from("AZaz09-./_:"), min_size=1, max_size=64),
    st.text(st.sampled_from("AZ09-"), min_size=1, max_size=64),
)
def test_status_record_id_is_a_valid_stable_id(msg_id: str, end_to_end: str) -> None:
    record_id = status_record_id(msg_id, end_to_end)
    assert valid_id(record_id)
    assert len(record_id) <= MAX_ID_CHARS
    assert record_id == status_record_id(msg_id, end_to_end)
    assert record_id != status_record_id(msg_id, end_to_end + "0")
    assert record_id != status_record_id(msg_id + "0", end_to_end)


def test_pain002_errors_name_the_element_that_is_there() -> None:
    err = refused(pain002("STS-1", [("S" * 65, "W-1", 1)]))
    assert (err.code, err.line, err.field) == (FileErrorCode.BAD_FIELD, 8, f"{TX}/StsId")
    err = refused(pain002("STS-1", [(None, "W" * 65, 1)]))
    assert (err.code, err.line, err.field) == (FileErrorCode.BAD_FIELD, 8, f"{TX}/OrgnlEndToEndId")
    err = refused(pain002("STS-1", [("S-1", "W-1", 1), ("S-1", "W-2", 1)]))
    assert (err.code, err.field) == (FileErrorCode.DUPLICATE_RECORD, f"{TX}/StsId")


# ---------------------------------------------------------- byte order mark


def test_xml_with_a_utf8_byte_order_mark_parses_the_text_format_refuses_one() -> None:
    data = write_camt054("N-1", "2025-03-03T10:00:00", [StatementAccount("SUB-M1", 0, [("TX-1", 100, DATE)])])
    assert parse_iso_file(b"\xef\xbb\xbf" + data, BANK).records == parse_iso_file(data, BANK).records
    text = write_text_file(DEPOSITS, BANK, "DEP-1", DATE, [DepositRecord("R1", "SUB-M1", 100, DATE)], KEY)
    with pytest.raises(FileError) as info:
        parse_text_file(b"\xef\xbb\xbf" + text, KEYS, name="bom.txt")
    assert (info.value.code, info.value.line, info.value.field) == (FileErrorCode.NOT_UTF8, 1, "header")
    assert "bom.txt:1 field header: NOT_UTF8" in info.value.message


# ------------------------------------------------ import through the exchange


@pytest.fixture
def sequencer(database_url: str) -> Iterator[Sequencer]:
    with Sequencer(database_url) as seq:
        seq.list_on_first_start(load_instruments(Settings().instruments_file))
        seq.execute([RegisterMember("M1", BANK, "SUB-M1"), BankDeposit(BANK, "D-0", "M1", 1_000_000, DATE)])
        yield seq


def journal_and_state(seq: Sequencer) -> tuple[int, str, int]:
    return seq.last_seq, seq.state_hash(), seq.core.clearing.ledger.available("M1")


def refuse(seq: Sequencer, path: Path, journaled: bool) -> str:
    """Import `path`, expect a refusal that changes nothing; the message.
    `journaled`: refused by the clearing core (the command is journaled with
    its refusal) rather than by the parser (nothing reaches the journal)."""
    last, state, available = journal_and_state(seq)
    result = import_bank_file(seq, path, KEYS, BANK)
    assert result.status == "rejected", result.message
    assert journal_and_state(seq) == (last + journaled, state, available)
    return result.message


def test_bom_xml_imports(sequencer: Sequencer, tmp_path: Path) -> None:
    data = write_camt054("N-1", "2025-03-03T10:00:00", [StatementAccount("SUB-M1", 0, [("TX-1", 100, DATE)])])
    path = tmp_path / "bom-camt054.xml"
    path.write_bytes(b"\xef\xbb\xbf" + data)
    result = import_bank_file(sequencer, path, KEYS, BANK)
    assert result.status == "applied", result.message
    assert sequencer.core.clearing.ledger.available("M1") == 1_000_100


def test_core_refusal_names_line_field_and_sub_account(sequencer: Sequencer, tmp_path: Path) -> None:
    deposits = [
        DepositRecord("R2", "SUB-M1", 100, DATE),
        DepositRecord("R3", "SUB-M1", 200, DATE),
        DepositRecord("R4", "SUB-XX", 300, DATE),
    ]
    path = tmp_path / "bad-dep.txt"
    path.write_bytes(write_text_file(DEPOSITS, BANK, "DEP-2", DATE, deposits, KEY))
    message = refuse(sequencer, path, journaled=True)
    assert message.startswith(f"{path}:4 field sub_account: BAD_FILE_RECORDS: "), message
    assert "no member has sub-account SUB-XX at ICBC" in message
    assert "record 3" not in message
    assert message.endswith("(nothing applied)")
    # camt.053: the second statement's entry (line of its Ntry), the account's element
    stmt = write_camt053(
        "STMT-1",
        "2025-03-04T06:00:00",
        DATE,
        [StatementAccount("SUB-M1", 0, [("TX1", 100, DATE)]), StatementAccount("SUB-XX", 0, [("TX3", 500, DATE)])],
    )
    path = tmp_path / "bad-camt.xml"
    path.write_bytes(stmt)
    line = next(n for n, text in enumerate(stmt.decode().split("\n"), start=1) if "TX3" in text)
    ntry = max(n for n, text in enumerate(stmt.decode().split("\n")[:line], start=1) if "<Ntry>" in text)
    message = refuse(sequencer, path, journaled=True)
    assert message.startswith(f"{path}:{ntry} field {STMT}/Acct/Id/Othr/Id: BAD_FILE_RECORDS: "), message
    assert "SUB-XX" in message


def test_core_refusal_of_a_withdrawal_result_names_the_member(sequencer: Sequencer, tmp_path: Path) -> None:
    sequencer.execute([RequestWithdrawal("M1", "W-1", 30_000, "m1.li")])
    path = tmp_path / "p2.xml"
    report = [(ResultRecord("ST-1", "W-1", "SUB-M1", 30_001, True, ""), "ACSC")]
    path.write_bytes(write_pain002("STS-1", "2025-03-04T09:00:00", "PAY-1", report))
    message = refuse(sequencer, path, journaled=True)
    assert message.startswith(f"{path}:16 field {TX}/OrgnlTxRef/Amt/InstdAmt: BAD_FILE_RECORDS: "), message
    assert "BAD_AMOUNT: W-1: 30001 fen, instructed 30000 fen; sub-account SUB-M1, a withdrawal of member M1" in message


def test_balances_of_a_day_not_closed_point_at_the_value_date(sequencer: Sequencer, tmp_path: Path) -> None:
    path = tmp_path / "bal.txt"
    path.write_bytes(write_text_file(BALANCES, BANK, "BAL-1", DATE, [BalanceRecord("SUB-M1", 1, DATE)], KEY))
    message = refuse(sequencer, path, journaled=True)
    assert message.startswith(f"{path}:2 field value_date: UNKNOWN_STATEMENT: "), message
    sequencer.execute([CloseDay(DATE)])
    assert import_bank_file(sequencer, path, KEYS, BANK).status == "applied"


def test_outgoing_kinds_are_not_imported(sequencer: Sequencer, tmp_path: Path) -> None:
    """Withdrawal instructions, the clearing file and pain.001 are the exchange's own files."""
    clearing = ClearingRecord("M1", "SUB-M1", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    files = {
        "wd.txt": write_text_file(WITHDRAWAL_INSTRUCTIONS, BANK, "WD-1", DATE, [], KEY),
        "clr.txt": write_text_file(CLEARING, BANK, "CLR-1", DATE, [clearing], KEY),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        message = refuse(sequencer, path, journaled=False)
        assert message.startswith(f"{path}:1 field kind: UNEXPECTED_KIND: "), message
    path = tmp_path / "p1.xml"
    path.write_bytes(write_pain001("PAY-1", "2025-03-03T17:00:00", [], DATE))
    message = refuse(sequencer, path, journaled=False)
    assert message.startswith(f"{path}:2 field Document: UNEXPECTED_KIND: "), message
    assert "pain.001" in message
    # the gate into the core agrees
    empty = parse_text_file(files["wd.txt"], KEYS)
    with pytest.raises(ValueError, match="not a kind the exchange imports"):
        to_import_command(empty, files["wd.txt"])
    assert CAMT053 in IMPORT_KINDS
    assert WITHDRAWAL_INSTRUCTIONS not in IMPORT_KINDS
