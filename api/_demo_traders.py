"""Simulated market makers and takers for ``bulkex serve --demo``: real
clients over the socket, like any trader's program.

Makers keep a few resting quotes on both sides of each instrument, a few
ticks around the last trade (the reference price before the first), and
replace their oldest quote as they add new ones; takers now and then send an
IOC order that crosses the spread. The whole crowd sends at most
`rate_per_s` requests per second (a token per request, spent in turn), so a
demo server stays light; refusals (funds, bands, an order that traded away
before its cancel) are counted and ignored, a lost connection is retried
after a second. ``bulkex serve --demo --no-simulate`` turns them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from api._client import Client, RequestError

__all__ = ["MAX_QUOTES_PER_INSTRUMENT", "SimulatedTraders", "TraderKey"]

log = logging.getLogger("bulkex.demo")

MAX_QUOTES_PER_INSTRUMENT = 6
"""Resting quotes a maker keeps per instrument; a new one beyond it replaces (cancels) the oldest."""
RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class TraderKey:
    account: str
    key_id: str
    secret: str


@dataclass
class _Market:
    symbol: str
    tick: Decimal
    low: Decimal
    high: Decimal
    last: Decimal


@dataclass
class SimulatedTraders:
    """Makers and takers trading through `url` at no more than `rate_per_s` requests per second."""

    url: str
    makers: list[TraderKey]
    takers: list[TraderKey]
    rate_per_s: float = 5.0
    seed: int | None = None
    sent: int = 0
    refused: int = 0
    trades: int = 0
    _quotes: dict[tuple[str, str], deque[int]] = field(default_factory=dict)

    async def run(self) -> None:
        """Trade until cancelled."""
        assert self.rate_per_s > 0, self.rate_per_s
        rnd = random.Random(self.seed)
        clients = {k.account: Client(self.url, k.key_id, k.secret) for k in (*self.makers, *self.takers)}
        try:
            markets = await self._connect(clients)
            turn = 0
            while True:
                await asyncio.sleep(1 / self.rate_per_s)
                turn += 1
                market = markets[rnd.randrange(len(markets))]
                taking = self.takers and rnd.random() < 0.25
                key = rnd.choice(self.takers if taking else self.makers)
                client = clients[key.account]
                try:
                    if taking:
                        await self._take(client, market, rnd)
                    else:
                        await self._quote(client, key.account, market, rnd)
                except RequestError:
                    self.refused += 1
                except (ConnectionError, OSError):
                    await asyncio.sleep(RETRY_S)
                    with contextlib.suppress(ConnectionError, OSError, RequestError):
                        await client.reconnect()
                if turn % 500 == 0:
                    log.info("simulated traders: %d requests, %d trades, %d refused", self.sent, self.trades,
                             self.refused)  # fmt: skip
        finally:
            for client in clients.values():
                with contextlib.suppress(Exception):
                    await client.close()

    async def _connect(self, clients: dict[str, Client]) -> list[_Market]:
        for client in clients.values():
            await client.connect()
        first = next(iter(clients.values()))
        listed = (await first.request("instruments"))["instruments"]
        markets = [
            _Market(i["symbol"], Decimal(i["tick"]), Decimal(i["band_low"]), Decimal(i["band_high"]),
                    Decimal(i["reference_price"]))
            for i in listed
            if i["state"] == "continuous"
        ]  # fmt: skip
        assert markets, "no instrument is open for continuous trading"
        return markets

    def _price(self, market: _Market, ticks_away: int) -> str:
        price = market.last + market.tick * ticks_away
        price = min(max(price, market.low), market.high)
        return f"{price:.2f}"

    async def _quote(self, client: Client, account: str, market: _Market, rnd: random.Random) -> None:
        side = rnd.choice(("buy", "sell"))
        away = rnd.randint(1, 6)
        price = self._price(market, -away if side == "buy" else away)
        quotes = self._quotes.setdefault((account, market.symbol), deque())
        if len(quotes) >= MAX_QUOTES_PER_INSTRUMENT:
            order_id = quotes.popleft()
            self.sent += 1
            with contextlib.suppress(RequestError):  # it may have traded away meanwhile
                await client.cancel_order(order_id)
        self.sent += 1
        answer = await client.place_order(market.symbol, side, price, rnd.randint(1, 5))
        self._note(answer, market)
        if answer["open_lots"]:
            quotes.append(answer["order_id"])

    async def _take(self, client: Client, market: _Market, rnd: random.Random) -> None:
        side = rnd.choice(("buy", "sell"))
        price = self._price(market, 4 if side == "buy" else -4)
        self.sent += 1
        answer = await client.place_order(market.symbol, side, price, rnd.randint(1, 3), time_in_force="ioc")
        self._note(answer, market)

    def _note(self, answer: dict[str, Any], market: _Market) -> None:
        fills = answer["fills"]
        if fills:
            self.trades += len(fills)
            market.last = Decimal(fills[-1]["price"])
