"""Read queries on the projections (orders, trades), run off the event loop.

The projections are committed before a command is acknowledged, so a query
sent after an answer sees that answer's effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, and_, column, desc, or_, select, table

from exchange import make_engine

__all__ = ["Queries"]

_orders = table(
    "orders",
    column("order_id"), column("account"), column("instrument"), column("client_order_id"), column("side"),
    column("time_in_force"), column("price_ticks"), column("quantity_lots"), column("filled_lots"),
    column("open_lots"), column("cancelled_lots"), column("status"), column("last_seq"),
)  # fmt: skip
_trades = table(
    "trades",
    column("trade_id"), column("seq"), column("ts_ns"), column("instrument"), column("price_ticks"),
    column("quantity_lots"), column("buy_order_id"), column("buy_account"), column("sell_order_id"),
    column("sell_account"), column("aggressor"),
)  # fmt: skip
_SIDES = ("buy", "sell")
_TIFS = ("gtc", "day", "ioc", "fok")

Price = Callable[[str, int], str]


class Queries:
    def __init__(self, database_url: str) -> None:
        self.engine: Engine = make_engine(database_url)

    def close(self) -> None:
        self.engine.dispose()

    def orders(
        self, price: Price, account: str, status: str, instrument: str | None, before_order_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        o = _orders.c
        conditions = [o.account == account]
        if status == "open":
            conditions.append(o.open_lots > 0)
        if instrument is not None:
            conditions.append(o.instrument == instrument)
        if before_order_id is not None:
            conditions.append(o.order_id < before_order_id)
        query = select(_orders).where(and_(*conditions)).order_by(desc(o.order_id)).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "order_id": r.order_id,
                "instrument": r.instrument,
                "client_order_id": r.client_order_id,
                "side": _SIDES[r.side],
                "time_in_force": _TIFS[r.time_in_force],
                "price": price(r.instrument, r.price_ticks),
                "quantity_lots": r.quantity_lots,
                "filled_lots": r.filled_lots,
                "open_lots": r.open_lots,
                "cancelled_lots": r.cancelled_lots,
                "status": r.status,
                "last_seq": r.last_seq,
            }
            for r in rows
        ]

    def fills(
        self, price: Price, account: str, instrument: str | None, since_seq: int, limit: int
    ) -> list[dict[str, Any]]:
        t = _trades.c
        conditions = [or_(t.buy_account == account, t.sell_account == account), t.seq > since_seq]
        if instrument is not None:
            conditions.append(t.instrument == instrument)
        query = select(_trades).where(and_(*conditions)).order_by(t.seq, t.trade_id).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        out: list[dict[str, Any]] = []
        for r in rows:
            sides = []
            if r.buy_account == account:
                sides.append((0, r.buy_order_id))
            if r.sell_account == account:
                sides.append((1, r.sell_order_id))
            for side, order_id in sides:
                liquidity = "auction" if r.aggressor == -1 else ("taker" if r.aggressor == side else "maker")
                out.append(
                    {
                        "trade_id": r.trade_id,
                        "seq": r.seq,
                        "ts_ns": r.ts_ns,
                        "instrument": r.instrument,
                        "price": price(r.instrument, r.price_ticks),
                        "quantity_lots": r.quantity_lots,
                        "side": _SIDES[side],
                        "order_id": order_id,
                        "liquidity": liquidity,
                    }
                )
        return out
