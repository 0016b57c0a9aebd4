"""Money arithmetic of the trading flow: margins, fees, order holds, forfeit
splits. Integers only; every rounding names its mode and who gets the residue.

Notional of a trade, in fen: ``price_ticks * tick_fen * lot_size_t * quantity_lots``
(exact, no rounding).

- Margin (``margin_fen``): notional x margin_rate_bps / 10000, rounded UP to
  the fen (ceiling). The residue (under one fen) stays frozen with the margin
  and goes back to the member when the margin is released; nobody gains it.
- Fee (``fee_fen``): notional x fee_bps / 10000, rounded HALF UP to the fen.
  A fraction of half a fen or more is charged (the exchange gains at most half
  a fen), a smaller fraction is waived (the member keeps it).
- Order hold (``order_hold_fen``): quantity_lots x the hold for ONE lot at the
  order's limit price, where the one-lot hold is the one-lot margin rounded up
  plus, for a buy, the one-lot fee at the taker rate rounded up. Because
  ceil(q x a) <= q x ceil(a) and half-up <= ceiling, the consumed part of the
  hold always covers the deal margin plus the fee of any trade at the limit
  price or better; partial cancels release exactly (cancelled lots x one-lot
  hold), so no residue ever builds up in an order's hold. The extra (under one
  fen per lot and component) is returned on release or at the trade.
- Forfeit split (``forfeit_split``): the risk fund's part is margin x
  risk_fund_share_bps / 10000 rounded DOWN; the residue goes to the
  non-defaulting side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from matching import BUY, Instrument

__all__ = [
    "BPS",
    "InstrumentRisk",
    "fee_fen",
    "forfeit_split",
    "margin_fen",
    "per_lot_hold_fen",
]

BPS: Final = 10_000


def margin_fen(notional_fen: int, rate_bps: int) -> int:
    """Margin for a notional: rounded up (ceiling) to the fen."""
    assert notional_fen >= 0
    assert 0 <= rate_bps <= BPS
    return -(-notional_fen * rate_bps // BPS)


def fee_fen(notional_fen: int, fee_bps: int) -> int:
    """Fee for a notional: rounded half up to the fen."""
    assert notional_fen >= 0
    assert 0 <= fee_bps <= BPS
    return (notional_fen * fee_bps * 2 + BPS) // (2 * BPS)


def forfeit_split(margin: int, risk_fund_share_bps: int) -> tuple[int, int]:
    """(to the risk fund, to the other side): the fund's part rounded down."""
    assert margin >= 0
    assert 0 <= risk_fund_share_bps <= BPS
    fund = margin * risk_fund_share_bps // BPS
    return fund, margin - fund


@dataclass(frozen=True, slots=True)
class InstrumentRisk:
    """The money parameters clearing needs from an ``Instrument``."""

    symbol: str
    lot_fen_per_tick: int  # tick_fen * lot_size_t: fen of notional per tick per lot
    margin_rate_bps: int
    maker_fee_bps: int
    taker_fee_bps: int
    payment_days: int
    delivery_days: int

    @classmethod
    def of(cls, inst: Instrument) -> InstrumentRisk:
        return cls(
            inst.symbol,
            inst.tick_fen * inst.lot_size_t,
            inst.margin_rate_bps,
            inst.maker_fee_bps,
            inst.taker_fee_bps,
            inst.payment_days,
            inst.delivery_days,
        )

    def notional_fen(self, price_ticks: int, quantity_lots: int) -> int:
        return price_ticks * self.lot_fen_per_tick * quantity_lots

    def to_list(self) -> list[object]:
        return [
            self.symbol,
            self.lot_fen_per_tick,
            self.margin_rate_bps,
            self.maker_fee_bps,
            self.taker_fee_bps,
            self.payment_days,
            self.delivery_days,
        ]


def per_lot_hold_fen(risk: InstrumentRisk, side: int, price_ticks: int) -> int:
    """The hold for one lot at `price_ticks`: margin rounded up, plus for a
    buy the taker fee rounded up."""
    lot_notional = price_ticks * risk.lot_fen_per_tick
    hold = -(-lot_notional * risk.margin_rate_bps // BPS)
    if side == BUY:
        hold += -(-lot_notional * risk.taker_fee_bps // BPS)
    return hold
