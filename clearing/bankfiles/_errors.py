"""File errors of the bank-file parsers, one enumeration, each with a
message that tells the bank (or the operator) how to fix the file.

    FileErrorCode
    ├── whole file:  FILE_TOO_LARGE, EMPTY_FILE, NOT_UTF8, TRUNCATED,
    │                TOO_MANY_RECORDS, DATA_AFTER_SIGNATURE
    ├── signature:   MISSING_SIGNATURE, BAD_SIGNATURE, UNKNOWN_BANK
    ├── framing:     BAD_HEADER, UNSUPPORTED_VERSION, UNEXPECTED_KIND,
    │                BAD_RECORD_TYPE, FIELD_COUNT, BAD_TRAILER
    ├── fields:      BAD_FIELD, BAD_AMOUNT, SUB_FEN_AMOUNT, AMOUNT_OUT_OF_RANGE,
    │                BAD_DATE, BAD_STATUS, DUPLICATE_RECORD
    ├── totals:      COUNT_MISMATCH, CONTROL_SUM_MISMATCH, BALANCE_MISMATCH,
    │                ROLL_FORWARD_MISMATCH
    └── ISO 20022:   BAD_XML, FORBIDDEN_XML, UNKNOWN_MESSAGE, MISSING_ELEMENT,
                     BAD_CURRENCY

Every error carries the file name, the 1-based line and the field (a column
name for bulkex text files, an element path for XML) of the FIRST problem.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["FILE_MESSAGES", "FileError", "FileErrorCode"]


class FileErrorCode(IntEnum):
    FILE_TOO_LARGE = 1
    EMPTY_FILE = 2
    NOT_UTF8 = 3
    TRUNCATED = 4
    TOO_MANY_RECORDS = 5
    DATA_AFTER_SIGNATURE = 6
    MISSING_SIGNATURE = 10
    BAD_SIGNATURE = 11
    UNKNOWN_BANK = 12
    BAD_HEADER = 20
    UNSUPPORTED_VERSION = 21
    UNEXPECTED_KIND = 22
    BAD_RECORD_TYPE = 23
    FIELD_COUNT = 24
    BAD_TRAILER = 25
    BAD_FIELD = 30
    BAD_AMOUNT = 31
    SUB_FEN_AMOUNT = 32
    AMOUNT_OUT_OF_RANGE = 33
    BAD_DATE = 34
    BAD_STATUS = 35
    DUPLICATE_RECORD = 36
    COUNT_MISMATCH = 40
    CONTROL_SUM_MISMATCH = 41
    BALANCE_MISMATCH = 42
    ROLL_FORWARD_MISMATCH = 43
    BAD_XML = 50
    FORBIDDEN_XML = 51
    UNKNOWN_MESSAGE = 52
    MISSING_ELEMENT = 53
    BAD_CURRENCY = 54


FILE_MESSAGES: dict[FileErrorCode, str] = {
    FileErrorCode.FILE_TOO_LARGE: "the file is larger than the limit; split it into several files",
    FileErrorCode.EMPTY_FILE: "the file is empty; send the complete file",
    FileErrorCode.NOT_UTF8: "the file is not valid UTF-8; save it as UTF-8 without a byte order mark",
    FileErrorCode.TRUNCATED: "the file ends early (no final newline, trailer or signature); send the complete file",
    FileErrorCode.TOO_MANY_RECORDS: "the file has more records than the limit; split it into several files",
    FileErrorCode.DATA_AFTER_SIGNATURE: "nothing may follow the signature line; remove the extra lines",
    FileErrorCode.MISSING_SIGNATURE: "the last line must be the HMAC-SHA256 signature line",
    FileErrorCode.BAD_SIGNATURE: "the HMAC-SHA256 signature does not match the contents; the file was changed or "
    "signed with another key",
    FileErrorCode.UNKNOWN_BANK: "no key is configured for this bank; check the bank code in the header",
    FileErrorCode.BAD_HEADER: "the first line must be the header "
    "H,BULKEX-BANK,<version>,<kind>,<bank>,<file id>,<date>",
    FileErrorCode.UNSUPPORTED_VERSION: "this format version is not supported; use version 1",
    FileErrorCode.UNEXPECTED_KIND: "this kind of file is not accepted here; check the kind in the header",
    FileErrorCode.BAD_RECORD_TYPE: "the record type (first field) is not valid for this kind of file",
    FileErrorCode.FIELD_COUNT: "the line has the wrong number of comma-separated fields",
    FileErrorCode.BAD_TRAILER: "the line before the signature must be the trailer T,<record count>,<control sums>",
    FileErrorCode.BAD_FIELD: "the field must be 1 to 64 printable characters without spaces, commas, bars or quotes",
    FileErrorCode.BAD_AMOUNT: "an amount is written in yuan as digits with at most two decimals, e.g. 1234.50",
    FileErrorCode.SUB_FEN_AMOUNT: "the amount has a fraction of a fen; amounts have at most two decimals",
    FileErrorCode.AMOUNT_OUT_OF_RANGE: "the amount is zero, negative or above the per-record limit",
    FileErrorCode.BAD_DATE: "dates are written YYYY-MM-DD",
    FileErrorCode.BAD_STATUS: "the status must be OK or REJECTED",
    FileErrorCode.DUPLICATE_RECORD: "a record id (or sub-account) appears twice in the file; remove the repeat",
    FileErrorCode.COUNT_MISMATCH: "the record count in the trailer differs from the records in the file",
    FileErrorCode.CONTROL_SUM_MISMATCH: "a control sum in the trailer differs from the sum of the records",
    FileErrorCode.BALANCE_MISMATCH: "the record does not add up: opening + movements must equal closing",
    FileErrorCode.ROLL_FORWARD_MISMATCH: "opening balance + entries does not equal the closing balance",
    FileErrorCode.BAD_XML: "the XML is not well formed",
    FileErrorCode.FORBIDDEN_XML: "document type declarations and entities are not accepted; remove them",
    FileErrorCode.UNKNOWN_MESSAGE: "the XML is not a supported ISO 20022 message (camt.053, camt.054, pain.001, "
    "pain.002)",
    FileErrorCode.MISSING_ELEMENT: "a required element is missing or empty",
    FileErrorCode.BAD_CURRENCY: "only CNY is accepted",
}


class FileError(Exception):
    """A rejected file: the code, a message saying how to fix it, and where
    the first problem is (file name, 1-based line, field)."""

    def __init__(self, code: FileErrorCode, detail: str = "", line: int = 0, field: str = "", file: str = "") -> None:
        self.code = code
        self.detail = detail
        self.line = line
        self.field = field
        self.file = file
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"{self.file or '<file>'}:{self.line}" + (f" field {self.field}" if self.field else "")
        text = FILE_MESSAGES[self.code]
        return f"{where}: {self.code.name}: {text}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code.name,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "detail": self.detail,
        }
