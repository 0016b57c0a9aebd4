"""Instrument definitions: what is traded, in which units, under which limits.

Units: a price is a whole number of ticks; one tick is `tick_fen` fen per
tonne. A quantity is a whole number of lots; one lot is `lot_size_t` tonnes.
The notional of a trade in fen is therefore
``price_ticks * tick_fen * quantity_lots * lot_size_t``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from matching._errors import RejectCode, Rejected
from matching._types import AUCTION, BREAK, CLOSED, CONTINUOUS

__all__ = ["MAX_LOTS_PER_ORDER", "MAX_PRICE_TICKS", "Instrument", "SessionPhase"]

MAX_PRICE_TICKS = 10_000_000  # a hard ceiling whatever the band says
MAX_LOTS_PER_ORDER = 1_000_000
FEN_PER_CNY = 100


@dataclass(frozen=True, slots=True)
class SessionPhase:
    """From `start_minute` (minutes after midnight, exchange time) the
    instrument is in `state` (AUCTION, CONTINUOUS, BREAK or CLOSED)."""

    start_minute: int
    state: int


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    commodity: str
    product: str
    grade: str
    warehouse_group: str
    lot_size_t: int
    tick_fen: int
    reference_price_ticks: int
    price_band_bps: int
    min_lots: int
    max_lots: int
    margin_rate_bps: int = 1000
    maker_fee_bps: int = 2
    taker_fee_bps: int = 5
    payment_days: int = 2
    delivery_days: int = 5
    weight_tolerance_bps: int = 300
    sessions: tuple[SessionPhase, ...] = field(default=())
    receipts_required: bool = True
    """Sell orders must lock warehouse receipts covering their quantity (the
    exchange's rule; False only for test and benchmark setups of matching alone)."""

    JOURNAL_DEFAULTS: ClassVar[dict[str, object]] = {"receipts_required": False}
    """What a journal record written before a field existed means by leaving it
    out (see exchange/_codec.py): instruments listed then sold without receipts,
    so replaying an old journal gives the state it gave when it was written."""

    def problems(self) -> list[str]:
        """Everything wrong with this definition (empty when it is valid)."""
        out: list[str] = []
        if not (1 <= len(self.symbol) <= 32) or not self.symbol.isprintable() or " " in self.symbol:
            out.append("symbol must be 1 to 32 printable characters without spaces")
        for name in ("lot_size_t", "tick_fen", "reference_price_ticks", "min_lots", "max_lots"):
            if getattr(self, name) <= 0:
                out.append(f"{name} must be positive")
        if self.max_lots < self.min_lots:
            out.append("max_lots must be at least min_lots")
        if self.max_lots > MAX_LOTS_PER_ORDER:
            out.append(f"max_lots must be at most {MAX_LOTS_PER_ORDER}")
        if not (0 < self.price_band_bps < 10_000):
            out.append("price_band_bps must be between 1 and 9999")
        if self.reference_price_ticks > MAX_PRICE_TICKS // 2:
            out.append(f"reference_price_ticks must be at most {MAX_PRICE_TICKS // 2}")
        for name in ("margin_rate_bps", "maker_fee_bps", "taker_fee_bps", "weight_tolerance_bps"):
            if not (0 <= getattr(self, name) <= 10_000):
                out.append(f"{name} must be between 0 and 10000")
        for name in ("payment_days", "delivery_days"):
            if not (0 <= getattr(self, name) <= 60):
                out.append(f"{name} must be between 0 and 60")
        if not isinstance(self.receipts_required, bool):  # from untyped input (a file, a journal)
            out.append("receipts_required must be true or false")  # type: ignore[unreachable]
        last = -1
        for phase in self.sessions:
            if phase.state not in (AUCTION, CONTINUOUS, BREAK, CLOSED):
                out.append("a session phase must be auction, continuous, break or closed")
            if not (0 <= phase.start_minute < 24 * 60) or phase.start_minute <= last:
                out.append("session phases must start at increasing minutes within the day")
            last = phase.start_minute
        return out

    @property
    def band_low_ticks(self) -> int:
        """Lowest accepted price: reference less the band, band rounded down
        (so the band never widens by rounding)."""
        return max(1, self.reference_price_ticks - self.reference_price_ticks * self.price_band_bps // 10_000)

    @property
    def band_high_ticks(self) -> int:
        return self.reference_price_ticks + self.reference_price_ticks * self.price_band_bps // 10_000

    def price_fen_per_t(self, price_ticks: int) -> int:
        return price_ticks * self.tick_fen

    def notional_fen(self, price_ticks: int, quantity_lots: int) -> int:
        return price_ticks * self.tick_fen * quantity_lots * self.lot_size_t

    def price_to_ticks(self, price_cny_per_t: str | Decimal) -> int:
        """Parse a CNY-per-tonne decimal (as a string on the wire) to ticks.

        Refuses anything that is not an exact whole number of ticks rather
        than rounding it: a trader's price is never silently changed.
        """
        try:
            value = Decimal(price_cny_per_t)
        except (InvalidOperation, ValueError, TypeError):
            raise Rejected(RejectCode.PRICE_OFF_TICK, f"not a decimal number: {price_cny_per_t!r}") from None
        if not value.is_finite():
            raise Rejected(RejectCode.PRICE_OFF_TICK, "price must be a finite number")
        fen = value * FEN_PER_CNY
        if fen != fen.to_integral_value():
            raise Rejected(RejectCode.PRICE_OFF_TICK, f"{value} CNY/t has a fraction of a fen")
        fen_int = int(fen)
        if fen_int <= 0:
            raise Rejected(RejectCode.PRICE_NOT_POSITIVE, f"{value} CNY/t")
        if fen_int % self.tick_fen:
            raise Rejected(RejectCode.PRICE_OFF_TICK, f"{value} CNY/t is not a multiple of the tick {self.tick_cny()}")
        return fen_int // self.tick_fen

    def ticks_to_price(self, price_ticks: int) -> str:
        """Ticks to a CNY-per-tonne decimal string with two places."""
        fen = price_ticks * self.tick_fen
        return f"{fen // FEN_PER_CNY}.{fen % FEN_PER_CNY:02d}"

    def tick_cny(self) -> str:
        return self.ticks_to_price(1)
