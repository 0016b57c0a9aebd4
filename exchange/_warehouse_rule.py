"""The per-instrument rule that sell orders must lock warehouse receipts.

A seller on bulkex sells goods that sit in a designated warehouse: with the
rule on for an instrument, a sell order is accepted only when the seller's
active receipts (those it names, else the oldest, in one warehouse) cover its
quantity, and they are locked to the order; otherwise the order is refused
with INSUFFICIENT_RECEIPTS (81) and nothing is frozen.

The rule is on for every listed instrument unless its definition says
otherwise (``Instrument.receipts_required``, in the instruments file
``receipts_required = false``, meant for test and benchmark setups only).
With the rule off a sell order still locks receipts when the seller has
enough, so its deals are delivered through the warehouse; a seller without
receipts trades and its deals are settled by clearing alone.

The rule is state of the core, changed by a journaled command, so a replay
of the journal gives the same answers.

    RequireReceipts(instrument, required, staff)
        ├─ unknown instrument: X_RECEIPT_RULE is not appended; W_REJECTED
        │  UNKNOWN_INSTRUMENT (207)
        └─ X_RECEIPT_RULE (240, seq, instrument, required, staff)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = ["EXCHANGE_WAREHOUSE_COMMANDS", "X_RECEIPT_RULE", "RequireReceipts"]

X_RECEIPT_RULE: Final = 240
"""(240, seq, instrument, required, staff): the receipt rule of an instrument changed."""


@dataclass(slots=True)
class RequireReceipts:
    """Staff turn the receipt rule of a listed instrument on or off."""

    KIND: ClassVar[str] = "require_receipts"
    instrument: str
    required: bool
    staff: str


EXCHANGE_WAREHOUSE_COMMANDS: Final[dict[str, type[RequireReceipts]]] = {RequireReceipts.KIND: RequireReceipts}
