"""The exchange's side of the bank: keys, file import (CLI and drop folder),
withdrawal instructions and the end of day.

    import_bank_file(sequencer, path, keys)   parse (text or ISO 20022, by content), then ONE
                                              BankFileImport command through the sequencer
    watch_folder(sequencer, folder, keys)     DIR/in -> DIR/done or DIR/rejected (+ NAME.reason.txt)
    run_end_of_day(sequencer, date, out, keys)  CloseDay through the sequencer (unless closed),
                                              read models caught up, files written
    export_bank_files(...)                    the same files without closing the day

Bank HMAC keys (``bank_keys``): ``BULKEX_BANK_KEY_<BANK>`` environment
variables (the bank code upper-cased, ``-`` and ``.`` as ``_``), and/or the
file named by ``BULKEX_BANK_KEYS_FILE``: TOML, one ``BANK = "key"`` line per
bank. The environment wins over the file.

Output of the end of day for date D, in ``<out>/<D>/``, per bank B with members:
``B-CLEARING-D.txt`` (signed clearing file), ``B-WITHDRAWALS-D.txt`` (signed
instructions), ``B-pain001-D.xml``; and ``statements-D.csv`` (one line per
member) and ``reconciliation-D.txt``. Everything is computed from the journal
as of the CloseDay command of D (the previous close, the day's transfers,
withdrawals approved and unanswered at the close), so a re-run for the same
date writes the same bytes.

Instruction files are named by their content: ``BULKEX-WD-<D>-<digest>`` and
``BULKEX-PAY-<D>-<digest>`` (``instructions_digest``), so the same
instructions exported again carry the same id and different ones never share
an id. They ask the bank to pay on the next trading day after D
(``next_trading_day``).

A day is closed only when it is a trading day of the calendar and not after
the exchange's current day (China Standard Time, of the time the close would
be journaled), unless ``any_date`` is passed. Refusals are ``EndOfDayError``
with a code of ``EndOfDayCode``.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import os
import shutil
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, text

from clearing import (
    AVAILABLE,
    C_BREAK,
    C_DUPLICATE,
    C_FILE,
    C_REJECTED,
    C_STATEMENT,
    C_TRANSFER,
    ClearingCode,
    CloseDay,
    WithdrawalStatus,
    build_clearing_records,
    clearing_message,
    valid_date,
)
from clearing.bankfiles import (
    CLEARING,
    IMPORT_KINDS,
    WITHDRAWAL_INSTRUCTIONS,
    BankFile,
    ClearingRecord,
    FileError,
    InstructionRecord,
    format_amount,
    locate_refusal,
    looks_like_xml,
    parse_iso_file,
    parse_text_file,
    to_import_command,
    write_pain001,
    write_text_file,
)
from exchange._clearing_projection import catch_up_clearing
from exchange._core import Core
from exchange._db import make_engine
from exchange._errors import ExchangeError
from exchange._instruments import DEFAULT_CALENDAR, TradingCalendar
from exchange._sequencer import Sequencer

__all__ = [
    "BANK_KEY_PREFIX",
    "BankSetupError",
    "EndOfDayCode",
    "EndOfDayError",
    "ImportResult",
    "bank_keys",
    "day_files",
    "exchange_date",
    "export_bank_files",
    "import_bank_file",
    "instructions_digest",
    "next_trading_day",
    "run_end_of_day",
    "watch_folder",
]

BANK_KEY_PREFIX: Final = "BULKEX_BANK_KEY_"
KEYS_FILE_VARIABLE: Final = "BULKEX_BANK_KEYS_FILE"
WATCH_POLL_S: Final = 1.0
MAX_FILES_PER_PASS: Final = 1_000
"""Files taken from the drop folder per pass, at most (the rest wait for the next pass)."""


MAX_DAYS_TO_NEXT_TRADING_DAY: Final = 366
"""How far ``next_trading_day`` looks (a calendar without a trading day in a year is refused)."""
INSTRUCTIONS_DIGEST_HEX: Final = 12
"""Hex digits of the content digest in an instruction file's id (``BULKEX-PAY-YYYYMMDD-`` + 12 = 32,
inside pain.001's 35-character MsgId)."""
EXCHANGE_TIME_ZONE: Final = datetime.timezone(datetime.timedelta(hours=8), "CST")
"""The exchange's day is the calendar day in China Standard Time (UTC+8)."""


