"""The private streams' replay buffer: its cost a message and the pause of its compaction.

    python -m bench.replay [--messages 1000000] [--json]

Feeds `messages` order messages (one ACCEPTED event a command) through ``PrivateStreams.apply``,
the gateway's path after every commit, in two shapes: 200 accounts with the default budget
binding (every message past it drops the exchange's oldest), and 120 accounts each past its own
ring of ``PRIVATE_RING_MESSAGES`` with the budget not reached (the rings drop their oldest and the
order of all messages is compacted from time to time). Prints the mean cost a message, the worst
single message (a compaction, or a slow moment of the machine) and one timed compaction of the
second shape; last, one JSON object. The collector is off while it measures, as the serving
process keeps its state frozen (exchange/_gc.py).
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import orjson

from api._limits import PRIVATE_REPLAY_MESSAGES, PRIVATE_RING_MESSAGES
from api._private import PrivateStreams
from bench.journal import machine
from exchange import Ack
from matching import ACCEPTED, BUY

__all__ = ["feed", "main"]


def _price(_symbol: str, ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}"


def feed(accounts: int, messages: int, budget: int) -> tuple[PrivateStreams, dict[str, Any]]:
    """`messages` order messages over `accounts` accounts; the streams and the times a message."""
    streams = PrivateStreams(_price, PRIVATE_RING_MESSAGES, budget)
    names = [f"M{i:04d}" for i in range(accounts)]
    acks = [
        Ack(n, n, [(ACCEPTED, n, n, names[n % accounts], "RB", f"c{n}", BUY, 350_000, 1, 0)])
        for n in range(1, messages + 1)
    ]
    ns = time.perf_counter_ns
    worst = 0
    gc.collect()
    gc.disable()
    try:
        started = ns()
        for ack in acks:
            t0 = ns()
            streams.apply(ack)
            worst = max(worst, ns() - t0)
        elapsed = ns() - started
    finally:
        gc.enable()
    row = {
        "accounts": accounts, "messages": messages, "budget": budget, "kept": streams.kept,
        "mean_ns_per_message": round(elapsed / messages), "worst_ms": round(worst / 1e6, 2),
    }  # fmt: skip
    return streams, row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    _, binding = feed(200, args.messages, PRIVATE_REPLAY_MESSAGES)
    rings_full = 120  # x PRIVATE_RING_MESSAGES: about 490,000 kept, under the budget
    streams, rings = feed(rings_full, args.messages, PRIVATE_REPLAY_MESSAGES)
    before = len(streams.order)
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        streams._compact()
        compaction_ms = (time.perf_counter_ns() - t0) / 1e6
    finally:
        gc.enable()
    rings["compaction_entries"] = before
    rings["compaction_ms"] = round(compaction_ms, 2)
    if not args.json:
        for r in (binding, rings):
            print(
                f"{r['accounts']} accounts, {r['messages']:,} messages, {r['kept']:,} kept: "
                f"{r['mean_ns_per_message']} ns a message, worst {r['worst_ms']} ms"
            )
        print(f"one compaction of {before:,} entries: {compaction_ms:.1f} ms")
    result = {"benchmark": "replay", **machine(), "budget_binding": binding, "rings_binding": rings}
    print(orjson.dumps(result).decode())
    return result


if __name__ == "__main__":
    main()
