"""The end of day through the CLI: instruction file ids that follow their
contents, the requested execution date, re-running a day after more closes
than the core keeps, and the dates `clearing run` and `bank export` refuse.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.cli import app
from clearing import BankDeposit, RegisterMember, RequestWithdrawal
from clearing.bankfiles import WITHDRAWAL_INSTRUCTIONS, InstructionRecord, parse_text_file
from exchange import (
    DEFAULT_CALENDAR,
    EndOfDayCode,
    Sequencer,
    Settings,
    TradingCalendar,
    exchange_date,
    instructions_digest,
    load_instruments,
    next_trading_day,
    stocking_commands,
)
from matching import BUY, CONTINUOUS, SELL, NewOrder, SetTradingState

INSTRUMENTS = load_instruments(Settings().instruments_file)
BANK = "ICBC"
KEY = b"test-key-do-not-use"
DATE = "2025-03-03"  # a Monday
TRADING_DAYS = [f"2025-03-{d:02d}" for d in (3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 17)]  # 11 > the 10 closes kept


@pytest.fixture(autouse=True)
def _bank_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKEX_BANK_KEY_ICBC", KEY.decode())
    monkeypatch.delenv("BULKEX_BANK_KEYS_FILE", raising=False)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def setup(url: str, *commands: object) -> None:
    with Sequencer(url) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute(list(commands))


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def instruction_ids(folder: Path, date: str) -> tuple[str, str, list[str]]:
    """(text file id, pain.001 MsgId, request ids) of the instruction files in `folder`."""
    parsed = parse_text_file((folder / f"{BANK}-WITHDRAWALS-{date}.txt").read_bytes(), {BANK: KEY})
    assert parsed.kind == WITHDRAWAL_INSTRUCTIONS
    pain = (folder / f"{BANK}-pain001-{date}.xml").read_text()
    msg_id = pain.split("<MsgId>", 1)[1].split("</MsgId>", 1)[0]
    return parsed.file_id, msg_id, [r.request_id for r in parsed.records]  # type: ignore[union-attr]


def test_a_different_instruction_file_never_reuses_an_id(database_url: str, tmp_path: Path) -> None:
    setup(
        database_url,
        RegisterMember("M1", BANK, "SUB-M1"),
        BankDeposit(BANK, "R1", "M1", 10_000_000, DATE),
        RequestWithdrawal("M1", "W-1", 100_000, "m1.li"),
    )
    url = ["--database-url", database_url]
    assert cli("bank", "export", "--date", DATE, *url, "--out", str(tmp_path / "midday"))[0] == 0
    assert cli("bank", "export", "--date", DATE, *url, "--out", str(tmp_path / "again"))[0] == 0
    # the very same instructions exported again: the same ids, the same bytes
    assert files(tmp_path / "again" / DATE) == files(tmp_path / "midday" / DATE)
    midday = instruction_ids(tmp_path / "midday" / DATE, DATE)
    assert midday[2] == ["W-1"]
    assert midday[0].startswith("BULKEX-WD-20250303-")
    assert midday[1].startswith("BULKEX-PAY-20250303-")
    assert midday[0].removeprefix("BULKEX-WD-") == midday[1].removeprefix("BULKEX-PAY-")
    assert len(midday[1]) <= 35  # pain.001 MsgId is Max35Text
    setup(database_url, RequestWithdrawal("M1", "W-2", 200_000, "m1.li"))
    code, output = cli("clearing", "run", "--date", DATE, *url, "--out", str(tmp_path / "eod"))
    assert code == 0, output
    evening = instruction_ids(tmp_path / "eod" / DATE, DATE)
    assert evening[2] == ["W-1", "W-2"]
    assert evening[0] != midday[0]
    assert evening[1] != midday[1]
    pain = (tmp_path / "eod" / DATE / f"{BANK}-pain001-{DATE}.xml").read_text()
    assert "<ReqdExctnDt><Dt>2025-03-04</Dt></ReqdExctnDt>" in pain  # the next trading day
    assert evening[0] in (tmp_path / "eod" / DATE / f"reconciliation-{DATE}.txt").read_text()


def test_the_end_of_day_with_the_instructions_exported_midday_keeps_their_id(database_url: str, tmp_path: Path) -> None:
    setup(
        database_url,
        RegisterMember("M1", BANK, "SUB-M1"),
        BankDeposit(BANK, "R1", "M1", 10_000_000, DATE),
        RequestWithdrawal("M1", "W-1", 100_000, "m1.li"),
    )
    url = ["--database-url", database_url]
    assert cli("bank", "export", "--date", DATE, *url, "--out", str(tmp_path / "midday"))[0] == 0
    assert cli("clearing", "run", "--date", DATE, *url, "--out", str(tmp_path / "eod"))[0] == 0
    midday = instruction_ids(tmp_path / "midday" / DATE, DATE)
    evening = instruction_ids(tmp_path / "eod" / DATE, DATE)
    assert evening == midday  # the bank recognises the same instructions sent again


def test_next_trading_day_follows_the_calendar() -> None:
    assert next_trading_day("2025-03-03", DEFAULT_CALENDAR) == "2025-03-04"
    assert next_trading_day("2025-03-07", DEFAULT_CALENDAR) == "2025-03-10"  # Friday -> Monday
    holidays = TradingCalendar(frozenset(range(5)), frozenset({datetime.date(2025, 3, 10)}))
    assert next_trading_day("2025-03-07", holidays) == "2025-03-11"
    assert exchange_date(1_741_017_600 * 10**9) == "2025-03-04"  # 2025-03-03T16:00Z is midnight in Beijing
    assert exchange_date(1_741_017_599 * 10**9) == "2025-03-03"


_IDS = st.sampled_from(["W-1", "W-2", "M1", "M2", "a.b"])
_INSTRUCTIONS = st.lists(st.builds(InstructionRecord, _IDS, _IDS, _IDS, st.integers(1, 10**13), _IDS, _IDS), max_size=4)


@given(_INSTRUCTIONS, _INSTRUCTIONS, st.sampled_from(["2025-03-03", "2025-03-04"]))
def test_instruction_ids_are_equal_exactly_when_the_contents_are(
    first: list[InstructionRecord], second: list[InstructionRecord], date: str
) -> None:
    execution_date = next_trading_day(date, DEFAULT_CALENDAR)
    same = instructions_digest(BANK, date, execution_date, first) == instructions_digest(
        BANK, date, execution_date, second
    )
    assert same == (first == second)
    assert instructions_digest(BANK, "2025-03-03", "2025-03-04", first) != instructions_digest(
        BANK, "2025-03-04", "2025-03-05", first
    )


def test_rerunning_a_day_after_more_closes_than_are_kept(database_url: str, tmp_path: Path) -> None:
    inst = INSTRUMENTS[0]
    price = inst.reference_price_ticks
    setup(
        database_url,
        SetTradingState(inst.symbol, CONTINUOUS),
        RegisterMember("M1", BANK, "SUB-M1"),
        RegisterMember("M2", BANK, "SUB-M2"),
        RegisterMember("M3", BANK, "SUB-M3"),  # no money ever: a zero line every day
        BankDeposit(BANK, "R1", "M1", 10**10, DATE),
        BankDeposit(BANK, "R2", "M2", 10**10, DATE),
        *stocking_commands([inst], ["M2"], receipts_each=1, lots_each=2),
        NewOrder("M1", inst.symbol, "b1", BUY, price, 3),  # one lot rests: margin frozen over the days
        NewOrder("M2", inst.symbol, "s1", SELL, price, 2),
    )
    url = ["--database-url", database_url]
    first: dict[str, dict[str, bytes]] = {}
    for n, day in enumerate(TRADING_DAYS):
        setup(database_url, BankDeposit(BANK, f"R-{day}", "M1", 1_000 + n, day))
        code, output = cli("clearing", "run", "--date", day, *url, "--out", str(tmp_path / "out"))
        assert code == 0, output
        first[day] = files(tmp_path / "out" / day)
    # 2025-03-04 is the oldest close kept; the close before it (its opening) is not
    for day in TRADING_DAYS[1:]:
        code, output = cli("clearing", "run", "--date", day, *url, "--out", str(tmp_path / "again"))
        assert code == 0, output
        assert files(tmp_path / "again" / day) == first[day], day
    code, output = cli("bank", "export", "--date", TRADING_DAYS[1], *url, "--out", str(tmp_path / "export"))
    assert code == 0, output
    assert files(tmp_path / "export" / TRADING_DAYS[1]) == first[TRADING_DAYS[1]]
    # the first day's balances are gone: refused with a code, no traceback, nothing written
    code, output = cli("clearing", "run", "--date", DATE, *url, "--out", str(tmp_path / "old"))
    assert code == 1
    assert f"error: {EndOfDayCode.DAY_NOT_KEPT}: {DATE} was closed at seq" in output
    assert "2025-03-04 to 2025-03-17" in output
    assert not (tmp_path / "old").exists()
    code, output = cli("bank", "export", "--date", DATE, *url, "--out", str(tmp_path / "old"))
    assert code == 1
    assert EndOfDayCode.DAY_NOT_KEPT in output


def state(url: str) -> tuple[int, str]:
    with Sequencer(url) as sequencer:
        return sequencer.last_seq, sequencer.state_hash()


def test_a_future_or_non_trading_date_is_refused_unless_asked_for(database_url: str, tmp_path: Path) -> None:
    setup(database_url, RegisterMember("M1", BANK, "SUB-M1"), BankDeposit(BANK, "R1", "M1", 10_000, DATE))
    url = ["--database-url", database_url, "--out", str(tmp_path / "out")]
    with Sequencer(database_url) as sequencer:
        today = exchange_date(max(sequencer.clock(), sequencer.last_ts_ns))
    tomorrow = (datetime.date.fromisoformat(today) + datetime.timedelta(days=1)).isoformat()
    before = state(database_url)
    for command in ("clearing run", "bank export"):
        for date, code_name in (
            ("2052-03-03", "FUTURE_DATE"),
            (tomorrow, "FUTURE_DATE"),
            ("2025-03-08", "NOT_TRADING_DAY"),
        ):
            code, output = cli(*command.split(), "--date", date, *url)
            assert code == 1, (command, date, output)
            assert f"error: {code_name}: {date}" in output, output
    assert state(database_url) == before  # nothing journaled
    assert not (tmp_path / "out").exists()
    code, output = cli("clearing", "run", "--date", "2025-03-07", *url)  # the real dates still close
    assert code == 0, output
    code, output = cli("clearing", "run", "--date", "2025-03-03", *url)  # before the last close, never closed
    assert code == 1
    assert "error: DAY_NOT_CLOSED: 2025-03-03 was never closed and the last closed day is 2025-03-07" in output
    code, output = cli("clearing", "run", "--date", "2025-03-08", "--any-date", *url)  # a Saturday, on purpose
    assert code == 0, output
    assert "closed 2025-03-08" in output
    pain = (tmp_path / "out" / "2025-03-08" / f"{BANK}-pain001-2025-03-08.xml").read_text()
    assert "<MsgId>BULKEX-PAY-20250308-" in pain
    code, output = cli("clearing", "run", "--date", "2025-13-01", *url)
    assert code == 1
    assert "error: BAD_DATE: --date '2025-13-01': write the date as YYYY-MM-DD" in output
