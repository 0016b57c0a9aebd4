"""The trades table's reads against brute force, on SQLite and PostgreSQL: a member's fills (either
side, after a seq, one instrument or all, a page at a time) and the index migration 0002 gives
the trades table, also on a database created before it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import inspect, text

from api._queries import Queries
from exchange import upgrade
from exchange._db import make_engine

ACCOUNTS = ["A", "B", "C", "D"]
SYMBOLS = ["RB", "TC"]
SEED = 20261207


def _trades(seed: int, count: int) -> list[dict[str, Any]]:
    """Trades in seq order, several to a seq; about one in ten has the same member on both sides (an
    auction uncross does not prevent self-trades)."""
    rng = random.Random(seed)
    rows = []
    seq = 1
    for trade_id in range(1, count + 1):
        seq += rng.choice((0, 0, 1, 5))
        buyer = rng.choice(ACCOUNTS)
        seller = buyer if rng.random() < 0.1 else rng.choice(ACCOUNTS)
        rows.append({
            "trade_id": trade_id, "seq": seq, "ts_ns": seq * 1000, "instrument": rng.choice(SYMBOLS),
            "price_ticks": rng.randint(1, 9), "quantity_lots": rng.randint(1, 5),
            "buy_order_id": 10 * trade_id, "buy_account": buyer, "sell_order_id": 10 * trade_id + 1,
            "sell_account": seller, "aggressor": rng.choice((-1, 0, 1)),
        })  # fmt: skip
    return rows


def _expected(
    rows: list[dict[str, Any]], account: str, instrument: str | None, since_seq: int, limit: int
) -> list[Any]:
    """What `fills` must answer, worked out row by row: (trade id, seq, side, order id), a fill for
    each side the member is on, of the longest run of whole commands (trades of one seq) after
    `since_seq` with at most `limit` trades, or of the first command alone when it has more."""
    picked = [
        r for r in rows
        if account in (r["buy_account"], r["sell_account"]) and r["seq"] > since_seq
        and instrument in (None, r["instrument"])
    ]  # fmt: skip
    commands: list[list[dict[str, Any]]] = []
    for r in picked:
        if commands and commands[-1][0]["seq"] == r["seq"]:
            commands[-1].append(r)
        else:
            commands.append([r])
    page: list[dict[str, Any]] = []
    for command in commands:
        if page and len(page) + len(command) > limit:
            break
        page.extend(command)
        if len(page) >= limit:
            break
    out = []
    for r in page:
        if r["buy_account"] == account:
            out.append((r["trade_id"], r["seq"], "buy", r["buy_order_id"]))
        if r["sell_account"] == account:
            out.append((r["trade_id"], r["seq"], "sell", r["sell_order_id"]))
    return out


def test_fills_equal_brute_force(database_url: str) -> None:
    upgrade(database_url)
    rows = _trades(SEED, 600)
    engine = make_engine(database_url)
    columns = ", ".join(rows[0])
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO trades ({columns}) VALUES ({', '.join(':' + c for c in rows[0])})"), rows)
    engine.dispose()
    queries = Queries(database_url)
    rng = random.Random(SEED + 1)
    checked = 0
    oversized = 0  # pages of one command with more trades than the limit
    try:
        for account in [*ACCOUNTS, "NOBODY"]:
            for instrument in (None, *SYMBOLS):
                for _ in range(6):
                    since_seq = rng.choice((0, rng.randint(0, rows[-1]["seq"] + 1)))
                    limit = rng.choice((1, 3, 50, 1000))
                    got = queries.fills(lambda _s, ticks: str(ticks), account, instrument, since_seq, limit)
                    want = _expected(rows, account, instrument, since_seq, limit)
                    assert [(f["trade_id"], f["seq"], f["side"], f["order_id"]) for f in got] == want, (
                        account, instrument, since_seq, limit, f"seed {SEED}",
                    )  # fmt: skip
                    checked += len(want)
            # paging by the last fill's seq walks every fill once, in order, whatever the page size
            for page_limit in (1, 2, 25):
                walked: list[Any] = []
                since_seq = 0
                while page := queries.fills(lambda _s, ticks: str(ticks), account, None, since_seq, page_limit):
                    trades = len({f["trade_id"] for f in page})
                    oversized += trades > page_limit
                    walked.extend((f["trade_id"], f["side"]) for f in page)
                    since_seq = page[-1]["seq"]
                everything = _expected(rows, account, None, 0, len(rows))
                assert walked == [(t, side) for t, _seq, side, _order in everything], (account, page_limit)
    finally:
        queries.close()
    assert checked > 1000, checked
    assert oversized > 10, oversized


@pytest.mark.parametrize("start", ["new", "before 0002"])
def test_the_trades_indexes(database_url: str, start: str) -> None:
    """A new database and one made before migration 0002 end with the same indexes on trades."""
    if start == "before 0002":
        upgrade(database_url, "warehouse_0001")
        engine = make_engine(database_url)
        assert {ix["name"] for ix in inspect(engine).get_indexes("trades")} == {"ix_trades_instrument"}
        engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("trades")}
    finally:
        engine.dispose()
    assert indexes == {"ix_trades_instrument_trade": ["instrument", "trade_id"]}
