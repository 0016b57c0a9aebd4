"""One instrument's order book: price levels per side, each a FIFO of orders.

Layout (chosen for CPython speed, see docs/matching.md):
- ``levels[side]``: price_ticks -> {order_id: Order}, a dict in arrival order
  (dicts keep insertion order, so the first key is the oldest order).
- ``level_lots[side]``: price_ticks -> total open lots at that level.
- ``heaps[side]``: a binary heap of the side's prices (bids negated so the
  best price is always ``heap[0]``). Emptied levels leave their price in the
  heap; it is dropped when it reaches the top, and the heap is rebuilt when
  stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

from matching._instrument import Instrument
from matching._types import BUY, CLOSED

__all__ = ["DEEP_LEVEL_ORDERS", "Book", "Order"]

# Held in C statics by the compiled build (a plain import is a dictionary lookup per call there).
heapify: Final = heapq.heapify
heappop: Final = heapq.heappop
heappush: Final = heapq.heappush

_REBUILD_MIN_TAKEN: Final = 64
_REBUILD_WEIGHT: Final = 32
"""A level's dict is rebuilt once the orders taken off it since it was built exceed
``_REBUILD_MIN_TAKEN`` and the square root of ``_REBUILD_WEIGHT`` times the orders it holds."""
DEEP_LEVEL_ORDERS: Final = 64
"""Orders taken off a level are counted (``Book.note_taken``) only while it holds at least this
many: below, its dead slots grow by fewer than this many more before it empties or an insert
makes the dict resize (which compacts it)."""


class Order:
    """A resting order. ``ordered_lots = filled_lots + open_lots + cancelled_lots``."""

    __slots__ = (
        "account",
        "cancelled_lots",
        "client_order_id",
        "filled_lots",
        "instrument",
        "open_lots",
        "order_id",
        "ordered_lots",
        "post_only",
        "price_ticks",
        "side",
        "stp_mode",
        "time_in_force",
    )

    def __init__(
        self,
        order_id: int,
        account: str,
        instrument: str,
        client_order_id: str,
        side: int,
        price_ticks: int,
        ordered_lots: int,
        open_lots: int,
        filled_lots: int,
        cancelled_lots: int,
        time_in_force: int,
        post_only: bool,
        stp_mode: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.instrument = instrument
        self.client_order_id = client_order_id
        self.side = side
        self.price_ticks = price_ticks
        self.ordered_lots = ordered_lots
        self.open_lots = open_lots
        self.filled_lots = filled_lots
        self.cancelled_lots = cancelled_lots
        self.time_in_force = time_in_force
        self.post_only = post_only
        self.stp_mode = stp_mode

    def to_list(self) -> list[object]:
        """The fields in constructor order (``Order(*order.to_list())``, ``ORDER_FIELDS``); written
        out, not read by name: a snapshot exports every resting order."""
        return [
            self.order_id, self.account, self.instrument, self.client_order_id, self.side, self.price_ticks,
            self.ordered_lots, self.open_lots, self.filled_lots, self.cancelled_lots, self.time_in_force,
            self.post_only, self.stp_mode,
        ]  # fmt: skip


ORDER_FIELDS = (
    "order_id",
    "account",
    "instrument",
    "client_order_id",
    "side",
    "price_ticks",
    "ordered_lots",
    "open_lots",
    "filled_lots",
    "cancelled_lots",
    "time_in_force",
    "post_only",
    "stp_mode",
)


class Book:
    __slots__ = (
        "band_high_ticks",
        "band_low_ticks",
        "halted_from",
        "heaps",
        "level_taken",
        "bests",
        "indicative",
        "instrument",
        "last_price_ticks",
        "level_lots",
        "levels",
        "max_lots",
        "min_lots",
        "reference_price_ticks",
        "state",
        "symbol",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.state = CLOSED
        self.halted_from = CLOSED
        self.reference_price_ticks = 0
        self.band_low_ticks = 0
        self.band_high_ticks = 0
        self.min_lots = instrument.min_lots
        self.max_lots = instrument.max_lots
        self.set_reference(instrument.reference_price_ticks)
        self.last_price_ticks = 0
        # Per side (BUY, SELL). Typed as tuples of any length: the compiled build keeps a
        # fixed-length tuple unboxed and would build a new tuple object for each ``[side]``.
        self.levels: tuple[dict[int, dict[int, Order]], ...] = ({}, {})
        self.level_lots: tuple[dict[int, int], ...] = ({}, {})
        self.heaps: tuple[list[int], ...] = ([], [])
        # orders taken off each level (filled or cancelled) since its dict was built; not part of
        # the state (a restored book starts with compact levels): see ``note_taken``
        self.level_taken: tuple[dict[int, int], ...] = ({}, {})
        self.bests = [0, 0]  # best bid, best ask (0: the side is empty), always exact
        self.indicative: tuple[int, int, int] = (0, 0, 0)

    def set_reference(self, reference_price_ticks: int) -> None:
        band = reference_price_ticks * self.instrument.price_band_bps // 10_000
        self.reference_price_ticks = reference_price_ticks
        self.band_low_ticks = max(1, reference_price_ticks - band)
        self.band_high_ticks = reference_price_ticks + band

    def best(self, side: int) -> int:
        """Best price on `side`, or 0 when the side is empty."""
        return self.bests[side]

    def best_from_heap(self, side: int) -> int:
        """The best price found from the heap (dropping emptied levels from
        its top); used to refresh ``bests`` when the best level goes."""
        heap = self.heaps[side]
        levels = self.levels[side]
        while heap:
            price = -heap[0] if side == BUY else heap[0]
            if price in levels:
                return price
            heappop(heap)
        return 0

    def add_level(self, side: int, price_ticks: int) -> dict[int, Order]:
        level: dict[int, Order] = {}
        self.levels[side][price_ticks] = level
        self.level_lots[side][price_ticks] = 0
        heap = self.heaps[side]
        heappush(heap, -price_ticks if side == BUY else price_ticks)
        if len(heap) > 2 * len(self.levels[side]) + 64:
            self.compact(side)
        best = self.bests[side]
        if not best or (price_ticks > best if side == BUY else price_ticks < best):
            self.bests[side] = price_ticks
        return level

    def note_taken(self, side: int, price_ticks: int, count: int) -> None:
        """`count` orders were just taken off the level at `price_ticks`, which is not empty.

        A dict keeps the slots of its deleted entries, and finding its first (oldest) order walks
        past every deleted one before it: a deep level of n orders taken one at a time from the
        front would cost each fill time in proportion to the fills before it. The level's dict is
        rebuilt (``dict(level)``, same order) once more than ``64 + sqrt(32 n)`` orders were taken
        since it was built, which weighs the walk (about a nanosecond a slot) against the copy
        (tens of nanoseconds an order): the cost of a fill stays near constant however deep the
        level. The engine calls this only while the level holds ``DEEP_LEVEL_ORDERS`` or more, so
        a shallow level costs nothing here and is never rebuilt."""
        taken = self.level_taken[side]
        total = taken.get(price_ticks, 0) + count
        if total > _REBUILD_MIN_TAKEN:
            levels = self.levels[side]
            level = levels[price_ticks]
            if total * total > _REBUILD_WEIGHT * len(level):
                levels[price_ticks] = dict(level)
                total = 0
        taken[price_ticks] = total

    def drop_level(self, side: int, price_ticks: int) -> None:
        """Remove the emptied level at `price_ticks` and refresh the best price."""
        key: Any = price_ticks  # boxed once for the deletes (the compiled build boxes at each use)
        del self.levels[side][key]
        del self.level_lots[side][key]
        taken = self.level_taken[side]
        if taken:
            taken.pop(key, None)
        if self.bests[side] == price_ticks:
            self.bests[side] = self.best_from_heap(side)

    def compact(self, side: int) -> None:
        heap = self.heaps[side]
        heap[:] = [-p for p in self.levels[side]] if side == BUY else list(self.levels[side])
        heapify(heap)

    def sorted_prices(self, side: int) -> list[int]:
        """Prices of `side`, best first."""
        return sorted(self.levels[side], reverse=side == BUY)

    def is_crossed(self) -> bool:
        bid = self.best(0)
        ask = self.best(1)
        return bid != 0 and ask != 0 and bid >= ask

    def order_count(self) -> int:
        return sum(len(level) for side in self.levels for level in side.values())
