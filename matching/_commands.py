"""Commands of the matching core.

A command is a plain record; the sequencer gives it a sequence number and a
timestamp and hands it to ``MatchingEngine.apply``. Every field is a
primitive (or an ``Instrument``) so the journal can store it as a list of
values in declaration order: ``FIELDS[kind]`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from matching._instrument import Instrument
from matching._types import GTC, LIMIT, STP_CANCEL_NEWEST

__all__ = [
    "MATCHING_COMMANDS",
    "AmendOrder",
    "CancelOrder",
    "ListInstrument",
    "MassCancel",
    "MatchingCommand",
    "NewOrder",
    "SetTradingState",
]


@dataclass(slots=True)
class NewOrder:
    """Enter an order. `price_ticks` is ignored for a market order (it is
    protected by the price band: it trades up to the band's edge and no
    further). `quantity_lots` is the whole order's size.

    `receipts` (sell orders only, empty by default) names the seller's
    warehouse receipts the order locks, used in the order given; empty: the
    oldest active receipts. Matching ignores it; the exchange core checks it
    (see exchange/_core.py)."""

    KIND: ClassVar[str] = "new_order"
    account: str
    instrument: str
    client_order_id: str
    side: int
    price_ticks: int
    quantity_lots: int
    time_in_force: int = GTC
    order_type: int = LIMIT
    post_only: bool = False
    stp_mode: int = STP_CANCEL_NEWEST
    receipts: tuple[str, ...] = ()


@dataclass(slots=True)
class CancelOrder:
    KIND: ClassVar[str] = "cancel_order"
    account: str
    order_id: int


@dataclass(slots=True)
class AmendOrder:
    """Change an open order's price and/or total size.

    `quantity_lots` is the new total size of the order (filled lots
    included), as in FIX OrderQty: a size at or below what has already been
    filled ends the order. A pure size decrease keeps time priority; a price
    change or a size increase moves the order to the back of its new level,
    and an amended price that crosses the book trades at once.
    """

    KIND: ClassVar[str] = "amend_order"
    account: str
    order_id: int
    price_ticks: int
    quantity_lots: int


@dataclass(slots=True)
class MassCancel:
    """Cancel every open order of `account`, or only those in `instrument`
    when it is not empty."""

    KIND: ClassVar[str] = "mass_cancel"
    account: str
    instrument: str = ""


@dataclass(slots=True)
class SetTradingState:
    """Move an instrument between CLOSED, AUCTION, CONTINUOUS and HALTED.

    AUCTION -> CONTINUOUS uncrosses the call auction first. Moving to CLOSED
    expires DAY orders, forgets the day's client order ids and, if the
    instrument traded, makes the last trade price the next reference price.
    """

    KIND: ClassVar[str] = "set_trading_state"
    instrument: str
    state: int


@dataclass(slots=True)
class ListInstrument:
    KIND: ClassVar[str] = "list_instrument"
    instrument: Instrument


MatchingCommand = NewOrder | CancelOrder | AmendOrder | MassCancel | SetTradingState | ListInstrument

MATCHING_COMMANDS: dict[str, type[MatchingCommand]] = {
    cls.KIND: cls for cls in (NewOrder, CancelOrder, AmendOrder, MassCancel, SetTradingState, ListInstrument)
}
