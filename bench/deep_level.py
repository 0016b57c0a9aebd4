"""A deep price level swept one lot at a time, oldest order first.

    python -m bench.deep_level [--depths 1000,10000,50000] [--json]

Rests `depth` one-lot sell orders at one price, then sends `depth` one-lot IOC buys at that
price, each filling the oldest order left, through ``MatchingEngine.new_order``. Prints the
mean and worst time per taker for each depth and, last, one JSON object. A flat mean across the
depths is what ``Book.note_taken`` is for (see docs/matching.md).
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import orjson

from bench.journal import machine
from matching import (
    BUY,
    CONTINUOUS,
    GTC,
    IOC,
    LIMIT,
    SELL,
    STP_NONE,
    Instrument,
    Limits,
    ListInstrument,
    MatchingEngine,
    SetTradingState,
    make_new_order,
)

__all__ = ["main", "sweep"]

_INSTRUMENT = Instrument("DEEP", "steel", "bench", "bench", "bench", 1, 100, 3500, 1000, 1, 1_000_000)
_ACCOUNTS = [f"A{i}" for i in range(1000)]


def sweep(depth: int) -> dict[str, Any]:
    """Rest `depth` orders at one price, then take them one lot at a time; times per taker."""
    engine = MatchingEngine(Limits(max_open_orders_per_account=depth, max_client_order_ids_per_account=2 * depth))
    out: list[Any] = []
    engine.apply(ListInstrument(_INSTRUMENT), 1, out)
    engine.apply(SetTradingState("DEEP", CONTINUOUS), 2, out)
    seq = 2
    for i in range(depth):
        seq += 1
        engine.new_order(
            make_new_order(_ACCOUNTS[i % 1000], "DEEP", f"m{i}", SELL, 3500, 1, GTC, LIMIT, False, STP_NONE), seq, out
        )
        out.clear()
    gc.collect()
    ns = time.perf_counter_ns
    worst = 0
    started = ns()
    for i in range(depth):
        seq += 1
        order = make_new_order(_ACCOUNTS[(i + 1) % 1000], "DEEP", f"t{i}", BUY, 3500, 1, IOC, LIMIT, False, STP_NONE)
        t0 = ns()
        engine.new_order(order, seq, out)
        worst = max(worst, ns() - t0)
        out.clear()
    elapsed = ns() - started
    assert not engine.books["DEEP"].levels[SELL], "every resting order was taken"
    return {"depth": depth, "mean_us": elapsed / depth / 1000, "worst_us": worst / 1000}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1000,10000,50000")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    rows = [sweep(int(d)) for d in args.depths.split(",")]
    if not args.json:
        for r in rows:
            print(f"depth {r['depth']:,}: {r['mean_us']:.2f} us a taker on average, worst {r['worst_us']:.0f} us")
    result = {"benchmark": "deep_level", **machine(), "sweeps": rows}
    print(orjson.dumps(result).decode())
    return result


if __name__ == "__main__":
    main()
