"""Projections: read-model rows derived from a batch's events.

``BatchProjection`` folds one batch's events into rows for the orders and
trades tables: orders accepted in the batch become inserts (their whole life
so far is in the batch); orders accepted earlier become updates carrying
deltas (lots filled and cancelled in this batch) and the latest open lots,
price and size, so the writer never reads a projection back.

``OrdersModel`` is the same read model kept whole in memory: tests and the
rebuild check compare it with the tables after a fresh replay.

Order status, from the row as it stands:
open_lots > 0: ``partially_filled`` if any lot filled, else ``open``;
open_lots = 0: ``cancelled`` if any lot was cancelled, else ``filled``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from matching import ACCEPTED, AMENDED, CANCELLED, TRADE, Event

__all__ = ["ORDER_COLUMNS", "TRADE_COLUMNS", "BatchProjection", "OrdersModel", "order_status"]

ORDER_COLUMNS = (
    "order_id", "account", "instrument", "client_order_id", "side", "time_in_force", "price_ticks",
    "quantity_lots", "filled_lots", "open_lots", "cancelled_lots", "status", "last_seq",
)  # fmt: skip
TRADE_COLUMNS = (
    "trade_id", "seq", "ts_ns", "instrument", "price_ticks", "quantity_lots", "buy_order_id", "buy_account",
    "sell_order_id", "sell_account", "aggressor",
)  # fmt: skip

_PROJECTED = frozenset((ACCEPTED, TRADE, CANCELLED, AMENDED))
"""The event kinds the projections are made of; every other event is skipped."""

# Positions in an order row (ORDER_COLUMNS order).
_PRICE, _QTY, _FILLED, _OPEN, _CANCELLED, _STATUS, _LAST = 6, 7, 8, 9, 10, 11, 12
# Positions in an update: [filled_delta, cancelled_delta, open_lots, price_ticks|None, quantity_lots|None, last_seq]
_U_FILLED, _U_CANCELLED, _U_OPEN, _U_PRICE, _U_QTY, _U_LAST = 0, 1, 2, 3, 4, 5


def order_status(filled_lots: int, open_lots: int, cancelled_lots: int) -> str:
    if open_lots > 0:
        return "partially_filled" if filled_lots > 0 else "open"
    return "cancelled" if cancelled_lots > 0 else "filled"


class BatchProjection:
    """Rows of one batch: new orders, updates of earlier orders, trades."""

    __slots__ = ("new_orders", "updates", "trades")

    def __init__(self) -> None:
        self.new_orders: dict[int, list[Any]] = {}
        self.updates: dict[int, list[Any]] = {}
        self.trades: list[tuple[Any, ...]] = []

    def _fill(self, order_id: int, qty: int, open_lots: int, seq: int) -> None:
        row = self.new_orders.get(order_id)
        if row is not None:
            row[_FILLED] += qty
            row[_OPEN] = open_lots
            row[_LAST] = seq
            return
        update = self.updates.get(order_id)
        if update is None:
            self.updates[order_id] = [qty, 0, open_lots, None, None, seq]
        else:
            update[_U_FILLED] += qty
            update[_U_OPEN] = open_lots
            update[_U_LAST] = seq

    def add(self, events: list[Event], ts_ns: int) -> None:
        """Fold one command's events in."""
        self.add_all((events,), ts_ns)

    def add_all(
        self,
        event_lists: Iterable[list[Event]],
        ts_ns: int,
        also: frozenset[int] = frozenset(),
        found: list[Event] | None = None,
    ) -> None:
        """Fold the events of several commands in, in order (one call per batch: the events
        projections ignore, most of them, cost one set lookup each). Events of the kinds in
        `also` are appended to `found` on the way (another read model's, in the same pass)."""
        assert not also & _PROJECTED, "a projected kind cannot be handed on"
        wanted = _PROJECTED | also if also else _PROJECTED
        hand_on = found if found is not None else []
        new_orders = self.new_orders
        updates = self.updates
        trades = self.trades
        fill = self._fill
        for events in event_lists:
            for e in events:
                kind = e[0]
                if kind not in wanted:
                    continue
                if kind == TRADE:
                    _, seq, trade_id, instrument, price, qty, buy_id, buy_account, buy_open, sell_id, sell_account, \
                        sell_open, aggressor = e  # fmt: skip
                    trades.append((trade_id, seq, ts_ns, instrument, price, qty, buy_id, buy_account, sell_id,
                                   sell_account, aggressor))  # fmt: skip
                    fill(buy_id, qty, buy_open, seq)
                    fill(sell_id, qty, sell_open, seq)
                elif kind == ACCEPTED:
                    _, seq, order_id, account, instrument, clid, side, price, qty, tif = e
                    new_orders[order_id] = [order_id, account, instrument, clid, side, tif, price, qty, 0, qty, 0,
                                            "", seq]  # fmt: skip
                elif kind == CANCELLED:
                    seq, order_id, cancelled, open_lots = e[1], e[2], e[7], e[8]
                    row = new_orders.get(order_id)
                    if row is not None:
                        row[_CANCELLED] += cancelled
                        row[_OPEN] = open_lots
                        row[_LAST] = seq
                        continue
                    update = updates.get(order_id)
                    if update is None:
                        updates[order_id] = [0, cancelled, open_lots, None, None, seq]
                    else:
                        update[_U_CANCELLED] += cancelled
                        update[_U_OPEN] = open_lots
                        update[_U_LAST] = seq
                elif kind == AMENDED:
                    seq, order_id, price, qty, open_lots = e[1], e[2], e[5], e[6], e[7]
                    row = new_orders.get(order_id)
                    if row is not None:
                        row[_PRICE] = price
                        row[_QTY] = qty
                        row[_OPEN] = open_lots
                        row[_LAST] = seq
                        continue
                    update = updates.get(order_id)
                    if update is None:
                        updates[order_id] = [0, 0, open_lots, price, qty, seq]
                    else:
                        update[_U_OPEN] = open_lots
                        update[_U_PRICE] = price
                        update[_U_QTY] = qty
                        update[_U_LAST] = seq
                else:  # a kind in `also`
                    hand_on.append(e)

    def order_inserts(self) -> list[tuple[Any, ...]]:
        """One row per order accepted in the batch, as it stands at the batch's end (ORDER_COLUMNS)."""
        out = []
        for row in self.new_orders.values():
            row[_STATUS] = order_status(row[_FILLED], row[_OPEN], row[_CANCELLED])
            out.append(tuple(row))
        return out

    def order_updates(self) -> list[tuple[Any, ...]]:
        """One row per earlier order the batch changed: (order_id, filled_delta, cancelled_delta,
        open_lots, price_ticks|None, quantity_lots|None, last_seq)."""
        return [(order_id, *u) for order_id, u in self.updates.items()]


class OrdersModel:
    """The orders and trades read model, whole, in memory (the reference the
    tables are checked against)."""

    def __init__(self) -> None:
        self.orders: dict[int, tuple[Any, ...]] = {}
        self.trades: dict[int, tuple[Any, ...]] = {}

    def add(self, events: list[Event], ts_ns: int) -> None:
        batch = BatchProjection()
        batch.add(events, ts_ns)
        for row in batch.order_inserts():
            assert row[0] not in self.orders, row
            self.orders[row[0]] = row
        for order_id, d_filled, d_cancelled, open_lots, price, qty, seq in batch.order_updates():
            old = list(self.orders[order_id])
            old[_FILLED] += d_filled
            old[_CANCELLED] += d_cancelled
            old[_OPEN] = open_lots
            if price is not None:
                old[_PRICE] = price
                old[_QTY] = qty
            old[_LAST] = seq
            old[_STATUS] = order_status(old[_FILLED], old[_OPEN], old[_CANCELLED])
            self.orders[order_id] = tuple(old)
        for trade in batch.trades:
            self.trades[trade[0]] = trade
