"""Amounts at the file edge: decimal yuan strings <-> integer fen, exactly.

Accepted: an optional minus sign (only where a field is signed), one or more
digits, optionally a point and one or two digits: ``0``, ``12``, ``12.5``,
``1234.56``, ``-3.00``. Refused: a fraction of a fen (``1.234``, even
``1.230``), exponents, plus signs, spaces, thousands separators, leading
points. Nothing is ever rounded.
"""

from __future__ import annotations

from typing import Final

from clearing.bankfiles._errors import FileError, FileErrorCode

__all__ = ["MAX_FILE_AMOUNT_FEN", "format_amount", "parse_amount"]

MAX_FILE_AMOUNT_FEN: Final = 10**15  # 10 trillion CNY: anything larger is a corrupt field
_MAX_DIGITS: Final = 16


def parse_amount(text: str, *, signed: bool = False, allow_zero: bool = True, line: int = 0, field: str = "") -> int:
    """Parse `text` to fen or raise FileError naming `line` and `field`."""
    body = text[1:] if signed and text.startswith("-") else text
    whole, point, frac = body.partition(".")
    if not whole or not whole.isascii() or not whole.isdigit() or (point and not frac) or len(whole) > _MAX_DIGITS:
        raise FileError(FileErrorCode.BAD_AMOUNT, repr(text), line, field)
    if frac and (not frac.isascii() or not frac.isdigit()):
        raise FileError(FileErrorCode.BAD_AMOUNT, repr(text), line, field)
    if len(frac) > 2:
        raise FileError(FileErrorCode.SUB_FEN_AMOUNT, repr(text), line, field)
    fen = int(whole) * 100 + int(frac.ljust(2, "0") or "0")
    if body is not text:
        fen = -fen
    if abs(fen) > MAX_FILE_AMOUNT_FEN or (not allow_zero and fen == 0):
        raise FileError(FileErrorCode.AMOUNT_OUT_OF_RANGE, repr(text), line, field)
    return fen


def format_amount(fen: int) -> str:
    """Fen to a decimal yuan string with two places: 123456 -> '1234.56'."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
