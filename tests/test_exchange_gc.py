"""The sequencing thread's collector policy (exchange/_gc.py): freezing never loses an object
that is still referenced, and a garbage cycle frozen meanwhile is freed by the next sweep."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from exchange import (
    GC_FREEZE_EVERY_COMMANDS,
    SERVING_YOUNG_THRESHOLD,
    SWEEP_MIN_GROWTH_BLOCKS,
    SWEEP_MIN_INTERVAL_S,
    Freezer,
    serving_collector,
)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (other tests rely on the collector)."""
    gc.unfreeze()
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_cycle_frozen_between_sweeps_is_freed_by_the_next_sweep() -> None:
    freezer = Freezer(sweep_min_commands=4 * GC_FREEZE_EVERY_COMMANDS)
    freezer.start()
    assert freezer.next_sweep >= 4 * GC_FREEZE_EVERY_COMMANDS
    gc.disable()  # only the freezer decides here
    try:
        garbage = _cycle()
        freezer.applied(GC_FREEZE_EVERY_COMMANDS)  # a freeze, no collection
        assert freezer.freezes == 1
        assert freezer.sweeps == 0
        assert garbage() is not None, "a frozen cycle waits for the sweep"
        gc.collect()
        assert garbage() is not None, "a full collection does not see frozen objects"
        freezer.applied(freezer.next_sweep)  # far enough: a sweep
        assert freezer.sweeps == 1
        assert garbage() is None, "the sweep freed the cycle"
        assert freezer.since_sweep == 0
    finally:
        gc.enable()


def test_freezing_keeps_live_objects_and_reference_counting_frees_the_rest() -> None:
    freezer = Freezer()
    freezer.start()
    live = [Node() for _ in range(10)]
    dropped = Node()
    gone = weakref.ref(dropped)
    freezer.applied(GC_FREEZE_EVERY_COMMANDS)
    assert gc.get_freeze_count() > 0
    del dropped  # no cycle: freed at once, frozen or not
    assert gone() is None
    assert all(isinstance(n, Node) for n in live)


def test_sweeps_are_spaced_by_the_objects_they_keep() -> None:
    freezer = Freezer(sweep_min_commands=GC_FREEZE_EVERY_COMMANDS)
    kept = [[i] for i in range(200_000)]  # tracked objects that stay
    freezer.sweep()
    assert freezer.next_sweep >= len(kept) // 2
    del kept
    freezer.sweep()
    assert freezer.next_sweep < 200_000 // 2
    assert freezer.next_sweep >= GC_FREEZE_EVERY_COMMANDS


def test_a_sweep_for_growth_waits_for_the_interval_and_for_the_blocks_to_double() -> None:
    freezer = Freezer()
    freezer.start()
    start_s = freezer.swept_at
    garbage = _cycle()
    assert not freezer.sweep_if_grown(start_s + SWEEP_MIN_INTERVAL_S + 1), "nothing grew"
    grown = [[i] for i in range(max(freezer.kept_blocks, SWEEP_MIN_GROWTH_BLOCKS) + 1000)]
    assert not freezer.sweep_if_grown(start_s + 1), "too soon after the last sweep"
    assert freezer.sweeps == 0
    assert freezer.sweep_if_grown(start_s + SWEEP_MIN_INTERVAL_S + 1)
    assert freezer.sweeps == 1
    assert garbage() is None, "the sweep freed the cycle"
    assert freezer.kept_blocks > len(grown), "what the sweep kept is the new base"
    assert not freezer.sweep_if_grown(freezer.swept_at + SWEEP_MIN_INTERVAL_S + 1), "no growth since"


def test_no_sweep_while_busy() -> None:
    exporting = [True]
    freezer = Freezer(sweep_min_commands=GC_FREEZE_EVERY_COMMANDS, busy=lambda: exporting[0])
    freezer.start()
    grown = [[i] for i in range(max(freezer.kept_blocks, SWEEP_MIN_GROWTH_BLOCKS) + 1000)]
    later_s = freezer.swept_at + SWEEP_MIN_INTERVAL_S + 1
    assert not freezer.sweep_if_grown(later_s)
    freezer.applied(10 * GC_FREEZE_EVERY_COMMANDS)  # a sweep is due by commands: it waits too
    assert freezer.sweeps == 0
    assert freezer.freezes == 1
    exporting[0] = False
    freezer.applied(GC_FREEZE_EVERY_COMMANDS)
    assert freezer.sweeps == 1, "the sweep that came due runs once the export ended"
    del grown


def test_the_serving_policy_turns_automatic_collection_off() -> None:
    before = gc.get_threshold()
    try:
        serving_collector()
        assert gc.get_threshold()[0] == SERVING_YOUNG_THRESHOLD
        assert gc.get_count()[0] < 1000, "everything so far was frozen"
        garbage = _cycle()
        _churn = [[i] for i in range(200_000)]  # far past CPython's default threshold
        assert garbage() is not None, "no automatic collection freed it"
    finally:
        gc.set_threshold(*before)
