"""bench/replay.py (`python -m bench.replay`): a short run, checked for what it counts."""

from __future__ import annotations

from api._limits import PRIVATE_RING_MESSAGES
from bench.replay import feed, main


def test_replay_bench_counts_what_each_bound_keeps() -> None:
    result = main(["--messages", "30000", "--json"])
    assert result["budget_binding"]["kept"] == 30_000  # 200 accounts x 150 messages: under both bounds
    rings = result["rings_binding"]
    assert rings["kept"] == 30_000
    assert rings["compaction_entries"] == 30_000
    assert rings["mean_ns_per_message"] > 0


def test_replay_bench_feed_drops_by_the_budget_then_by_the_rings() -> None:
    budget_bound, row = feed(10, 5_000, 1_000)
    assert row["kept"] == budget_bound.kept == 1_000
    ring_bound, row = feed(2, 2 * PRIVATE_RING_MESSAGES + 100, 1_000_000)
    assert row["kept"] == 2 * PRIVATE_RING_MESSAGES
    assert len(ring_bound.order) <= 2 * ring_bound.kept + 1024
