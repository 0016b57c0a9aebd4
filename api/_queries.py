"""Read queries on the projections (orders, trades), run off the event loop.

The projections are committed before a command is acknowledged, so a query
sent after an answer sees that answer's effects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, and_, column, desc, func, or_, select, table

from api._limits import TRADES_KEPT
from api._marketdata import TradeHistory, exchange_day, exchange_day_start_ns
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

    def trade_history(self, symbols: Iterable[str], now_ns: int) -> TradeHistory:
        """The day of `now_ns` and the recent trades, from the trades table (for ``MarketData.load``).

        Cheap whatever the table's size: trade ids grow with the sequencer's time stamps (trades get
        ids in seq order and a batch's stamp never goes back), so the day's first trade is found by a
        binary search on the primary key (a few dozen one-row lookups); the day's totals are one
        aggregate over the ids from there, and each instrument's recent trades one indexed query."""
        day = exchange_day(now_ns)
        t = _trades.c
        totals: dict[str, tuple[int, int, int, int, int, int, int]] = {}
        recent: dict[str, list[tuple[int, int, int, int, int]]] = {}
        with self.engine.connect() as conn:
            first_id = _first_trade_since(conn, exchange_day_start_ns(day))
            if first_id is not None:
                query = (
                    select(
                        t.instrument, func.min(t.trade_id), func.max(t.trade_id), func.min(t.price_ticks),
                        func.max(t.price_ticks), func.sum(t.quantity_lots), func.sum(t.price_ticks * t.quantity_lots),
                        func.count(),
                    )
                    .where(t.trade_id >= first_id)
                    .group_by(t.instrument)
                )  # fmt: skip
                groups = conn.execute(query).all()
                ends = sorted({int(g[1]) for g in groups} | {int(g[2]) for g in groups})
                price_of = {
                    int(r[0]): int(r[1])
                    for r in conn.execute(select(t.trade_id, t.price_ticks).where(t.trade_id.in_(ends)))
                }
                for g in groups:
                    totals[str(g[0])] = (
                        price_of[int(g[1])], int(g[4]), int(g[3]), price_of[int(g[2])], int(g[5]), int(g[6]), int(g[7])
                    )  # fmt: skip
            for symbol in symbols:
                rows = conn.execute(
                    select(t.trade_id, t.ts_ns, t.price_ticks, t.quantity_lots, t.aggressor)
                    .where(t.instrument == symbol)
                    .order_by(t.trade_id.desc())
                    .limit(TRADES_KEPT)
                ).all()
                recent[symbol] = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in reversed(rows)]
        return TradeHistory(day, totals, recent)

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
        """The member's trades after `since_seq`, oldest first, as fills (one for each side the member
        is on): at most `limit` trades, in whole commands, so that the next page is the one after
        the last fill's seq. A page that would end inside a command's trades ends before that
        command instead; one whose first command alone has more trades than `limit` holds that
        command's trades, all of them (a command's trades are bounded: the fills of one order, or
        the member's orders in an auction's uncross).

        No index of its own (each would cost the writer a page a trade): trade ids grow with seq,
        so the first trade after `since_seq` is found by a binary search on the primary key and
        the page is read along it from there, the member's trades picked on the way. A page after a
        recent seq reads little; one from the start of a long history with few trades of the
        member's reads every trade after `since_seq` (about 0.1 s a million trades on SQLite)."""
        with self.engine.connect() as conn:
            first_id = _first_trade_from(conn, _trades.c.seq, since_seq + 1)
            if first_id is None:
                return []
            rows = conn.execute(_fills_query(account, instrument, first_id, None, limit + 1)).all()
            if len(rows) > limit:
                last_seq = rows[limit - 1].seq
                if rows[limit].seq != last_seq:
                    rows = rows[:limit]
                elif rows[0].seq != last_seq:
                    rows = [r for r in rows if r.seq != last_seq]
                else:  # one command's trades fill the page: all of them
                    end_id = _first_trade_from(conn, _trades.c.seq, last_seq + 1)
                    rows = conn.execute(_fills_query(account, instrument, rows[0].trade_id, end_id, None)).all()
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


def _fills_query(account: str, instrument: str | None, from_id: int, before_id: int | None, limit: int | None) -> Any:
    """The member's trades with from_id <= trade id (< before_id), in trade id order (which is seq
    order): a range of the primary key."""
    t = _trades.c
    conditions = [t.trade_id >= from_id, or_(t.buy_account == account, t.sell_account == account)]
    if before_id is not None:
        conditions.append(t.trade_id < before_id)
    if instrument is not None:
        conditions.append(t.instrument == instrument)
    query = select(_trades).where(and_(*conditions)).order_by(t.trade_id)
    return query if limit is None else query.limit(limit)


def _first_trade_since(conn: Connection, since_ns: int) -> int | None:
    """The id of the first trade stamped at or after `since_ns` (None: no such trade)."""
    return _first_trade_from(conn, _trades.c.ts_ns, since_ns)


def _first_trade_from(conn: Connection, key: Any, value: int) -> int | None:
    """The id of the first trade whose `key` (a column that never decreases along the trade ids:
    the stamp, the seq) is at least `value` (None: no such trade). A binary search on the primary
    key: a few dozen one-row lookups whatever the table's size."""
    t = _trades.c
    last = conn.execute(select(t.trade_id, key).order_by(t.trade_id.desc()).limit(1)).first()
    if last is None or int(last[1]) < value:
        return None
    low = int(conn.execute(select(func.min(t.trade_id))).scalar_one())
    high = int(last[0])
    # the smallest v whose first trade at or after v has key >= value (true at `high`)
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(select(t.trade_id, key).where(t.trade_id >= middle).order_by(t.trade_id).limit(1)).first()
        assert row is not None, middle  # `high` itself is a trade id
        if int(row[1]) >= value:
            high = middle
        else:
            low = int(row[0]) + 1
    first = conn.execute(select(t.trade_id).where(t.trade_id >= low).order_by(t.trade_id).limit(1)).first()
    assert first is not None, low
    return int(first[0])
