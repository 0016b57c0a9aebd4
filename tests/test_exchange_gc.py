"""The sequencing thread's collector policy (exchange/_gc.py): freezing never loses an object
that is still referenced, and a garbage cycle frozen meanwhile is freed by the next sweep."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange import (
    GC_FREEZE_EVERY_COMMANDS,
    SERVING_YOUNG_THRESHOLD,
    SWEEP_MIN_INTERVAL_S,
    SWEEP_SPACING_MAX,
    Freezer,
    serving_collector,
)

ROOT = Path(__file__).resolve().parent.parent


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
    assert freezer.next_sweep == max(GC_FREEZE_EVERY_COMMANDS, freezer.kept // 2) * freezer.spacing
    assert freezer.next_sweep < 200_000 // 2 * freezer.spacing
    assert freezer.next_sweep >= GC_FREEZE_EVERY_COMMANDS


def test_sweeps_that_find_nothing_are_spaced_out_and_one_that_finds_garbage_resets() -> None:
    freezer = Freezer(sweep_min_commands=GC_FREEZE_EVERY_COMMANDS)
    _live = [[i] for i in range(50_000)]
    spacings = []
    for _ in range(8):
        freezer.sweep()  # nothing to find
        spacings.append(freezer.spacing)
    assert spacings == [2, 4, 8, 16, 32, 64, 64, 64]
    assert SWEEP_SPACING_MAX == 64
    base = max(GC_FREEZE_EVERY_COMMANDS, freezer.kept // 2)
    assert freezer.next_sweep == base * SWEEP_SPACING_MAX
    gc.disable()  # only the sweep collects here
    try:
        garbage = [_cycle() for _ in range(freezer.kept // 50)]  # more than 1 % of what is kept
        freezer.sweep()
    finally:
        gc.enable()
    assert all(g() is None for g in garbage)
    assert freezer.spacing == 1
    assert freezer.next_sweep == max(GC_FREEZE_EVERY_COMMANDS, freezer.kept // 2)


def test_a_sweep_asked_for_waits_for_the_interval_times_the_spacing_and_not_while_busy() -> None:
    exporting = [False]
    freezer = Freezer(sweep_min_commands=GC_FREEZE_EVERY_COMMANDS, busy=lambda: exporting[0])
    freezer.start()
    start_s = freezer.swept_at
    assert not freezer.may_sweep(start_s + 1), "too soon after the last sweep"
    assert freezer.may_sweep(start_s + SWEEP_MIN_INTERVAL_S + 1)
    exporting[0] = True
    assert not freezer.may_sweep(start_s + SWEEP_MIN_INTERVAL_S + 1), "not while a snapshot shares the memory"
    freezer.applied(10 * GC_FREEZE_EVERY_COMMANDS)  # a sweep is due by commands: it waits too
    assert freezer.sweeps == 0
    assert freezer.freezes == 1
    exporting[0] = False
    freezer.applied(GC_FREEZE_EVERY_COMMANDS)
    assert freezer.sweeps == 1, "the sweep that came due runs once the export ended"
    assert freezer.spacing == 2, "it found nothing: the next one is further out"
    later_s = freezer.swept_at + SWEEP_MIN_INTERVAL_S + 1
    assert not freezer.may_sweep(later_s)
    assert freezer.may_sweep(freezer.swept_at + 2 * SWEEP_MIN_INTERVAL_S + 1)


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


_EXIT_SCRIPT = """
import atexit, gc, os
def report():  # registered first, so it runs last: after the serving policy's own exit handler
    os.write(1, f"{len(gc.get_objects())} {gc.get_freeze_count()}".encode())
atexit.register(report)
from exchange import serving_collector
serving_collector()
serving_collector()  # a second call registers nothing more
state = [[i] for i in range(100_000)]  # the day's objects, made while serving and never swept
"""


def test_a_serving_process_leaves_its_objects_frozen_at_exit() -> None:
    """The interpreter's last collection walks only what is not frozen: a serving process
    freezes everything at exit, so a stop does not walk the day's state once more."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    tracked, frozen = (int(n) for n in done.stdout.split())
    assert tracked < 1_000, f"{tracked} objects left for the exit's collection to walk"
    assert frozen >= 100_000
