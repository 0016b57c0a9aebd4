"""The cyclic garbage collector's settings for the exchange's processes.

The core allocates at a high rate (every command builds event tuples, every
order an Order and a hold, every trade a deal and its holds) and makes no
reference cycles: its garbage is freed by reference counting the moment it is
dropped. With CPython's default young-generation threshold (700 tracked
allocations) the collector still runs every few commands and walks everything
allocated since, most of it the events of the batch being built; measured on
the crossing stream through the whole core, that is a quarter to a third of
the core's time.

``tune_collector`` raises the young-generation threshold to
``YOUNG_THRESHOLD_OBJECTS``: the short-lived events of a batch are freed
before a collection would see them, and a real cycle made elsewhere in the
process (asyncio, the WebSocket library) is still found within the next
``YOUNG_THRESHOLD_OBJECTS`` allocations while the writer is idle.

While it applies commands, the sequencing thread keeps the collector out of
the way altogether with a ``Freezer``: every ``GC_FREEZE_EVERY_COMMANDS``
commands it moves every tracked object into the permanent generation
(``gc.freeze``, which costs nothing: it splices lists) and so never lets a
young collection walk the batches in flight. Frozen objects are still freed
by reference counting when dropped; only garbage *cycles* made meanwhile by
the rest of the process stay, until the next sweep: ``gc.unfreeze``, a full
collection, ``gc.freeze`` again, once the commands since the last sweep pass
``GC_SWEEP_MIN_COMMANDS`` and half the objects the last sweep kept. A sweep
walks everything once (about 15 ns an object); spacing sweeps in proportion
to the state keeps its cost per command constant and its pauses to about
30 ns times the command rate as a share of commands (0.15 % at 50,000/s).

A serving process (``bulkex serve``, ``serving_collector``) goes further: its
event loop allocates as fast as the sequencer (frames, requests, answers, feed
messages), and under a burst one pass of the loop reads thousands of frames
before the next committed batch; with automatic young collections each one
walked the 100,000 objects of the pass, all alive (2026-12-07, ``bench
gateway`` at 20,000 orders/s offered: 231 young collections in the loop and 6
in the sequencer, 1.5 s of the serving process's time, pauses up to 143 ms).
So there automatic collections are off (``SERVING_YOUNG_THRESHOLD``): no
collection walks the objects of a pass, and the only walks are the sweeps.
Besides the sweeps counted in commands, the loop sweeps
(``Freezer.sweep_if_grown``, checked every ``GROWTH_CHECK_S``) once the
interpreter's allocated memory blocks have doubled since the last sweep and
``SWEEP_MIN_INTERVAL_S`` have passed, so garbage cycles stay bounded by the live
objects when no command flows (connections opened and closed all day). A sweep
walks every live object (about 110 ns each on a 2-core AMD EPYC, 2026-12-07: a
third of a second for 3 million), which is why they are spaced so.

No sweep runs while a snapshot is being exported (``Freezer.busy``): the
exporting child shares the process's memory copy-on-write, and a collection
writes to every object's header, so each page it touches is copied (measured:
a sweep of 3.5 million objects took 1.36 s then, against about 50 ms without a
child). A sweep that comes due then waits for the export to end.

Measured on 2026-12-06 (AMD EPYC, 2 cores): collecting the young generations
before each freeze, as the sequencer did until then, took 31 % of the
sequencing thread in ``bench journal`` on PostgreSQL and about 14 µs of the
server's 67 µs CPU per order in ``bench gateway``, to find about 0.35 garbage
objects per order (asyncio's and the WebSocket library's).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "GC_FREEZE_EVERY_COMMANDS",
    "GC_SWEEP_MIN_COMMANDS",
    "GROWTH_CHECK_S",
    "SERVING_YOUNG_THRESHOLD",
    "SWEEP_MIN_GROWTH_BLOCKS",
    "SWEEP_MIN_INTERVAL_S",
    "YOUNG_THRESHOLD_OBJECTS",
    "Freezer",
    "serving_collector",
    "tune_collector",
]

YOUNG_THRESHOLD_OBJECTS: Final = 100_000
"""Tracked allocations (less deallocations) between two young-generation collections."""

GC_FREEZE_EVERY_COMMANDS: Final = 500
"""Commands between two ``gc.freeze()`` calls of the sequencing thread (``Freezer.applied``)."""

GC_SWEEP_MIN_COMMANDS: Final = 1_000_000
"""Commands at least between two sweeps (unfreeze, full collection, freeze)."""

SERVING_YOUNG_THRESHOLD: Final = 1 << 30
"""A serving process's young-generation threshold: no automatic collection (see the module's text)."""

SWEEP_MIN_GROWTH_BLOCKS: Final = 1_000_000
"""Memory blocks the interpreter may gain at least before ``Freezer.sweep_if_grown`` sweeps."""

GROWTH_CHECK_S: Final = 1.0
"""How often a serving process's event loop calls ``Freezer.sweep_if_grown``."""

