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
``YOUNG_THRESHOLD_OBJECTS`` allocations. The older generations keep their
thresholds; the sequencer also moves the long-lived core state out of the
collector's sight with ``gc.freeze`` (see ``GC_FREEZE_EVERY_COMMANDS``).
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD_OBJECTS", "tune_collector"]

YOUNG_THRESHOLD_OBJECTS: Final = 100_000
"""Tracked allocations (less deallocations) between two young-generation collections."""


def tune_collector() -> None:
    """Raise the young generation's threshold to ``YOUNG_THRESHOLD_OBJECTS`` (never lower it)."""
    young, middle, old = gc.get_threshold()
    if young < YOUNG_THRESHOLD_OBJECTS:
        gc.set_threshold(YOUNG_THRESHOLD_OBJECTS, middle, old)
