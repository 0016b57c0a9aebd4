"""bulkex's own bank-file format: UTF-8 text, one record per line,
comma-separated fields (no quoting: no field may contain a comma), lines
ending in LF. See docs/bank-files.md for every kind and field.

    H,BULKEX-BANK,1,<kind>,<bank>,<file id>,<business date>
    <one record per line, first field the record type>
    T,<record count>,<control sum>[,<control sum>...]
    S,HMAC-SHA256,<64 lowercase hex digits>

The signature is HMAC-SHA256, with the bank's key, over every byte before
the signature line. Checks run in this order and the first failure is
reported (file, line, field): size, UTF-8, final newline, header, signature,
record count limit, each record top to bottom, trailer count, control sums.
A tampered file therefore fails on its signature; the later checks catch a
bank that signs a wrong file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from clearing._engine import valid_date, valid_id
from clearing.bankfiles._amounts import format_amount, parse_amount
from clearing.bankfiles._errors import FileError, FileErrorCode
from clearing.bankfiles._records import (
    BALANCES,
    CLEARING,
    DEPOSITS,
    WITHDRAWAL_INSTRUCTIONS,
    WITHDRAWAL_RESULTS,
    BalanceRecord,
    BankFile,
    BankRecord,
    ClearingRecord,
    DepositRecord,
    InstructionRecord,
    Place,
    ResultRecord,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAYOUTS",
    "MAX_FILE_BYTES",
    "MAX_REASON_CHARS",
    "MAX_RECORDS_PER_FILE",
    "TEXT_KINDS",
    "TRAILER_SUMS",
    "parse_text_file",
    "sign_body",
    "write_text_file",
]

FORMAT_NAME: Final = "BULKEX-BANK"
FORMAT_VERSION: Final = "1"
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_RECORDS_PER_FILE: Final = 200_000
MAX_REASON_CHARS: Final = 140
SIGNATURE_ALGORITHM: Final = "HMAC-SHA256"

# Field types: id (valid_id), amount (>0), balance (>=0), signed, date, status (OK/REJECTED), text (may be empty)
LAYOUTS: Final[dict[str, tuple[str, tuple[tuple[str, str], ...]]]] = {
    DEPOSITS: ("D", (("record_id", "id"), ("sub_account", "id"), ("amount", "amount"), ("value_date", "date"))),
    WITHDRAWAL_RESULTS: (
        "R",
        (
            ("record_id", "id"),
            ("request_id", "id"),
            ("sub_account", "id"),
            ("amount", "amount"),
            ("status", "status"),
            ("reason", "text"),
        ),
    ),
    BALANCES: ("B", (("sub_account", "id"), ("balance", "balance"), ("value_date", "date"))),
    WITHDRAWAL_INSTRUCTIONS: (
        "W",
        (
            ("request_id", "id"),
            ("member", "id"),
            ("sub_account", "id"),
            ("amount", "amount"),
            ("requested_by", "id"),
            ("approved_by", "id"),
        ),
    ),
    CLEARING: (
        "C",
        (
            ("member", "id"),
            ("sub_account", "id"),
            ("opening", "balance"),
            ("deposits", "balance"),
            ("withdrawals", "balance"),
            ("fees", "balance"),
            ("margin_frozen", "balance"),
            ("margin_released", "balance"),
            ("settlement_in", "balance"),
            ("settlement_out", "balance"),
            ("forfeit_in", "balance"),
            ("forfeit_out", "balance"),
            ("adjustments", "signed"),
            ("closing_available", "balance"),
            ("closing_frozen", "balance"),
        ),
    ),
}
TEXT_KINDS: Final = tuple(LAYOUTS)
TRAILER_SUMS: Final[dict[str, tuple[str, ...]]] = {
    DEPOSITS: ("amount_total",),
    WITHDRAWAL_RESULTS: ("amount_total", "ok_amount_total"),
    BALANCES: ("balance_total",),
    WITHDRAWAL_INSTRUCTIONS: ("amount_total",),
    CLEARING: ("opening_total", "closing_available_total", "closing_frozen_total"),
}
# the unique key of each kind's records: (field index, field name)
_UNIQUE: Final = {
    DEPOSITS: (0, "record_id"),
    WITHDRAWAL_RESULTS: (0, "record_id"),
    BALANCES: (0, "sub_account"),
    WITHDRAWAL_INSTRUCTIONS: (0, "request_id"),
    CLEARING: (0, "member"),
}


def _record_fields(record: BankRecord) -> list[str]:
    if isinstance(record, DepositRecord):
        return [record.record_id, record.sub_account, format_amount(record.amount_fen), record.value_date]
    if isinstance(record, ResultRecord):
        return [
            record.record_id,
            record.request_id,
            record.sub_account,
            format_amount(record.amount_fen),
            "OK" if record.ok else "REJECTED",
            record.reason,
        ]
    if isinstance(record, BalanceRecord):
        return [record.sub_account, format_amount(record.balance_fen), record.value_date]
    if isinstance(record, InstructionRecord):
        return [
            record.request_id,
            record.member,
            record.sub_account,
            format_amount(record.amount_fen),
            record.requested_by,
            record.approved_by,
        ]
    return [record.member, record.sub_account] + [
        format_amount(v)
        for v in (
            record.opening_fen,
            record.deposits_fen,
            record.withdrawals_fen,
            record.fees_fen,
            record.margin_frozen_fen,
            record.margin_released_fen,
            record.settlement_in_fen,
            record.settlement_out_fen,
            record.forfeit_in_fen,
            record.forfeit_out_fen,
            record.adjustments_fen,
            record.closing_available_fen,
            record.closing_frozen_fen,
        )
    ]


_RECORD_CLASS: Final = {
    DEPOSITS: DepositRecord,
    WITHDRAWAL_RESULTS: ResultRecord,
    BALANCES: BalanceRecord,
    WITHDRAWAL_INSTRUCTIONS: InstructionRecord,
    CLEARING: ClearingRecord,
}


def _sums(kind: str, records: Sequence[BankRecord]) -> list[int]:
    if kind == DEPOSITS:
        return [sum(r.amount_fen for r in records if isinstance(r, DepositRecord))]
    if kind == WITHDRAWAL_RESULTS:
        results = [r for r in records if isinstance(r, ResultRecord)]
        return [sum(r.amount_fen for r in results), sum(r.amount_fen for r in results if r.ok)]
    if kind == BALANCES:
        return [sum(r.balance_fen for r in records if isinstance(r, BalanceRecord))]
    if kind == WITHDRAWAL_INSTRUCTIONS:
        return [sum(r.amount_fen for r in records if isinstance(r, InstructionRecord))]
    rows = [r for r in records if isinstance(r, ClearingRecord)]
    return [
        sum(r.opening_fen for r in rows),
        sum(r.closing_available_fen for r in rows),
        sum(r.closing_frozen_fen for r in rows),
    ]


def sign_body(body: bytes, key: bytes) -> bytes:
    """The signature line for `body` (everything before it)."""
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    return f"S,{SIGNATURE_ALGORITHM},{digest}\n".encode()


def write_text_file(
    kind: str, bank: str, file_id: str, business_date: str, records: Sequence[BankRecord], key: bytes
) -> bytes:
    """The signed bytes of a file. Same arguments, same bytes."""
    assert kind in LAYOUTS, kind
    assert valid_id(bank)
    assert valid_id(file_id)
    assert valid_date(business_date)
    assert len(records) <= MAX_RECORDS_PER_FILE
    tag, _layout = LAYOUTS[kind]
    cls = _RECORD_CLASS[kind]
    lines = [f"H,{FORMAT_NAME},{FORMAT_VERSION},{kind},{bank},{file_id},{business_date}"]
    for record in records:
        assert isinstance(record, cls), (kind, record)
        lines.append(",".join([tag, *_record_fields(record)]))
    lines.append(",".join(["T", str(len(records)), *(format_amount(s) for s in _sums(kind, records))]))
    body = ("\n".join(lines) + "\n").encode()
    return body + sign_body(body, key)


def _valid_text(text: str) -> bool:
    return len(text) <= MAX_REASON_CHARS and text.isprintable() and "," not in text


def parse_text_file(
    data: bytes,
    keys: Mapping[str, bytes],
    *,
    name: str = "",
    kinds: Collection[str] = TEXT_KINDS,
    max_bytes: int = MAX_FILE_BYTES,
    max_records: int = MAX_RECORDS_PER_FILE,
) -> BankFile:
    """Parse and verify a file; raise FileError (with `name`) at the first problem."""
    try:
        return _parse(data, keys, kinds, max_bytes, max_records)
    except FileError as err:
        err.file = name
        raise


def _parse(
    data: bytes, keys: Mapping[str, bytes], kinds: Collection[str], max_bytes: int, max_records: int
) -> BankFile:
    if len(data) > max_bytes:
        raise FileError(FileErrorCode.FILE_TOO_LARGE, f"{len(data)} bytes, limit {max_bytes}")
    if not data:
        raise FileError(FileErrorCode.EMPTY_FILE, line=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(FileErrorCode.NOT_UTF8, f"byte {exc.start}", data[: exc.start].count(b"\n") + 1) from None
    if text.startswith("\ufeff"):
        # The text format has no byte order mark (the signature covers the exact bytes); ISO XML files may have one.
        raise FileError(FileErrorCode.NOT_UTF8, "a byte order mark before the header", 1, "header")
    if not text.endswith("\n"):
        raise FileError(FileErrorCode.TRUNCATED, "no newline at the end of the last line", text.count("\n") + 1)
    lines = text[:-1].split("\n")
    for n, line in enumerate(lines, start=1):
        if "\r" in line:
            raise FileError(FileErrorCode.BAD_FIELD, "CR in a line; end lines with LF only", n, "line")
    # header
    head = lines[0].split(",")
    if len(head) != 7 or head[0] != "H" or head[1] != FORMAT_NAME:
        raise FileError(FileErrorCode.BAD_HEADER, lines[0][:80], 1, "header")
    _, _, version, kind, bank, file_id, business_date = head
    if version != FORMAT_VERSION:
        raise FileError(FileErrorCode.UNSUPPORTED_VERSION, version, 1, "version")
    if kind not in LAYOUTS or kind not in kinds:
        accepted = ", ".join(k for k in kinds if k in LAYOUTS)
        raise FileError(FileErrorCode.UNEXPECTED_KIND, f"{kind[:40]}; accepted here: {accepted}", 1, "kind")
    if not valid_id(bank):
        raise FileError(FileErrorCode.BAD_FIELD, bank, 1, "bank")
    key = keys.get(bank)
    if key is None:
        raise FileError(FileErrorCode.UNKNOWN_BANK, bank, 1, "bank")
    if not valid_id(file_id):
        raise FileError(FileErrorCode.BAD_FIELD, file_id, 1, "file_id")
    if not valid_date(business_date):
        raise FileError(FileErrorCode.BAD_DATE, business_date, 1, "business_date")
    # signature: the last line
    last = len(lines)
    if not lines[-1].startswith("S,"):
        for n, line in enumerate(lines, start=1):
            if line.startswith("S,"):
                raise FileError(FileErrorCode.DATA_AFTER_SIGNATURE, "", n + 1, "")
        raise FileError(FileErrorCode.TRUNCATED, "no signature line", last, "signature")
    sig = lines[-1].split(",")
    if len(sig) != 3 or sig[1] != SIGNATURE_ALGORITHM or len(sig[2]) != 64:
        raise FileError(FileErrorCode.MISSING_SIGNATURE, lines[-1][:80], last, "signature")
    body = data[: len(data) - len(lines[-1].encode()) - 1]
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig[2]):
        raise FileError(FileErrorCode.BAD_SIGNATURE, "", last, "signature")
    if last < 3:
        raise FileError(FileErrorCode.TRUNCATED, "no trailer", last, "trailer")
    count = last - 3
    if count > max_records:
        raise FileError(FileErrorCode.TOO_MANY_RECORDS, f"{count} records, limit {max_records}", 2 + max_records)
    # records
    tag, layout = LAYOUTS[kind]
    unique_index, unique_name = _UNIQUE[kind]
    seen: set[str] = set()
    records: list[BankRecord] = []
    for n in range(2, last - 1):
        fields = lines[n - 1].split(",")
        if fields[0] != tag:
            if fields[0] == "T":
                raise FileError(FileErrorCode.COUNT_MISMATCH, "trailer before the last records", n, "record_type")
            raise FileError(FileErrorCode.BAD_RECORD_TYPE, f"{fields[0][:10]!r}, expected {tag}", n, "record_type")
        if len(fields) != len(layout) + 1:
            raise FileError(FileErrorCode.FIELD_COUNT, f"{len(fields)} fields, expected {len(layout) + 1}", n)
        values = _fields(fields[1:], layout, n)
        if kind == BALANCES and values[2] != business_date:
            raise FileError(FileErrorCode.BAD_DATE, "must equal the header's business date", n, "value_date")
        key_value = fields[1 + unique_index]
        if key_value in seen:
            raise FileError(FileErrorCode.DUPLICATE_RECORD, key_value, n, unique_name)
        seen.add(key_value)
        record = _RECORD_CLASS[kind](*values)
        if isinstance(record, ClearingRecord) and not record.adds_up():
            raise FileError(FileErrorCode.BALANCE_MISMATCH, record.member, n, "closing_available")
        records.append(record)
    # trailer
    trailer = lines[last - 2].split(",")
    names = TRAILER_SUMS[kind]
    if trailer[0] != "T" or len(trailer) != 2 + len(names):
        raise FileError(FileErrorCode.BAD_TRAILER, lines[last - 2][:80], last - 1, "trailer")
    if not trailer[1].isascii() or not trailer[1].isdigit():
        raise FileError(FileErrorCode.BAD_TRAILER, trailer[1][:20], last - 1, "record_count")
    if int(trailer[1]) != len(records):
        raise FileError(
            FileErrorCode.COUNT_MISMATCH, f"trailer {trailer[1]}, file {len(records)}", last - 1, "record_count"
        )
    for name, text, actual in zip(names, trailer[2:], _sums(kind, records), strict=True):
        if parse_amount(text, signed=True, line=last - 1, field=name) != actual:
            raise FileError(
                FileErrorCode.CONTROL_SUM_MISMATCH, f"trailer {text}, records {format_amount(actual)}", last - 1, name
            )
    places = tuple(Place(n) for n in range(2, 2 + len(records)))
    return BankFile(kind, bank, file_id, business_date, tuple(records), places, Place(1))


def _fields(texts: list[str], layout: tuple[tuple[str, str], ...], n: int) -> list[object]:
    values: list[object] = []
    for text, (name, ftype) in zip(texts, layout, strict=True):
        if ftype == "id":
            if not valid_id(text):
                raise FileError(FileErrorCode.BAD_FIELD, text[:80], n, name)
            values.append(text)
        elif ftype == "amount":
            values.append(parse_amount(text, allow_zero=False, line=n, field=name))
        elif ftype == "balance":
            values.append(parse_amount(text, line=n, field=name))
        elif ftype == "signed":
            values.append(parse_amount(text, signed=True, line=n, field=name))
        elif ftype == "date":
            if not valid_date(text):
                raise FileError(FileErrorCode.BAD_DATE, text[:20], n, name)
            values.append(text)
        elif ftype == "status":
            if text not in ("OK", "REJECTED"):
                raise FileError(FileErrorCode.BAD_STATUS, text[:20], n, name)
            values.append(text == "OK")
        else:
            if not _valid_text(text):
                raise FileError(FileErrorCode.BAD_FIELD, text[:80], n, name)
            values.append(text)
    return values