class BankSetupError(ExchangeError):
    """Bank keys or an end-of-day request that cannot be served; the message says what to fix."""


class EndOfDayCode(enum.StrEnum):
    """Why `clearing run` or `bank export` refuses a date; ``_DAY_MESSAGES`` says how to fix each.

    BAD_DATE          the date is not YYYY-MM-DD
    FUTURE_DATE       after the exchange's current day (China Standard Time)
    NOT_TRADING_DAY   a day the calendar does not trade on
    DAY_NOT_CLOSED    before the last closed day and never closed: days close in order
    DAY_NOT_KEPT      closed, but its closing balances are no longer kept in memory
    NO_TRADING_DAY    the calendar has no trading day after the date within a year
    """

    BAD_DATE = "BAD_DATE"
    FUTURE_DATE = "FUTURE_DATE"
    NOT_TRADING_DAY = "NOT_TRADING_DAY"
    DAY_NOT_CLOSED = "DAY_NOT_CLOSED"
    DAY_NOT_KEPT = "DAY_NOT_KEPT"
    NO_TRADING_DAY = "NO_TRADING_DAY"


_DAY_MESSAGES: Final = {
    EndOfDayCode.BAD_DATE: "write the date as YYYY-MM-DD",
    EndOfDayCode.FUTURE_DATE: "a day is closed when it has begun in exchange time; check the date "
    "(--any-date closes it anyway, and no earlier day can be closed after it)",
    EndOfDayCode.NOT_TRADING_DAY: "the instruments file's [calendar] does not trade on it; check the date or the "
    "calendar (--any-date closes it anyway)",
    EndOfDayCode.DAY_NOT_CLOSED: "days close in order: a day before the last closed one cannot be closed any more",
    EndOfDayCode.DAY_NOT_KEPT: "its files can no longer be rebuilt; use the files written at its close",
    EndOfDayCode.NO_TRADING_DAY: "add trading days to the instruments file's [calendar]",
}


class EndOfDayError(BankSetupError):
    """An end-of-day date refused: `code`, what is wrong (`detail`) and how to fix it; nothing changed."""

    def __init__(self, code: EndOfDayCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}: {_DAY_MESSAGES[code]}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[EndOfDayError], tuple[EndOfDayCode, str]]:
        return EndOfDayError, (self.code, self.detail)


def _env_name(bank: str) -> str:
    return BANK_KEY_PREFIX + bank.upper().replace("-", "_").replace(".", "_")