SWEEP_MIN_INTERVAL_S: Final = 60.0
"""Seconds at least between a sweep and one for growth (``Freezer.sweep_if_grown``)."""


def tune_collector() -> None:
    """Raise the young generation's threshold to ``YOUNG_THRESHOLD_OBJECTS`` (never lower it)."""
    young, middle, old = gc.get_threshold()
    if young < YOUNG_THRESHOLD_OBJECTS:
        gc.set_threshold(YOUNG_THRESHOLD_OBJECTS, middle, old)


class Freezer:
    """The sequencing thread's collector policy (see the module's text): call ``applied``
    after each group of commands."""

    def __init__(self, sweep_min_commands: int = GC_SWEEP_MIN_COMMANDS, busy: Callable[[], bool] | None = None) -> None:
        assert sweep_min_commands > 0
        self.sweep_min_commands = sweep_min_commands
        self.busy = busy  # true while no sweep may run (a snapshot export sharing the memory)
        self.unfrozen = 0  # commands applied since the last freeze
        self.since_sweep = 0  # commands applied since the last sweep
        self.next_sweep = sweep_min_commands
        self.sweeps = 0
        self.freezes = 0
        self.kept = 0  # tracked objects after the last sweep (or at start)
        self.kept_blocks = sys.getallocatedblocks()  # the interpreter's memory blocks then
        self.swept_at = time.monotonic()

    def start(self) -> None:
        """Before the first command: the next sweep's distance from the state already frozen
        (a recovered core)."""
        self.kept = gc.get_freeze_count()
        self.kept_blocks = sys.getallocatedblocks()
        self.swept_at = time.monotonic()
        self.next_sweep = max(self.sweep_min_commands, self.kept // 2)

    def applied(self, commands: int) -> None:
        self.unfrozen += commands
        if self.unfrozen < GC_FREEZE_EVERY_COMMANDS:
            return
        self.since_sweep += self.unfrozen
        self.unfrozen = 0
        if self.since_sweep >= self.next_sweep and not (self.busy is not None and self.busy()):
            self.sweep()
        else:
            self.freeze()

    def sweep(self) -> int:
        """Collect every garbage cycle made since the last sweep, frozen or not; the objects
        kept (all frozen again) set the next sweep's distance. Returns the cycles' objects freed."""
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        kept = gc.get_freeze_count()
        self.kept = kept
        self.kept_blocks = sys.getallocatedblocks()
        self.swept_at = time.monotonic()
        self.next_sweep = max(self.sweep_min_commands, kept // 2)
        self.since_sweep = 0
        self.sweeps += 1
        return freed

    def freeze(self) -> None:
        """Move every tracked object into the permanent generation (costs nothing: it splices lists)."""
        gc.freeze()
        self.freezes += 1

    def sweep_if_grown(self, now_s: float | None = None) -> bool:
        """Sweep when the interpreter's allocated memory blocks doubled since the last sweep (and
        grew by SWEEP_MIN_GROWTH_BLOCKS at least), SWEEP_MIN_INTERVAL_S after it, however few
        commands came, unless ``busy``: a serving process whose automatic collections are off
        finds the garbage cycles of its connections this way. Counting the blocks costs about
        150 µs for 9 million."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self.swept_at < SWEEP_MIN_INTERVAL_S:
            return False
        blocks = sys.getallocatedblocks()
        if blocks < self.kept_blocks + max(self.kept_blocks, SWEEP_MIN_GROWTH_BLOCKS):
            return False
        if self.busy is not None and self.busy():
            return False
        self.sweep()
        return True


def serving_collector() -> None:
    """A serving process's collector settings: everything so far frozen, no automatic collection
    (the event loop calls ``Freezer.sweep_if_grown`` every GROWTH_CHECK_S)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(SERVING_YOUNG_THRESHOLD, middle, old)
