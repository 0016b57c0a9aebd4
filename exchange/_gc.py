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
``GC_SWEEP_MIN_COMMANDS`` and half the objects the last sweep kept, times a
spacing that doubles (up to ``SWEEP_SPACING_MAX``) after each sweep that
found next to nothing. A sweep walks everything once (15 ns an object in a
small heap, about 110 ns in a large one); spacing sweeps in proportion to the
state keeps its cost per command constant, and the writer's core makes no
cycles, so most sweeps there find nothing and the spacing grows.

A serving process (``bulkex serve``, ``serving_collector``) goes further: its
event loop allocates as fast as the sequencer (frames, requests, answers, feed
messages), and under a burst one pass of the loop reads thousands of frames
before the next committed batch; with automatic young collections each one
walked the 100,000 objects of the pass, all alive (2026-12-07, ``bench
gateway`` at 20,000 orders/s offered: 231 young collections in the loop and 6
in the sequencer, 1.5 s of the serving process's time, pauses up to 143 ms).
So there automatic collections are off (``SERVING_YOUNG_THRESHOLD``): no
collection walks the objects of a pass, and the only walks are the sweeps.
Besides the sweeps counted in commands (in the process that runs the
sequencer), the gateway's loop sweeps where its garbage cycles come from:
once ``api._server.SWEEP_AFTER_CYCLE_HINTS`` connections have closed or
requests have been answered by a task since the last sweep, and
``Freezer.may_sweep`` (``SWEEP_MIN_INTERVAL_S`` times the spacing passed), so
garbage stays bounded when no command flows (connections opened and closed all
day). Growth of the live state is no reason to sweep: a sweep walks every live
object (about 110 ns each on a 2-core AMD EPYC, 2026-12-07: a third of a second
for 3 million), and sweeps for growth (memory doubled) paused the gateway for
1.9 s and 3.7 s in a 4-minute soak to free 100 and 240 objects.

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

import atexit
import gc
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "COLLECTOR_CHECK_S",
    "GC_FREEZE_EVERY_COMMANDS",
    "GC_SWEEP_MIN_COMMANDS",
    "GIL_SWITCH_INTERVAL_S",
    "SERVING_YOUNG_THRESHOLD",
    "SWEEP_MIN_INTERVAL_S",
    "SWEEP_SPACING_MAX",
    "YOUNG_THRESHOLD_OBJECTS",
    "Freezer",
    "serving_collector",
    "serving_process",
    "tune_collector",
]

GIL_SWITCH_INTERVAL_S: Final = 0.0005
"""A serving process's switch interval: how long a thread waiting for the GIL waits before the
running one must let go (CPython's default is 5 ms). The gateway's event loop and its writer
reader, and the writer's sequencer, committer and reader, share their process's interpreter: with
5 ms, a commit whose thread wakes from fsync while another thread runs waits up to 5 ms for each
step back into Python, and every acknowledgement waits with it (measured with one process for
both: order-to-ack p99 at 3,000 orders/s fell from 46 ms to 22 ms). Set by ``serving_process``."""

YOUNG_THRESHOLD_OBJECTS: Final = 100_000
"""Tracked allocations (less deallocations) between two young-generation collections."""

GC_FREEZE_EVERY_COMMANDS: Final = 500
"""Commands between two ``gc.freeze()`` calls of the sequencing thread (``Freezer.applied``)."""

GC_SWEEP_MIN_COMMANDS: Final = 1_000_000
"""Commands at least between two sweeps (unfreeze, full collection, freeze)."""

SERVING_YOUNG_THRESHOLD: Final = 1 << 30
"""A serving process's young-generation threshold: no automatic collection (see the module's text)."""

COLLECTOR_CHECK_S: Final = 1.0
"""How often a serving process's event loop considers a sweep (``api._server.Gateway.collector``)."""

SWEEP_MIN_INTERVAL_S: Final = 60.0
"""Seconds at least between a sweep and one the gateway asks for (``Freezer.may_sweep``), times the spacing."""

SWEEP_SPACING_MAX: Final = 64
"""A sweep that freed less than 1 % of the objects it kept doubles the distance to the next one (in
commands, and the interval of a sweep for growth), up to this many times the base; one that freed
more brings it back to the base. The writer's core makes no cycles, so its sweeps find next to
nothing and a sweep walks every live object: spacing them out is most of what they cost."""


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
        self.swept_at = time.monotonic()
        self.spacing = 1  # the next sweep's distance, in multiples of the base (see ``sweep``)

    def start(self) -> None:
        """Before the first command: the next sweep's distance from the state already frozen
        (a recovered core)."""
        self.kept = gc.get_freeze_count()
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
        self.swept_at = time.monotonic()
        # a sweep that found (almost) nothing spaces the next further out; one that found garbage resets
        self.spacing = min(2 * self.spacing, SWEEP_SPACING_MAX) if freed * 100 < kept else 1
        self.next_sweep = max(self.sweep_min_commands, kept // 2) * self.spacing
        self.since_sweep = 0
        self.sweeps += 1
        return freed

    def freeze(self) -> None:
        """Move every tracked object into the permanent generation (costs nothing: it splices lists)."""
        gc.freeze()
        self.freezes += 1

    def may_sweep(self, now_s: float | None = None) -> bool:
        """A sweep asked for outside the command count (the gateway's, see the module's text) may
        run: SWEEP_MIN_INTERVAL_S times the spacing passed since the last one, and not ``busy``."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self.swept_at < SWEEP_MIN_INTERVAL_S * self.spacing:
            return False
        return not (self.busy is not None and self.busy())


def serving_collector() -> None:
    """A serving process's collector settings: everything so far frozen, no automatic collection
    (sweeps by commands, and the gateway's, see the module's text), and everything frozen again
    at exit.

    The interpreter's shutdown runs one full collection after the exit handlers, and it walks
    every object not frozen: in the gateway's process, which freezes only at its sweeps, that is
    the day's read models and replay buffers, 2.5 million objects and 1.4 s after ``bench
    gateway``'s 175,000 orders (2026-12-08), seconds more of a stop after everything was already
    answered and committed. Frozen, they are left to the operating system with the process's
    memory; no finalizer the exchange relies on runs in that collection (files and connections are
    closed before, the log is flushed by its own exit handler, which runs after this one)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(SERVING_YOUNG_THRESHOLD, middle, old)
    atexit.unregister(gc.freeze)  # once, however often a process (a test run) calls this
    atexit.register(gc.freeze)


def serving_process() -> None:
    """Interpreter settings of a serving process (the gateway's, the writer's): the collector's
    serving policy (``serving_collector``) and a GIL_SWITCH_INTERVAL_S switch interval."""
    serving_collector()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