def bank_keys(environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """bank -> HMAC key, from BULKEX_BANK_KEYS_FILE and BULKEX_BANK_KEY_<BANK> (see the module doc)."""
    env = os.environ if environ is None else environ
    keys: dict[str, bytes] = {}
    path = env.get(KEYS_FILE_VARIABLE)
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BankSetupError(f"{KEYS_FILE_VARIABLE}={path}: {exc}") from None
        for bank, key in data.items():
            if not isinstance(key, str) or not key:
                raise BankSetupError(f"{path}: the key of bank {bank!r} must be a non-empty string")
            keys[bank] = key.encode()
    env_keys = {name: value for name, value in env.items() if name.startswith(BANK_KEY_PREFIX) and value}
    for bank in list(keys):
        if _env_name(bank) in env_keys:
            keys[bank] = env_keys[_env_name(bank)].encode()
    for name, value in env_keys.items():
        bank = name[len(BANK_KEY_PREFIX) :]
        if bank and not any(_env_name(b) == name for b in keys):
            keys[bank] = value.encode()
    return keys


def _key(keys: Mapping[str, bytes], bank: str) -> bytes:
    key = keys.get(bank)
    if key is None:
        for name, value in keys.items():
            if _env_name(name) == _env_name(bank):
                return value
        raise BankSetupError(f"no HMAC key for bank {bank}: set {_env_name(bank)} or add it to {KEYS_FILE_VARIABLE}")
    return key


# ------------------------------------------------------------------ import


@dataclass(slots=True)
class ImportResult:
    """status: "applied", "seen" (a re-import: nothing changed) or "rejected"."""

    status: str
    message: str
    seq: int = 0
    events: list[Any] | None = None


def import_bank_file(
    sequencer: Sequencer, path: Path, keys: Mapping[str, bytes], bank: str | None = None
) -> ImportResult:
    """Parse `path` (ISO 20022 if it starts with '<', after an optional UTF-8
    byte order mark, else bulkex text) and apply it through the sequencer as
    one BankFileImport command. Only what a bank sends is imported
    (IMPORT_KINDS). ISO files name no bank: `bank` (or the only bank with a
    key) is the channel's bank."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImportResult("rejected", f"{name}: cannot read: {exc.strerror}")
    try:
        if looks_like_xml(data):
            channel = bank or (next(iter(keys)) if len(keys) == 1 else "")
            if not channel:
                return ImportResult("rejected", f"{name}: an ISO 20022 file names no bank; pass --bank")
            parsed = parse_iso_file(data, channel, name=name, kinds=IMPORT_KINDS)
        else:
            parsed = parse_text_file(data, keys, name=name, kinds=IMPORT_KINDS)
    except FileError as err:
        return ImportResult("rejected", err.message)
    try:
        command = to_import_command(parsed, data)
    except ValueError as exc:
        return ImportResult("rejected", f"{name}: {parsed.kind} files are not imported ({exc})")
    ack = sequencer.submit(command).result() if sequencer.running else sequencer.execute([command])[0]
    return _answer(name, parsed, ack.seq, ack.events)


def _answer(name: str, parsed: BankFile, seq: int, events: list[Any]) -> ImportResult:
    """The import's answer; a refusal names the file's line and field, as a FileError does."""
    for e in events:
        if e[0] == C_DUPLICATE:
            return ImportResult(
                "seen", f"{name}: seen before (file {e[2]} applied at seq {e[3]}): nothing changed", seq
            )
        if e[0] == C_REJECTED:
            code = ClearingCode(e[3])
            line, field, detail = locate_refusal(parsed, code, e[4])
            where = f"{name}:{line}" + (f" field {field}" if field else "")
            return ImportResult(
                "rejected", f"{where}: {code.name}: {clearing_message(code, detail)} (nothing applied)", seq, events
            )
    lines = []
    for e in events:
        if e[0] == C_FILE:
            lines.append(
                f"{name}: {parsed.kind} file {e[3]} of {e[2]} applied at seq {seq}: {e[5]} records, {e[6]} seen before"
            )
        elif e[0] == C_STATEMENT:
            lines.append(f"  reconciled {e[5]} balances of {e[4]}: {e[6]} breaks")
        elif e[0] == C_BREAK and e[9]:
            lines.append(f"  break {e[2]}: {e[6]} sub-account {e[4]} member {e[5] or '-'} bank {e[7]} ours {e[8]}")
    return ImportResult("applied", "\n".join(lines) or f"{name}: {len(parsed.records)} records applied", seq, events)


def watch_folder(
    sequencer: Sequencer,
    folder: Path,
    keys: Mapping[str, bytes],
    *,
    once: bool = False,
    bank: str | None = None,
    write: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """The drop folder: each new file in `folder`/in is imported, then moved to
    `folder`/done (applied or seen before) or `folder`/rejected with
    NAME.reason.txt beside it. Returns how many files were rejected."""
    inbox, done, rejected = folder / "in", folder / "done", folder / "rejected"
    for d in (inbox, done, rejected):
        d.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        names = sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith("."))[:MAX_FILES_PER_PASS]
        for path in names:
            result = import_bank_file(sequencer, path, keys, bank)
            write(result.message)
            if result.status == "rejected":
                failures += 1
                target = _free_name(rejected, path.name)
                (rejected / f"{target.name}.reason.txt").write_text(result.message + "\n", encoding="utf-8")
            else:
                target = _free_name(done, path.name)
            shutil.move(str(path), target)
        if once or should_stop():
            return failures
        time.sleep(WATCH_POLL_S)


def _free_name(folder: Path, name: str) -> Path:
    """`folder`/`name`, or `name`.N when taken (a file sent twice keeps both copies)."""
    target = folder / name
    n = 1
    while target.exists():
        target = folder / f"{name}.{n}"
        n += 1
    return target


# -------------------------------------------------------------- end of day


def _day(conn: Connection, date: str, last_closed: str) -> tuple[int, int, str, int]:
    """(close seq, close ts_ns, previous closed day or "", its close seq or 0) of a closed day."""
    row = conn.execute(text("SELECT seq, ts_ns FROM clearing_days WHERE business_date = :d"), {"d": date}).first()
    if row is None:
        raise EndOfDayError(
            EndOfDayCode.DAY_NOT_CLOSED, f"{date} was never closed and the last closed day is {last_closed}"
        )
    prev = conn.execute(
        text(
            "SELECT business_date, seq FROM clearing_days WHERE business_date < :d ORDER BY business_date DESC LIMIT 1"
        ),
        {"d": date},
    ).first()
    prev_date, prev_seq = (str(prev[0]), int(prev[1])) if prev is not None else ("", 0)
    return int(row[0]), int(row[1]), prev_date, prev_seq


def _balances_at(conn: Connection, upto_seq: int) -> dict[str, list[int]]:
    """Each member's [available, frozen] after command `upto_seq`: the sums of every transfer up to it
    (for an opening whose close the core no longer keeps; a member without transfers is absent: 0)."""
    balances: dict[str, list[int]] = {}
    for side, sign in (("debit", -1), ("credit", 1)):
        rows = conn.execute(
            text(
                f"SELECT {side}_member, {side}_account, SUM(amount_fen) FROM clearing_transfers "
                f"WHERE seq <= :b AND {side}_member <> '' GROUP BY {side}_member, {side}_account"
            ),
            {"b": upto_seq},
        ).all()
        for member, account, amount in rows:
            balance = balances.setdefault(str(member), [0, 0])
            balance[0 if int(account) == AVAILABLE else 1] += sign * int(amount)
    return balances


def _day_transfers(conn: Connection, after_seq: int, upto_seq: int) -> list[tuple[Any, ...]]:
    """The day's transfers summed per (code, debit, credit): the clearing file only adds them up."""
    rows = conn.execute(
        text(
            "SELECT code, debit_member, debit_account, credit_member, credit_account, SUM(amount_fen) "
            "FROM clearing_transfers WHERE seq > :a AND seq <= :b "
            "GROUP BY code, debit_member, debit_account, credit_member, credit_account"
        ),
        {"a": after_seq, "b": upto_seq},
    ).all()
    return [(C_TRANSFER, 0, 0, int(c), dm, int(da), cm, int(ca), int(amount), "") for c, dm, da, cm, ca, amount in rows]


def _instructions_at(conn: Connection, upto_seq: int, members: Mapping[str, tuple[str, str]]) -> list[Any]:
    """Withdrawals approved and not yet answered at `upto_seq`, by request id."""
    rows = conn.execute(
        text(
            "SELECT request_id, member, amount_fen, status, actor FROM clearing_withdrawals "
            "WHERE seq <= :b ORDER BY seq, step"
        ),
        {"b": upto_seq},
    ).all()
    state: dict[str, list[Any]] = {}
    for request_id, member, amount, status, actor in rows:
        item = state.setdefault(request_id, [member, int(amount), status, actor, ""])
        item[2] = status
        if status == WithdrawalStatus.APPROVED:
            item[4] = actor
    return [
        InstructionRecord(rid, m, members[m][1], amount, by, approver)
        for rid, (m, amount, status, by, approver) in sorted(state.items())
        if status == WithdrawalStatus.APPROVED
    ]


def _created(ts_ns: int) -> str:
    return datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _file_date(date: str) -> str:
    return date.replace("-", "")


def _write(path: Path, data: bytes, written: list[Path]) -> None:
    path.write_bytes(data)
    written.append(path)


def exchange_date(ts_ns: int) -> str:
    """The exchange's day (China Standard Time) of a journal time, YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, EXCHANGE_TIME_ZONE).date().isoformat()


def next_trading_day(date: str, calendar: TradingCalendar) -> str:
    """The first trading day of `calendar` after `date`: the day the bank is asked to pay the day's
    instructions (ReqdExctnDt)."""
    day = datetime.date.fromisoformat(date)
    for _ in range(MAX_DAYS_TO_NEXT_TRADING_DAY):
        day += datetime.timedelta(days=1)
        if calendar.is_trading_day(day):
            return day.isoformat()
    raise EndOfDayError(
        EndOfDayCode.NO_TRADING_DAY, f"no trading day in the {MAX_DAYS_TO_NEXT_TRADING_DAY} days after {date}"
    )


def instructions_digest(bank: str, date: str, execution_date: str, instructions: list[InstructionRecord]) -> str:
    """The content part of an instruction file's id: SHA-256 of the bank, the dates and every
    instruction's fields (ids hold no bar, so the fields cannot run into each other), first
    INSTRUCTIONS_DIGEST_HEX hex digits. The same instructions give the same id; different ones
    (another instruction, amount, approver or date) a different id."""
    digest = hashlib.sha256(f"{bank}|{date}|{execution_date}\n".encode())
    for i in instructions:
        fields = (i.request_id, i.member, i.sub_account, str(i.amount_fen), i.requested_by, i.approved_by)
        digest.update(("|".join(fields) + "\n").encode())
    return digest.hexdigest()[:INSTRUCTIONS_DIGEST_HEX]


def _instruction_files(
    folder: Path,
    bank: str,
    date: str,
    execution_date: str,
    created: str,
    instructions: list[InstructionRecord],
    key: bytes,
    written: list[Path],
) -> str:
    """Write the bank's instruction files (text and pain.001); returns the text file's id."""
    name = f"{_file_date(date)}-{instructions_digest(bank, date, execution_date, instructions)}"
    file_id = f"BULKEX-WD-{name}"
    _write(
        folder / f"{bank}-WITHDRAWALS-{date}.txt",
        write_text_file(WITHDRAWAL_INSTRUCTIONS, bank, file_id, date, instructions, key),
        written,
    )
    pain001 = write_pain001(f"BULKEX-PAY-{name}", created, instructions, execution_date)
    _write(folder / f"{bank}-pain001-{date}.xml", pain001, written)
    return file_id


def _check_date(date: str) -> None:
    if not valid_date(date):
        raise EndOfDayError(EndOfDayCode.BAD_DATE, f"--date {date!r}")


def _check_new_day(sequencer: Sequencer, date: str, calendar: TradingCalendar, any_date: bool) -> None:
    """Refuse to close (or export instructions for) an open day after the exchange's current day
    (of the time a command is journaled at now) or off the calendar, unless `any_date`."""
    if any_date:
        return
    today = exchange_date(max(sequencer.clock(), sequencer.last_ts_ns))
    if date > today:
        raise EndOfDayError(EndOfDayCode.FUTURE_DATE, f"{date} is after the exchange's current day {today} (UTC+8)")
    if not calendar.is_trading_day(datetime.date.fromisoformat(date)):
        raise EndOfDayError(EndOfDayCode.NOT_TRADING_DAY, f"{date} is not a trading day")


def day_files(
    core: Core,
    database_url: str,
    date: str,
    out_dir: Path,
    keys: Mapping[str, bytes],
    write: Callable[[str], None],
    *,
    calendar: TradingCalendar = DEFAULT_CALENDAR,
) -> list[Path]:
    """Write the files of the closed day `date` (see the module doc) from `core`
    (at or after the close) and the clearing read models of `database_url`
    (caught up). The opening is the previous close as the core keeps it, or
    summed from the stored transfers when the core no longer keeps it."""
    clearing = core.clearing
    execution_date = next_trading_day(date, calendar)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            close_seq, close_ts, prev_date, prev_seq = _day(conn, date, clearing.last_closed_date)
            if date not in clearing.closings:
                kept = sorted(clearing.closings)
                raise EndOfDayError(
                    EndOfDayCode.DAY_NOT_KEPT,
                    f"{date} was closed at seq {close_seq}; the balances of the last {len(kept)} closed days are "
                    f"kept ({kept[0] if kept else '-'} to {clearing.last_closed_date or '-'})",
                )
            closing = clearing.closings[date]
            if prev_date in clearing.closings:
                opening = {m: list(b) for m, b in clearing.closings[prev_date].items()}
            else:
                opening = _balances_at(conn, prev_seq) if prev_seq else {}
            transfers = _day_transfers(conn, prev_seq, close_seq)
            members = {m: clearing.members[m] for m in closing}
            instructions = _instructions_at(conn, close_seq, members)
            open_breaks = conn.execute(
                text(
                    "SELECT break_id, bank, sub_account, member, reason, bank_fen, exchange_fen FROM clearing_breaks "
                    "WHERE opened_seq <= :b AND (is_open OR last_seq > :b) ORDER BY break_id"
                ),
                {"b": close_seq},
            ).all()
    finally:
        engine.dispose()
    write(f"day {date}: close at seq {close_seq}, previous close at seq {prev_seq}, {len(transfers)} movement sums")
    folder = out_dir / date
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    banks = sorted({bank for bank, _ in members.values()})
    all_records: list[ClearingRecord] = []
    created = _created(close_ts)
    report = [f"bulkex reconciliation report, business date {date} (close at seq {close_seq})", ""]
    for bank in banks:
        key = _key(keys, bank)
        records = build_clearing_records(members, bank, opening, transfers, closing)
        all_records.extend(records)
        _write(
            folder / f"{bank}-CLEARING-{date}.txt",
            write_text_file(CLEARING, bank, f"BULKEX-CLR-{_file_date(date)}", date, records, key),
            written,
        )
        mine = [i for i in instructions if members[i.member][0] == bank]
        file_id = _instruction_files(folder, bank, date, execution_date, created, mine, key, written)
        opening_total = sum(r.opening_fen for r in records)
        closing_total = sum(r.closing_available_fen + r.closing_frozen_fen for r in records)
        report += [
            f"bank {bank}: {len(records)} members",
            f"  opening {format_amount(opening_total)} + deposits {format_amount(sum(r.deposits_fen for r in records))}"
            f" - withdrawals {format_amount(sum(r.withdrawals_fen for r in records))}"
            f" - fees {format_amount(sum(r.fees_fen for r in records))}"
            f" + settlement {format_amount(sum(r.settlement_in_fen - r.settlement_out_fen for r in records))}"
            f" + forfeits {format_amount(sum(r.forfeit_in_fen - r.forfeit_out_fen for r in records))}"
            f" + adjustments {format_amount(sum(r.adjustments_fen for r in records))}"
            f" = closing {format_amount(closing_total)}",
            f"  every member: previous balance + movements = new balance: "
            f"{'yes' if all(r.adds_up() for r in records) else 'NO'}",
            f"  withdrawal instructions: {len(mine)}, {format_amount(sum(i.amount_fen for i in mine))} CNY"
            f" (file {file_id}, to be paid on {execution_date})",
        ]
        write(f"bank {bank}: clearing file {len(records)} members, {len(mine)} withdrawal instructions ({file_id})")
    report += ["", f"open reconciliation breaks at the close: {len(open_breaks)}"]
    for b in open_breaks:
        report.append(
            f"  break {b[0]}: bank {b[1]} sub-account {b[2]} member {b[3] or '-'} {b[4]}: "
            f"bank {format_amount(int(b[5]))}, exchange {format_amount(int(b[6]))}; withdrawals blocked"
        )
    statements = ["member,sub_account,opening,deposits,withdrawals,fees,settlement_in,settlement_out,"
                  "forfeit_in,forfeit_out,adjustments,closing_available,closing_frozen"]  # fmt: skip
    for r in sorted(all_records, key=lambda r: r.member):
        statements.append(
            ",".join(
                [r.member, r.sub_account]
                + [
                    format_amount(v)
                    for v in (
                        r.opening_fen, r.deposits_fen, r.withdrawals_fen, r.fees_fen, r.settlement_in_fen,
                        r.settlement_out_fen, r.forfeit_in_fen, r.forfeit_out_fen, r.adjustments_fen,
                        r.closing_available_fen, r.closing_frozen_fen,
                    )
                ]
            )
        )  # fmt: skip
    _write(folder / f"statements-{date}.csv", ("\n".join(statements) + "\n").encode(), written)
    _write(folder / f"reconciliation-{date}.txt", ("\n".join(report) + "\n").encode(), written)
    return written


def run_end_of_day(
    sequencer: Sequencer,
    date: str,
    out_dir: Path,
    keys: Mapping[str, bytes],
    write: Callable[[str], None] = print,
    *,
    calendar: TradingCalendar = DEFAULT_CALENDAR,
    any_date: bool = False,
) -> list[Path]:
    """Close `date` through the sequencer (unless it is closed already), bring
    the clearing read models up to date and write the day's files. A day after
    the last closed one is closed only on a trading day of `calendar` not after
    the exchange's current day, unless `any_date` (EndOfDayError otherwise,
    nothing journaled)."""
    _check_date(date)
    clearing = sequencer.core.clearing
    if date > clearing.last_closed_date:
        _check_new_day(sequencer, date, calendar, any_date)
        next_trading_day(date, calendar)  # refuse before closing, not after
        write(f"closing business day {date} ...")
        ack = sequencer.execute([CloseDay(date)])[0]
        for e in ack.events:
            if e[0] == C_REJECTED:
                raise BankSetupError(f"CloseDay {date}: {ClearingCode(e[3]).name}: {clearing_message(e[3], e[4])}")
        write(f"closed {date} at seq {ack.seq}")
    elif date in clearing.closings:
        write(f"business day {date} is closed already: writing its files again")
    projected = catch_up_clearing(sequencer.database_url, write)
    write(f"clearing read models at seq {projected}")
    return day_files(sequencer.core, sequencer.database_url, date, out_dir, keys, write, calendar=calendar)


def export_bank_files(
    sequencer: Sequencer,
    date: str,
    out_dir: Path,
    keys: Mapping[str, bytes],
    write: Callable[[str], None] = print,
    *,
    calendar: TradingCalendar = DEFAULT_CALENDAR,
    any_date: bool = False,
) -> list[Path]:
    """The bank's files for `date`: for a closed day everything the end of day
    wrote; for an open day (after the last closed one; a trading day not after
    the exchange's current day unless `any_date`) the withdrawal instructions
    pending now, CreDtTm the journal's latest time."""
    _check_date(date)
    clearing = sequencer.core.clearing
    if date > clearing.last_closed_date:
        _check_new_day(sequencer, date, calendar, any_date)
    catch_up_clearing(sequencer.database_url, write)
    if date <= clearing.last_closed_date:
        return day_files(sequencer.core, sequencer.database_url, date, out_dir, keys, write, calendar=calendar)
    execution_date = next_trading_day(date, calendar)
    write(f"business day {date} is not closed: withdrawal instructions pending now, no clearing file")
    folder = out_dir / date
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    created = _created(sequencer.last_ts_ns)
    for bank in sorted({b for b, _ in clearing.members.values()}):
        key = _key(keys, bank)
        mine = [
            InstructionRecord(w.request_id, w.member, clearing.members[w.member][1], w.amount_fen, w.requested_by,
                              w.approved_by)
            for w in clearing.pending_instructions(bank)
        ]  # fmt: skip
        file_id = _instruction_files(folder, bank, date, execution_date, created, mine, key, written)
        write(f"bank {bank}: {len(mine)} withdrawal instructions ({file_id}), to be paid on {execution_date}")
    return written
