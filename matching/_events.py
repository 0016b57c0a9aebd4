"""Events of the matching core.

Events are plain tuples (building one costs a fraction of an object), the
first item a kind code, the second the sequence number of the command that
caused it. Their layouts, item by item:

    ACCEPTED   (1, seq, order_id, account, instrument, client_order_id, side,
                price_ticks, quantity_lots, time_in_force)
    REJECTED   (2, seq, account, reference, code, detail)
                reference: the client order id of a new order, else the order id
                as text, else the instrument symbol
    TRADE      (3, seq, trade_id, instrument, price_ticks, quantity_lots,
                buy_order_id, buy_account, buy_open_lots,
                sell_order_id, sell_account, sell_open_lots, aggressor)
                *_open_lots: what is left open of that order after the trade;
                aggressor: BUY or SELL, or -1 for an auction uncross
    CANCELLED  (4, seq, order_id, account, instrument, side, price_ticks,
                cancelled_lots, open_lots, reason)
                open_lots: what stays open (non-zero only for an STP decrement)
    AMENDED    (5, seq, order_id, account, instrument, price_ticks,
                quantity_lots, open_lots, priority_kept)
    BOOK       (6, seq, instrument, side, price_ticks, level_lots)
                level_lots: the level's new total, 0 when the level is gone
    INDICATIVE (7, seq, instrument, price_ticks, volume_lots, imbalance_lots)
                price 0 and volume 0 when nothing would trade; imbalance is
                buy volume less sell volume at that price
    STATE      (8, seq, instrument, state, reference_price_ticks)
    LISTED     (9, seq, instrument)
    DUPLICATE  (10, seq, account, client_order_id, first_seq, first_code)
                a repeated client order id: first_seq is the order id of the
                first command, first_code 0 if it was accepted, else its
                reject code; nothing is applied
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "ACCEPTED",
    "AMENDED",
    "BOOK",
    "CANCELLED",
    "DUPLICATE",
    "EVENT_FIELDS",
    "EVENT_NAMES",
    "INDICATIVE",
    "LISTED",
    "REJECTED",
    "STATE",
    "TRADE",
    "CancelReason",
    "Event",
    "event_to_dict",
]

Event = tuple[Any, ...]

ACCEPTED: Final = 1
REJECTED: Final = 2
TRADE: Final = 3
CANCELLED: Final = 4
AMENDED: Final = 5
BOOK: Final = 6
INDICATIVE: Final = 7
STATE: Final = 8
LISTED: Final = 9
DUPLICATE: Final = 10

EVENT_FIELDS: dict[int, tuple[str, ...]] = {
    ACCEPTED: (
        "kind",
        "seq",
        "order_id",
        "account",
        "instrument",
        "client_order_id",
        "side",
        "price_ticks",
        "quantity_lots",
        "time_in_force",
    ),
    REJECTED: ("kind", "seq", "account", "reference", "code", "detail"),
    TRADE: (
        "kind",
        "seq",
        "trade_id",
        "instrument",
        "price_ticks",
        "quantity_lots",
        "buy_order_id",
        "buy_account",
        "buy_open_lots",
        "sell_order_id",
        "sell_account",
        "sell_open_lots",
        "aggressor",
    ),
    CANCELLED: (
        "kind",
        "seq",
        "order_id",
        "account",
        "instrument",
        "side",
        "price_ticks",
        "cancelled_lots",
        "open_lots",
        "reason",
    ),
    AMENDED: (
        "kind",
        "seq",
        "order_id",
        "account",
        "instrument",
        "price_ticks",
        "quantity_lots",
        "open_lots",
        "priority_kept",
    ),
    BOOK: ("kind", "seq", "instrument", "side", "price_ticks", "level_lots"),
    INDICATIVE: ("kind", "seq", "instrument", "price_ticks", "volume_lots", "imbalance_lots"),
    STATE: ("kind", "seq", "instrument", "state", "reference_price_ticks"),
    LISTED: ("kind", "seq", "instrument"),
    DUPLICATE: ("kind", "seq", "account", "client_order_id", "first_seq", "first_code"),
}

EVENT_NAMES: dict[int, str] = {
    ACCEPTED: "accepted",
    REJECTED: "rejected",
    TRADE: "trade",
    CANCELLED: "cancelled",
    AMENDED: "amended",
    BOOK: "book",
    INDICATIVE: "indicative",
    STATE: "state",
    LISTED: "listed",
    DUPLICATE: "duplicate",
}


class CancelReason:
    """Why an order (or part of one) was cancelled."""

    REQUESTED: Final = 0
    IOC_REMAINDER: Final = 1
    SELF_TRADE: Final = 2
    EXPIRED: Final = 3
    MASS_CANCEL: Final = 4
    FILL_LIMIT: Final = 5
    AMENDED_BELOW_FILLED: Final = 6
    LEVEL_LIMIT: Final = 7
    NAMES: Final = (
        "requested",
        "ioc_remainder",
        "self_trade",
        "expired",
        "mass_cancel",
        "fill_limit",
        "amended_below_filled",
        "level_limit",
    )


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event with its items named (kind as its name), for the edges."""
    fields = EVENT_FIELDS[event[0]]
    assert len(fields) == len(event), event
    out = dict(zip(fields, event, strict=False))
    out["kind"] = EVENT_NAMES[event[0]]
    return out
