"""A deliberately simple reference book for the matching tests.

Orders live in one list; every match sorts the crossing opposite orders by
price, then arrival. No heaps, no per-level totals, no fast paths: slow and
obviously right, so the engine can be checked against it step by step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from matching import (
    BUY,
    FOK,
    IOC,
    MARKET,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_DECREMENT,
    STP_NONE,
)


@dataclass
class ModelOrder:
    order_id: int
    account: str
    side: int
    price: int
    open_lots: int
    filled_lots: int
    cancelled_lots: int
    ordered_lots: int
    priority: int
    stp: int
    post_only: bool


class ModelBook:
    def __init__(self, band_low: int, band_high: int, min_lots: int, max_lots: int) -> None:
        self.orders: list[ModelOrder] = []
        self.band_low = band_low
        self.band_high = band_high
        self.min_lots = min_lots
        self.max_lots = max_lots
        self.trades: list[tuple[int, int, int, int]] = []  # (price, lots, buy_id, sell_id)
        self.clids: dict[tuple[str, str], bool] = {}
        self.clock = 0

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def levels(self, side: int) -> list[tuple[int, list[tuple[int, int]]]]:
        """[(price, [(order_id, open_lots), ...]), ...] best first, queue order."""
        mine = [o for o in self.orders if o.side == side]
        prices = sorted({o.price for o in mine}, reverse=side == BUY)
        return [
            (
                p,
                [
                    (o.order_id, o.open_lots)
                    for o in sorted((o for o in mine if o.price == p), key=lambda o: o.priority)
                ],
            )
            for p in prices
        ]

    def _crossing(self, side: int, price: int) -> list[ModelOrder]:
        opp = [o for o in self.orders if o.side != side and (o.price <= price if side == BUY else o.price >= price)]
        return sorted(opp, key=lambda o: ((o.price if side == BUY else -o.price), o.priority))

    def _match(self, taker: ModelOrder) -> bool:
        """Trade the taker; False if self-trade prevention stopped it."""
        for maker in self._crossing(taker.side, taker.price):
            if not taker.open_lots:
                break
            if maker.account == taker.account and taker.stp != STP_NONE:
                if taker.stp == STP_CANCEL_NEWEST:
                    return False
                if taker.stp in (STP_CANCEL_OLDEST, STP_CANCEL_BOTH):
                    maker.cancelled_lots += maker.open_lots
                    maker.open_lots = 0
                    self.orders.remove(maker)
                    if taker.stp == STP_CANCEL_BOTH:
                        return False
                    continue
                assert taker.stp == STP_DECREMENT
                cut = min(taker.open_lots, maker.open_lots)
                taker.open_lots -= cut
                taker.cancelled_lots += cut
                maker.open_lots -= cut
                maker.cancelled_lots += cut
                if not maker.open_lots:
                    self.orders.remove(maker)
                continue
            lots = min(taker.open_lots, maker.open_lots)
            taker.open_lots -= lots
            taker.filled_lots += lots
            maker.open_lots -= lots
            maker.filled_lots += lots
            buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
            self.trades.append((maker.price, lots, buy.order_id, sell.order_id))
            if not maker.open_lots:
                self.orders.remove(maker)
        return True

    def new(
        self,
        order_id: int,
        account: str,
        clid: str,
        side: int,
        price: int,
        qty: int,
        tif: int,
        order_type: int,
        post_only: bool,
        stp: int,
    ) -> str:
        """'duplicate', 'rejected' or 'accepted'."""
        if (account, clid) in self.clids:
            return "duplicate"
        if order_type == MARKET:
            price = self.band_high if side == BUY else self.band_low
        ok = (
            self.min_lots <= qty <= self.max_lots
            and self.band_low <= price <= self.band_high
            and (order_type != MARKET or tif in (IOC, FOK))
            and (not post_only or (order_type != MARKET and tif not in (IOC, FOK)))
        )
        if ok and post_only and self._crossing(side, price):
            ok = False
        taker = ModelOrder(order_id, account, side, price, qty, 0, 0, qty, self._tick(), stp, post_only)
        if ok and tif == FOK:
            trial = copy.deepcopy(self)
            trial_taker = copy.deepcopy(taker)
            trial._match(trial_taker)
            ok = trial_taker.filled_lots == qty
        self.clids[(account, clid)] = ok
        if not ok:
            return "rejected"
        rests = self._match(taker)
        if taker.open_lots and rests and tif not in (IOC, FOK):
            self.orders.append(taker)
        return "accepted"

    def find(self, order_id: int, account: str) -> ModelOrder | None:
        for o in self.orders:
            if o.order_id == order_id and o.account == account:
                return o
        return None

    def cancel(self, order_id: int, account: str) -> bool:
        o = self.find(order_id, account)
        if o is None:
            return False
        self.orders.remove(o)
        return True

    def amend(self, order_id: int, account: str, price: int, total: int) -> bool:
        o = self.find(order_id, account)
        if o is None or not (self.band_low <= price <= self.band_high) or total > self.max_lots:
            return False
        base = o.filled_lots + o.cancelled_lots
        if total <= base:
            self.orders.remove(o)
            return True
        new_open = total - base
        if price == o.price and new_open <= o.open_lots:
            o.open_lots = new_open
            return True
        if o.post_only and self._crossing(o.side, price):
            return False
        self.orders.remove(o)
        o.price = price
        o.open_lots = new_open
        o.priority = self._tick()
        if self._match(o) and o.open_lots:
            self.orders.append(o)
        return True

    def mass_cancel(self, account: str) -> None:
        self.orders = [o for o in self.orders if o.account != account]
