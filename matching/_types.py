"""Small integer codes shared by the matching core.

Plain ``int`` constants are used on the hot path (attribute access on an
``IntEnum`` costs more than a module global); the enums give them names at
the edges.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

__all__ = [
    "AUCTION",
    "BREAK",
    "BUY",
    "CLOSED",
    "CONTINUOUS",
    "DAY",
    "FOK",
    "GTC",
    "HALTED",
    "IOC",
    "LIMIT",
    "MARKET",
    "SELL",
    "STP_CANCEL_BOTH",
    "STP_CANCEL_NEWEST",
    "STP_CANCEL_OLDEST",
    "STP_DECREMENT",
    "STP_NONE",
    "OrderType",
    "Side",
    "StpMode",
    "TimeInForce",
    "TradingState",
]

BUY: Final = 0
SELL: Final = 1

GTC: Final = 0
DAY: Final = 1
IOC: Final = 2
FOK: Final = 3

LIMIT: Final = 0
MARKET: Final = 1

STP_NONE: Final = 0
STP_CANCEL_NEWEST: Final = 1
STP_CANCEL_OLDEST: Final = 2
STP_CANCEL_BOTH: Final = 3
STP_DECREMENT: Final = 4

CLOSED: Final = 0
AUCTION: Final = 1
CONTINUOUS: Final = 2
HALTED: Final = 3
BREAK: Final = 4  # a scheduled pause (e.g. lunch): like a halt, but the schedule ends it


class Side(IntEnum):
    BUY = 0
    SELL = 1


class TimeInForce(IntEnum):
    GTC = 0
    DAY = 1
    IOC = 2
    FOK = 3


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1


class StpMode(IntEnum):
    """Self-trade prevention: what happens when an order would trade with a
    resting order of the same account.

    NONE: trade anyway. CANCEL_NEWEST: cancel the rest of the incoming order.
    CANCEL_OLDEST: cancel the resting order and keep matching.
    CANCEL_BOTH: cancel both. DECREMENT: reduce both by the smaller open
    quantity, without a trade; whichever reaches zero is cancelled.
    """

    NONE = 0
    CANCEL_NEWEST = 1
    CANCEL_OLDEST = 2
    CANCEL_BOTH = 3
    DECREMENT = 4


class TradingState(IntEnum):
    CLOSED = 0
    AUCTION = 1
    CONTINUOUS = 2
    HALTED = 3
    BREAK = 4
