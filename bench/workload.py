"""Seeded command streams for the matching benchmarks.

Two mixes, the same shapes as the side-by-side peer benchmark:

- ``exchange-core``: 9% GTC, 3% IOC, 6% cancel, 82% amend of a resting order
  (three quarters move the price by 1..10 ticks, one quarter reduce the size
  at the same price). About 1,000 resting orders spread over +-1..1000 ticks
  around the mid (about 750 levels). A GTC rests passively while the book
  holds fewer than 1,000 orders, else it joins at the touch; an IOC takes
  the touch (0..5 ticks through).
- ``crossing``: 60% GTC and 10% IOC within +-20 ticks of the mid (so many
  cross), 30% cancel; the book stays shallow.

The stream is generated against a tracking engine so that cancels and
amends name orders that are live at that point; the prefill (untimed)
builds the starting book.
"""

from __future__ import annotations

import random
from typing import Any

from matching import (
    BUY,
    CONTINUOUS,
    GTC,
    IOC,
    LIMIT,
    STP_NONE,
    AmendOrder,
    CancelOrder,
    Instrument,
    Limits,
    ListInstrument,
    MatchingEngine,
    NewOrder,
    SetTradingState,
)

__all__ = ["BENCH_INSTRUMENT", "MIXES", "SYMBOL", "bench_engine", "generate"]

MIXES = ("exchange-core", "crossing")
SYMBOL = "BENCH"
MID_TICKS = 3500
TARGET_ORDERS = 1000
SPREAD_TICKS = 1000
BENCH_INSTRUMENT = Instrument(
    symbol=SYMBOL,
    commodity="steel",
    product="rebar",
    grade="HRB400E 20mm",
    warehouse_group="bench",
    lot_size_t=10,
    tick_fen=100,
    reference_price_ticks=MID_TICKS,
    price_band_bps=9999,
    min_lots=1,
    max_lots=10_000,
    receipts_required=False,  # matching and clearing are measured here; `bench delivery` measures the warehouse
)
BENCH_LIMITS = Limits(max_open_orders_per_account=1_000_000, max_levels_per_side=100_000)
Command = Any


def bench_engine() -> tuple[MatchingEngine, int]:
    """A fresh engine with the bench instrument open; returns it and the next seq."""
    engine = MatchingEngine(BENCH_LIMITS)
    out: list[Any] = []
    engine.apply(ListInstrument(BENCH_INSTRUMENT), 1, out)
    engine.apply(SetTradingState(SYMBOL, CONTINUOUS), 2, out)
    return engine, 3


def generate(mix: str, n: int, seed: int = 1) -> tuple[list[Command], list[Command]]:
    """(prefill, stream) of matching commands; seqs start at 3 on a bench_engine()."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; choose from {MIXES}")
    rng = random.Random(seed)
    tracker, seq = bench_engine()
    out: list[Any] = []
    live: list[int] = []
    commands: list[Command] = []

    def emit(command: Command) -> int:
        nonlocal seq
        tracker.apply(command, seq, out)
        out.clear()
        commands.append(command)
        seq += 1
        return seq - 1

    def limit(side: int, price: int, tif: int) -> None:
        account = f"M{rng.randint(1, 100):03d}"
        order_id = emit(
            NewOrder(account, SYMBOL, f"c{seq}", side, max(1, price), rng.randint(1, 50), tif, LIMIT, False, STP_NONE)
        )
        if tif == GTC:
            live.append(order_id)

    def pick_live() -> int:
        while live:
            i = rng.randrange(len(live))
            if live[i] in tracker.orders:
                return live[i]
            live[i] = live[-1]
            live.pop()
        return 0

    def touch(side: int) -> int:
        best = tracker.books[SYMBOL].best(1 - side)
        return best or MID_TICKS

    def passive(side: int) -> int:
        d = rng.randint(1, SPREAD_TICKS)
        return MID_TICKS - d if side == BUY else MID_TICKS + d

    def crossing_step() -> None:
        r = rng.random()
        side = rng.randrange(2)
        if r < 0.6:
            limit(side, MID_TICKS + rng.randint(-20, 20), GTC)
        elif r < 0.7:
            limit(side, MID_TICKS + rng.randint(-20, 20), IOC)
        else:
            order_id = pick_live()
            if order_id:
                emit(CancelOrder(tracker.orders[order_id].account, order_id))
            else:
                limit(side, MID_TICKS + rng.randint(-20, 20), GTC)

    if mix == "exchange-core":
        while len(tracker.orders) < TARGET_ORDERS:
            side = rng.randrange(2)
            limit(side, passive(side), GTC)
    else:
        for _ in range(2000):
            crossing_step()
    prefill = commands
    commands = []
    while len(commands) < n:
        if mix == "crossing":
            crossing_step()
            continue
        r = rng.random()
        side = rng.randrange(2)
        if r < 0.09:
            limit(side, passive(side) if len(tracker.orders) < TARGET_ORDERS else touch(side), GTC)
        elif r < 0.12:
            through = rng.randint(0, 5)
            limit(side, touch(side) + (through if side == BUY else -through), IOC)
        else:
            order_id = pick_live()
            if not order_id:
                limit(side, passive(side), GTC)
                continue
            order = tracker.orders[order_id]
            done = order.filled_lots + order.cancelled_lots
            if r < 0.18:
                emit(CancelOrder(order.account, order_id))
            elif rng.random() < 0.25 and order.open_lots > 1:
                emit(AmendOrder(order.account, order_id, order.price_ticks, done + rng.randint(1, order.open_lots - 1)))
            else:
                move = rng.choice((-1, 1)) * rng.randint(1, 10)
                emit(AmendOrder(order.account, order_id, max(1, order.price_ticks + move), done + order.open_lots))
    return prefill, commands
