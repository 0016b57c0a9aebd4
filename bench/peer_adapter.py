"""bulkex's adapter for ../shared/peerbench: drives the real matching core.

Every workload command becomes a real core command (NewOrder, CancelOrder,
AmendOrder) applied through the engine's entry point for its kind
(``MatchingEngine.new_order``, ``cancel``, ``amend``: what ``apply`` routes
it to, and what the exchange core calls for every order), with validation
and every event built. Trades are the engine's trade counter's advance
(one per maker fill). Traded lots of a new order come from its outcome:
the filled lots of the order where it rests, else its size less the
remainder its CANCELLED event names (an IOC or a stopped remainder), else
its whole size (filled in full). An amend's come from its TRADE events.
"""

from __future__ import annotations

import itertools
from typing import Any

from matching import (
    CANCELLED,
    CONTINUOUS,
    GTC,
    IOC,
    LIMIT,
    STP_NONE,
    TRADE,
    Instrument,
    Limits,
    ListInstrument,
    MatchingEngine,
    SetTradingState,
    make_amend_order,
    make_cancel_order,
    make_new_order,
)

NOTES = (
    "bulkex matching core through its entry points new_order/cancel/amend (what apply routes to: validation, "
    "client order id dedup, events); "
    "native amend with new total size = filled + new open lots (same-price size-down keeps priority); "
    "self-trade prevention off (peers have none)"
)

SYMBOL = "PEER"
PEER_INSTRUMENT = Instrument(
    symbol=SYMBOL,
    commodity="steel",
    product="bench",
    grade="bench",
    warehouse_group="bench",
    lot_size_t=1,
    tick_fen=100,
    reference_price_ticks=3500,
    price_band_bps=9999,  # the workload's prices wander 1..7000 ticks
    min_lots=1,
    max_lots=1_000_000,
)
ACCOUNTS = [f"A{i}" for i in range(1001)]


class Engine:
    """Each workload tuple becomes one core command; the handlers are
    closures so the adapter adds as little as possible around the entry points."""

    def __init__(self) -> None:
        core = MatchingEngine(Limits(max_open_orders_per_account=1_000_000, max_levels_per_side=100_000))
        out: list[Any] = []
        core.apply(ListInstrument(PEER_INSTRUMENT), 1, out)
        core.apply(SetTradingState(SYMBOL, CONTINUOUS), 2, out)
        out.clear()
        self.core = core
        self.trades = 0
        self.traded = 0
        ids: dict[int, int] = {}
        orders = core.orders
        new_order = core.new_order
        cancel_order = core.cancel
        amend_order = core.amend
        next_seq = itertools.count(3).__next__
        seen = [core.trade_count]  # the engine's trade counter when trades were last counted

        def limit(c: tuple[Any, ...]) -> None:
            _, wid, account, side, price, qty, tif = c
            seq = next_seq()
            new_order(
                make_new_order(
                    ACCOUNTS[account],
                    SYMBOL,
                    str(wid),
                    side,
                    price,
                    qty,
                    GTC if tif == "GTC" else IOC,
                    LIMIT,
                    False,
                    STP_NONE,
                ),
                seq,
                out,
            )
            ids[wid] = seq
            if len(out) > 1 and out[1][0] == TRADE:  # ACCEPTED, then its trades first
                count = core.trade_count
                self.trades += count - seen[0]
                seen[0] = count
                resting = orders.get(seq)
                if resting is not None:
                    self.traded += resting.filled_lots
                else:
                    last = out[-1]
                    self.traded += qty - last[7] if last[0] == CANCELLED else qty
            out.clear()

        def cancel(c: tuple[Any, ...]) -> None:
            order_id = ids.get(c[1], 0)
            order = orders.get(order_id)
            cancel_order(make_cancel_order(order.account if order else "", order_id), next_seq(), out)
            out.clear()  # a cancel never trades

        def amend(c: tuple[Any, ...]) -> None:
            _, wid, price, open_lots = c
            order_id = ids.get(wid, 0)
            order = orders.get(order_id)
            if order is None:
                amend_order(make_amend_order("", order_id, price, open_lots), next_seq(), out)
            else:
                total = order.filled_lots + order.cancelled_lots + open_lots
                amend_order(make_amend_order(order.account, order_id, price, total), next_seq(), out)
            if core.trade_count != seen[0]:
                count = core.trade_count
                self.trades += count - seen[0]
                seen[0] = count
                self.traded += sum(event[5] for event in out if event[0] == TRADE)
            out.clear()

        self.limit = limit
        self.cancel = cancel
        self.amend = amend
