"""Public market data across a restart and a new day: the ticker's day statistics
and the trades snapshot come back from the trades table as they were before
the restart, and the statistics roll over at the exchange's midnight (China
Standard Time) on a trade, a state change or a ticker built, whichever
comes first."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from api._client import Client
from api._harness import running_exchange
from api._limits import TRADES_KEPT
from api._marketdata import InstrumentData, MarketData
from api._queries import Queries
from exchange import Ack, Sequencer
from matching import BUY, CONTINUOUS, STATE, TRADE
from tests.aio import run, wait_for
from tests.test_api_protocol import _instrument

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"
HC = "HC-Q235B-5.75"
CST = timezone(timedelta(hours=8))


async def trade_a_day(ex: Any) -> None:
    """More than TRADES_KEPT trades on RB, a few at different prices on HC."""
    maker = Client(ex.url, *ex.trader_key("MAKER"))
    taker = Client(ex.url, *ex.trader_key("TAKER"))
    async with maker, taker:
        await maker.place_order(RB, "sell", "3500.00", TRADES_KEPT + 10)
        await asyncio.gather(*(taker.place_order(RB, "buy", "3500.00", 1) for _ in range(TRADES_KEPT + 5)))
        for price in ("3810.00", "3790.00", "3805.00"):
            await maker.place_order(HC, "sell", price, 3)
            await taker.place_order(HC, "buy", price, 2)
        await maker.place_order(RB, "sell", "3505.00", 4)  # the books stay non-empty
        await taker.place_order(RB, "buy", "3495.00", 4)


async def public_snapshots(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    """What a new subscriber gets first on ticker and trades of RB and HC (seq left out: it counts
    the messages of one server run)."""
    got: dict[tuple[str, str], dict[str, Any]] = {}

    def keep(message: dict[str, Any]) -> None:
        if message.get("type") in ("ticker", "trades"):
            got.setdefault((message["type"], message["instrument"]), message)

    async with Client(url, on_message=keep) as client:
        for symbol in (RB, HC):
            for channel in ("ticker", "trades"):
                await client.subscribe(channel, symbol)
        await wait_for(lambda: len(got) == 4)
    for message in got.values():
        del message["seq"]
    return got


def test_market_data_loaded_from_the_database_equals_the_live_one(database_url: str) -> None:
    """A real server trades; the state it left behind (the recovered core and the trades table)
    gives a new MarketData the same ticker and trades snapshot a subscriber saw live."""
    live: dict[tuple[str, str], dict[str, Any]] = {}

    async def main() -> None:
        async with running_exchange(database_url) as ex:
            await trade_a_day(ex)
            live.update(await public_snapshots(ex.url))

    run(main)
    ticker = live[("ticker", RB)]
    assert ticker["trade_count"] == TRADES_KEPT + 5
    assert len(live[("trades", RB)]["trades"]) == TRADES_KEPT
    assert (live[("ticker", HC)]["open"], live[("ticker", HC)]["high"], live[("ticker", HC)]["low"],
            live[("ticker", HC)]["last"]) == ("3810.00", "3810.00", "3790.00", "3805.00")  # fmt: skip
    now_ns = time.time_ns()
    queries = Queries(database_url)
    try:
        with Sequencer(database_url) as sequencer:
            market = MarketData(clock_ns=lambda: now_ns)
            market.load(sequencer.core, queries.trade_history(sequencer.core.matching.books, now_ns))
    finally:
        queries.close()
    for (channel, symbol), seen in live.items():
        reloaded = orjson.loads(market.snapshot(channel, symbol))
        del reloaded["seq"]
        assert reloaded == seen, (channel, symbol)


def test_a_restarted_server_publishes_the_same_ticker_and_trades(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    before: dict[tuple[str, str], dict[str, Any]] = {}
    after: dict[tuple[str, str], dict[str, Any]] = {}

    async def main() -> None:
        async with running_exchange(url) as ex:
            await trade_a_day(ex)
            before.update(await public_snapshots(ex.url))
        async with running_exchange(url, open_markets=False) as ex:
            after.update(await public_snapshots(ex.url))

    run(main)
    assert before[("ticker", RB)]["trade_count"] == TRADES_KEPT + 5
    assert after == before


def _ns(day: int, hour: int, minute: int = 0, second: int = 0, ns: int = 0) -> int:
    """A time on 2026-03-<day> in China Standard Time, as ns since the epoch."""
    return int(datetime(2026, 3, day, hour, minute, second, tzinfo=CST).timestamp()) * 1_000_000_000 + ns


def _trade(seq: int, trade_id: int, price_ticks: int, lots: int) -> tuple[Any, ...]:
    return (TRADE, seq, trade_id, "RB", price_ticks, lots, 1, "A", 0, 2, "B", 0, BUY)


class Sink:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def push(self, data: bytes) -> None:
        self.got.append(orjson.loads(data))


def test_the_day_rolls_over_at_midnight_china_standard_time() -> None:
    now = [_ns(2, 14)]
    market = MarketData(clock_ns=lambda: now[0])
    market.instruments["RB"] = InstrumentData(_instrument())
    sink = Sink()
    market.subscribe("ticker", "RB", sink)
    market.apply(None, Ack(1, _ns(2, 14), [_trade(1, 1, 3510, 2)]))
    market.apply(None, Ack(2, _ns(2, 23, 59, 59, 999_999_999), [_trade(2, 2, 3490, 1)]))  # 15:59:59.999... UTC
    day_one = sink.got[-1]
    assert (day_one["open"], day_one["high"], day_one["low"], day_one["last"]) == (
        "3510.00", "3510.00", "3490.00", "3490.00",
    )  # fmt: skip
    assert (day_one["volume_lots"], day_one["trade_count"], day_one["turnover"]) == (3, 2, "105100.00")

    # the morning's state change publishes the new day's (empty) figures, not yesterday's
    market.apply(None, Ack(3, _ns(3, 9), [(STATE, 3, "RB", CONTINUOUS, 3500)]))
    morning = sink.got[-1]
    assert (morning["open"], morning["last"], morning["volume_lots"], morning["trade_count"]) == (None, None, 0, 0)
    assert morning["turnover"] == "0.00"

    # the day's first trade opens it
    market.apply(None, Ack(4, _ns(3, 9, 1), [_trade(4, 3, 3520, 4)]))
    first = sink.got[-1]
    assert (first["open"], first["high"], first["low"], first["last"], first["volume_lots"]) == (
        "3520.00", "3520.00", "3520.00", "3520.00", 4,
    )  # fmt: skip
    assert first["trade_count"] == 1
    now[0] = _ns(3, 23, 59, 59)
    assert orjson.loads(market.snapshot("ticker", "RB"))["trade_count"] == 1

    # a ticker built after midnight, before any trade or state change, starts the new day
    now[0] = _ns(4, 0)
    snapshot = orjson.loads(market.snapshot("ticker", "RB"))
    assert (snapshot["open"], snapshot["last"], snapshot["volume_lots"], snapshot["trade_count"]) == (None, None, 0, 0)

    # a clock behind the day counted never rolls it back
    now[0] = _ns(3, 23)
    assert orjson.loads(market.snapshot("ticker", "RB"))["trade_count"] == 0
