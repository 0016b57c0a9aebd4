"""End of day: the clearing file's records from the day's transfers. Pure.

Opening balances (the previous close) plus the day's C_TRANSFER events give
every member's movements and closing balances; when the ledger's own closing
balances are passed in too they must agree, fen for fen, or the builder
refuses (a programmer error or a missing transfer). The output depends only
on the inputs and is sorted by member, so re-running a date gives identical
records (and identical file bytes).

Classification of a transfer for a member (TransferCode):
    DEPOSIT -> deposits; WITHDRAWAL -> withdrawals; FEE -> fees;
    FREEZE -> margin_frozen; RELEASE -> margin_released (MOVE: frozen to
    frozen, not shown); SETTLEMENT -> settlement_in / settlement_out;
    FORFEIT -> forfeit_in / forfeit_out; RISK_FUND -> forfeit_out;
    ADJUSTMENT -> adjustments (signed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clearing._engine import ClearingEngine
from clearing._events import C_TRANSFER
from clearing._ledger import AVAILABLE, TransferCode
from clearing.bankfiles._records import ClearingRecord, InstructionRecord

__all__ = ["build_clearing_records", "instruction_records"]

_OPENING, _DEP, _WD, _FEE, _FROZE, _RELEASED, _S_IN, _S_OUT, _F_IN, _F_OUT, _ADJ, _AVAIL, _FROZEN = range(13)


def build_clearing_records(
    members: Mapping[str, tuple[str, str]],
    bank: str,
    opening: Mapping[str, Sequence[int]],
    transfers: Iterable[Sequence[Any]],
    closing: Mapping[str, Sequence[int]] | None = None,
) -> list[ClearingRecord]:
    """One record per member registered at `bank` (members: member -> (bank,
    sub-account)); opening/closing: member -> [available, frozen]; transfers:
    the day's C_TRANSFER events in order (other events are skipped)."""
    rows: dict[str, list[int]] = {}
    for member, (member_bank, _sub) in members.items():
        if member_bank == bank:
            a, f = opening.get(member, (0, 0))
            rows[member] = [a + f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, f]
    for t in transfers:
        if t[0] != C_TRANSFER:
            continue
        code, d_member, d_account, c_member, c_account, amount = t[3], t[4], t[5], t[6], t[7], t[8]
        d = rows.get(d_member)
        c = rows.get(c_member)
        if d is not None:
            d[_AVAIL if d_account == AVAILABLE else _FROZEN] -= amount
        if c is not None:
            c[_AVAIL if c_account == AVAILABLE else _FROZEN] += amount
        if code == TransferCode.DEPOSIT and c is not None:
            c[_DEP] += amount
        elif code == TransferCode.WITHDRAWAL and d is not None:
            d[_WD] += amount
        elif code == TransferCode.FEE and d is not None:
            d[_FEE] += amount
        elif code == TransferCode.FREEZE and d is not None:
            d[_FROZE] += amount
        elif code == TransferCode.RELEASE and d is not None:
            d[_RELEASED] += amount
        elif code == TransferCode.SETTLEMENT:
            if d is not None:
                d[_S_OUT] += amount
            if c is not None:
                c[_S_IN] += amount
        elif code in (TransferCode.FORFEIT, TransferCode.RISK_FUND):
            if d is not None:
                d[_F_OUT] += amount
            if c is not None:
                c[_F_IN] += amount
        elif code == TransferCode.ADJUSTMENT:
            if d is not None:
                d[_ADJ] -= amount
            if c is not None:
                c[_ADJ] += amount
    records: list[ClearingRecord] = []
    for member in sorted(rows):
        r = rows[member]
        if closing is not None:
            a, f = closing.get(member, (0, 0))
            if (a, f) != (r[_AVAIL], r[_FROZEN]):
                raise ValueError(f"{member}: transfers give {r[_AVAIL]}/{r[_FROZEN]}, the ledger closed at {a}/{f}")
        record = ClearingRecord(member, members[member][1], *r)
        assert record.adds_up(), record
        records.append(record)
    return records


def instruction_records(engine: ClearingEngine, bank: str) -> list[InstructionRecord]:
    """The withdrawal instructions for `bank`: approved and not yet answered, by request id."""
    return [
        InstructionRecord(
            w.request_id, w.member, engine.members[w.member][1], w.amount_fen, w.requested_by, w.approved_by
        )
        for w in engine.pending_instructions(bank)
    ]
