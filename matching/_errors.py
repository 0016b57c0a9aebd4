"""Reject reasons of the matching core, one enumeration, each with a message
that tells the sender how to fix the command.

    RejectCode
    ├── instrument:  UNKNOWN_INSTRUMENT, INSTRUMENT_EXISTS, BAD_INSTRUMENT
    ├── session:     MARKET_CLOSED, MARKET_HALTED, NOT_IN_AUCTION, BAD_STATE
    ├── price:       PRICE_OUT_OF_BAND, PRICE_OFF_TICK, PRICE_NOT_POSITIVE
    ├── quantity:    QUANTITY_BELOW_MIN, QUANTITY_ABOVE_MAX
    ├── order shape: BAD_SIDE, BAD_TIME_IN_FORCE, BAD_ORDER_TYPE, BAD_STP_MODE,
    │                BAD_CLIENT_ORDER_ID, MARKET_ORDER_NEEDS_IOC_FOK,
    │                POST_ONLY_NEEDS_LIMIT
    ├── outcome:     POST_ONLY_WOULD_CROSS, FOK_NOT_FILLABLE (a market or IOC order that
    │                finds nothing is accepted and cancelled, not refused)
    ├── references:  UNKNOWN_ORDER, NOT_YOUR_ORDER
    ├── limits:      TOO_MANY_ORDERS, TOO_MANY_LEVELS, TOO_MANY_INSTRUMENTS
    ├── risk:        INSUFFICIENT_FUNDS, INSUFFICIENT_RECEIPTS (raised by clearing
    │                and warehouse, listed here so one table holds every code)
    └── receipts:    UNKNOWN_RECEIPT, RECEIPT_NOT_ACTIVE, RECEIPT_NOT_DELIVERABLE,
                     RECEIPTS_IN_TWO_WAREHOUSES, RECEIPT_REPEATED, TOO_MANY_RECEIPTS,
                     RECEIPTS_ON_BUY (a sell order naming its receipts; raised by the
                     exchange core, which also answers a named set too light with 81)
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["MESSAGES", "RejectCode", "Rejected", "message_for"]


class RejectCode(IntEnum):
    UNKNOWN_INSTRUMENT = 1
    INSTRUMENT_EXISTS = 2
    BAD_INSTRUMENT = 3
    MARKET_CLOSED = 10
    MARKET_HALTED = 11
    NOT_IN_AUCTION = 12
    BAD_STATE = 13
    PRICE_OUT_OF_BAND = 20
    PRICE_OFF_TICK = 21
    PRICE_NOT_POSITIVE = 22
    QUANTITY_BELOW_MIN = 30
    QUANTITY_ABOVE_MAX = 31
    BAD_SIDE = 40
    BAD_TIME_IN_FORCE = 41
    BAD_ORDER_TYPE = 42
    BAD_STP_MODE = 43
    BAD_CLIENT_ORDER_ID = 44
    MARKET_ORDER_NEEDS_IOC_FOK = 45
    POST_ONLY_NEEDS_LIMIT = 46
    POST_ONLY_WOULD_CROSS = 50
    FOK_NOT_FILLABLE = 51
    UNKNOWN_ORDER = 60
    NOT_YOUR_ORDER = 61
    TOO_MANY_ORDERS = 70
    TOO_MANY_LEVELS = 71
    TOO_MANY_INSTRUMENTS = 72
    INSUFFICIENT_FUNDS = 80
    INSUFFICIENT_RECEIPTS = 81
    UNKNOWN_RECEIPT = 82
    RECEIPT_NOT_ACTIVE = 83
    RECEIPT_NOT_DELIVERABLE = 84
    RECEIPTS_IN_TWO_WAREHOUSES = 85
    RECEIPT_REPEATED = 86
    TOO_MANY_RECEIPTS = 87
    RECEIPTS_ON_BUY = 88


MESSAGES: dict[RejectCode, str] = {
    RejectCode.UNKNOWN_INSTRUMENT: "no instrument with this symbol is listed; use a symbol from the instrument list",
    RejectCode.INSTRUMENT_EXISTS: "an instrument with this symbol is already listed",
    RejectCode.BAD_INSTRUMENT: "the instrument definition is invalid",
    RejectCode.MARKET_CLOSED: (
        "the instrument is closed for trading; send orders during the auction or continuous session"
    ),
    RejectCode.MARKET_HALTED: "trading in the instrument is halted; wait for it to resume",
    RejectCode.NOT_IN_AUCTION: "this command is only valid during the call auction",
    RejectCode.BAD_STATE: "the instrument cannot move to the requested trading state from its current one",
    RejectCode.PRICE_OUT_OF_BAND: "the price is outside today's price band around the reference price",
    RejectCode.PRICE_OFF_TICK: "the price is not a whole number of ticks of the instrument's tick size",
    RejectCode.PRICE_NOT_POSITIVE: "the price must be a positive number of ticks",
    RejectCode.QUANTITY_BELOW_MIN: "the quantity is below the instrument's minimum lots per order",
    RejectCode.QUANTITY_ABOVE_MAX: "the quantity is above the instrument's maximum lots per order",
    RejectCode.BAD_SIDE: "side must be buy or sell",
    RejectCode.BAD_TIME_IN_FORCE: "time in force must be GTC, DAY, IOC or FOK",
    RejectCode.BAD_ORDER_TYPE: "order type must be limit or market",
    RejectCode.BAD_STP_MODE: "unknown self-trade prevention mode",
    RejectCode.BAD_CLIENT_ORDER_ID: "the client order id must be 1 to 36 printable characters",
    RejectCode.MARKET_ORDER_NEEDS_IOC_FOK: "a market order must be IOC or FOK",
    RejectCode.POST_ONLY_NEEDS_LIMIT: "post-only orders must be GTC or DAY limit orders",
    RejectCode.POST_ONLY_WOULD_CROSS: (
        "the post-only order would trade on entry; move its price away from the opposite side"
    ),
    RejectCode.FOK_NOT_FILLABLE: "the fill-or-kill order cannot be filled in full at its limit",
    RejectCode.UNKNOWN_ORDER: "no open order with this id; it may be filled, cancelled or never accepted",
    RejectCode.NOT_YOUR_ORDER: "the order belongs to another account",
    RejectCode.TOO_MANY_ORDERS: "the account has reached its limit of open orders; cancel some first",
    RejectCode.TOO_MANY_LEVELS: "the book has reached its limit of price levels on this side",
    RejectCode.TOO_MANY_INSTRUMENTS: "the exchange has reached its limit of listed instruments",
    RejectCode.INSUFFICIENT_FUNDS: ("available funds do not cover the margin and fees; deposit or reduce the order"),
    RejectCode.INSUFFICIENT_RECEIPTS: "unencumbered warehouse receipts do not cover the quantity",
    RejectCode.UNKNOWN_RECEIPT: "you hold no warehouse receipt with this number; name receipts you hold",
    RejectCode.RECEIPT_NOT_ACTIVE: (
        "the named receipt is not active (still to be confirmed, locked, pledged, frozen, loading out or ended)"
    ),
    RejectCode.RECEIPT_NOT_DELIVERABLE: (
        "the named receipt is not for this instrument's goods, or not in a warehouse designated for it"
    ),
    RejectCode.RECEIPTS_IN_TWO_WAREHOUSES: "the receipts a sell order names must all be in one warehouse",
    RejectCode.RECEIPT_REPEATED: "a receipt is named twice; name each receipt once",
    RejectCode.TOO_MANY_RECEIPTS: "a sell order may name at most 100 receipts; merge receipts first",
    RejectCode.RECEIPTS_ON_BUY: "only a sell order names warehouse receipts; send the buy order without them",
}


def message_for(code: int, detail: str = "") -> str:
    """The message for `code`, with an optional detail appended."""
    text = MESSAGES[RejectCode(code)]
    return f"{text} ({detail})" if detail else text


class Rejected(Exception):
    """Raised at the edges (parsing, conversion) for input the core would refuse."""

    def __init__(self, code: RejectCode, detail: str = "") -> None:
        super().__init__(message_for(code, detail))
        self.code = code
        self.detail = detail
