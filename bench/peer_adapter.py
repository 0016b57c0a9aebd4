"""bulkex's adapter for ../shared/peerbench: drives the real matching core.

Every workload command becomes a real core command (NewOrder, CancelOrder,
AmendOrder) applied through ``MatchingEngine.apply``, the entry point the
sequencer uses, with validation and every event built. Trades and traded
lots are counted from the TRADE events the core emits.
"""

from __future__ import annotations

import itertools
from typing import Any

from matching import (
    CONTINUOUS,
    GTC,
    IOC,
    LIMIT,
    STP_NONE,
    TRADE,
    AmendOrder,
    CancelOrder,
    Instrument,
    Limits,
    ListInstrument,
    MatchingEngine,
    NewOrder,
    SetTradingState,
)

NOTES = (
    "bulkex matching core through MatchingEngine.apply (validation, client order id dedup, events); "
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
    closures so the adapter adds as little as possible around ``apply``."""

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
        apply = core.apply
        next_seq = itertools.count(3).__next__
        seen = [0]  # trade events counted so far

        def count() -> None:
            for event in out:
                if event[0] == TRADE:
                    self.trades += 1
                    self.traded += event[5]

        def limit(c: tuple[Any, ...]) -> None:
            _, wid, account, side, price, qty, tif = c
            seq = next_seq()
            apply(
                NewOrder(
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
            if seen[0] != core.trade_count:  # scan only when trade events were emitted
                count()
                seen[0] = core.trade_count
            out.clear()

        def cancel(c: tuple[Any, ...]) -> None:
            order_id = ids.get(c[1], 0)
            order = orders.get(order_id)
            apply(CancelOrder(order.account if order else "", order_id), next_seq(), out)
            out.clear()  # a cancel never trades

        def amend(c: tuple[Any, ...]) -> None:
            _, wid, price, open_lots = c
            order_id = ids.get(wid, 0)
            order = orders.get(order_id)
            if order is None:
                apply(AmendOrder("", order_id, price, open_lots), next_seq(), out)
            else:
                total = order.filled_lots + order.cancelled_lots + open_lots
                apply(AmendOrder(order.account, order_id, price, total), next_seq(), out)
            if seen[0] != core.trade_count:
                count()
                seen[0] = core.trade_count
            out.clear()

        self.limit = limit
        self.cancel = cancel
        self.amend = amend
