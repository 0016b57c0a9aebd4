"""Clearing read models from the clearing core's events.

``ClearingProjection`` folds the events of a run of commands into rows for
the tables of ``exchange._clearing_tables`` (transfers, balances, holds,
deals, withdrawals, deposits, bank files, closed days, breaks); ``write``
stores them in the caller's transaction, ``clearing_progress`` last.

``catch_up_clearing(url)`` brings the tables up to the journal's end: it
rebuilds the core as of the last projected seq (the newest snapshot at or
before it, then the journal), replays the journal's tail, folds the events
of the commands not yet projected, and writes them in ONE transaction with
the new progress mark. Re-running it changes nothing; a crash in the middle
leaves the previous mark. The writer's lock must be held (the CLI opens the
sequencer first), so nothing is journaled meanwhile.

The tables are read models: never read back into the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, text, update

from clearing import (
    C_BREAK,
    C_DAY_CLOSED,
    C_DEAL,
    C_DEAL_STATE,
    C_DEPOSIT,
    C_FILE,
    C_HOLD,
    C_HOLD_CHANGED,
    C_HOLD_CLOSED,
    C_MEMBER,
    C_TRANSFER,
    C_WITHDRAWAL,
    HoldState,
)
from exchange._clearing_tables import (
    BalanceRow,
    BankFileRow,
    BreakRow,
    ClearingProgressRow,
    DayRow,
    DealRow,
    DepositRow,
    HoldRow,
    TransferRow,
    WithdrawalEventRow,
)
from exchange._codec import decode
from exchange._core import Core
from exchange._db import make_engine
from exchange._recovery import decode_snapshot
from matching import Event

__all__ = ["ClearingProjection", "catch_up_clearing", "projected_seq"]

READ_CHUNK_ROWS = 20_000
"""Journal rows read per round trip while catching up."""

_T = cast(Table, TransferRow.__table__)
_BAL = cast(Table, BalanceRow.__table__)
_HOLD = cast(Table, HoldRow.__table__)
_DEAL = cast(Table, DealRow.__table__)
_WD = cast(Table, WithdrawalEventRow.__table__)
_DEP = cast(Table, DepositRow.__table__)
_FILE = cast(Table, BankFileRow.__table__)
_DAY = cast(Table, DayRow.__table__)
_BRK = cast(Table, BreakRow.__table__)
_PROG = cast(Table, ClearingProgressRow.__table__)


class ClearingProjection:
    """Rows of the clearing read models for a run of consecutive commands."""

    def __init__(self) -> None:
        self.transfers: list[dict[str, Any]] = []
        self.members: set[str] = set()  # balances to (re)write
        self.new_holds: dict[int, dict[str, Any]] = {}
        self.hold_updates: dict[int, dict[str, Any]] = {}
        self.new_deals: dict[int, dict[str, Any]] = {}
        self.deal_updates: dict[int, dict[str, Any]] = {}
        self.withdrawals: list[dict[str, Any]] = []
        self.deposits: list[dict[str, Any]] = []
        self.files: list[dict[str, Any]] = []
        self.days: list[dict[str, Any]] = []
        self.new_breaks: dict[int, dict[str, Any]] = {}
        self.break_updates: dict[int, dict[str, Any]] = {}
        self.last_seq = 0

    def add(self, events: list[Event], seq: int, ts_ns: int) -> None:
        """Fold the events of command `seq`."""
        self.last_seq = seq
        step = 0
        for e in events:
            kind = e[0]
            if kind < C_TRANSFER:
                continue
            if kind == C_TRANSFER:
                _, _, tid, code, dm, da, cm, ca, amount, ref = e
                self.transfers.append(
                    {
                        "transfer_id": tid, "seq": seq, "code": code, "debit_member": dm, "debit_account": da,
                        "credit_member": cm, "credit_account": ca, "amount_fen": amount, "ref": ref,
                    }
                )  # fmt: skip
                if dm:
                    self.members.add(dm)
                if cm:
                    self.members.add(cm)
            elif kind == C_HOLD:
                _, _, hold_id, member, account, amount, purpose, ref = e
                self.new_holds[hold_id] = {
                    "hold_id": hold_id, "member": member, "account": account, "amount_fen": amount,
                    "purpose": purpose, "ref": ref, "state": HoldState.OPEN, "opened_seq": seq, "last_seq": seq,
                }  # fmt: skip
            elif kind == C_HOLD_CHANGED:
                self._hold(e[2], seq, amount_fen=e[3])
            elif kind == C_HOLD_CLOSED:
                self._hold(e[2], seq, state=e[3])
            elif kind == C_DEAL:
                _, _, deal_id, symbol, price, lots, notional, buyer, seller, bm, bf, sm, sf = e
                self.new_deals[deal_id] = {
                    "deal_id": deal_id, "seq": seq, "instrument": symbol, "price_ticks": price,
                    "quantity_lots": lots, "notional_fen": notional, "buyer": buyer, "seller": seller,
                    "buyer_margin_fen": bm, "buyer_fee_fen": bf, "seller_margin_fen": sm, "seller_fee_fen": sf,
                    "state": "open", "last_seq": seq,
                }  # fmt: skip
            elif kind == C_DEAL_STATE:
                row = self.new_deals.get(e[2])
                if row is None:
                    row = self.deal_updates.setdefault(e[2], {"b_deal_id": e[2]})
                row["state"] = e[3]
                row["last_seq"] = seq
            elif kind == C_WITHDRAWAL:
                _, _, request_id, member, amount, status, actor, reason = e
                self.withdrawals.append(
                    {
                        "seq": seq, "step": step, "request_id": request_id, "member": member, "amount_fen": amount,
                        "status": status, "actor": actor, "reason": reason[:160],
                    }
                )  # fmt: skip
                step += 1
            elif kind == C_DEPOSIT:
                _, _, bank, record_id, member, amount, value_date = e
                self.deposits.append(
                    {
                        "bank": bank, "record_id": record_id, "member": member, "amount_fen": amount,
                        "value_date": value_date, "seq": seq,
                    }
                )  # fmt: skip
            elif kind == C_MEMBER:
                self.members.add(e[2])
            elif kind == C_FILE:
                _, _, bank, file_id, file_kind, applied, duplicates = e
                self.files.append(
                    {
                        "bank": bank, "file_id": file_id, "file_kind": file_kind, "applied": applied,
                        "duplicates": duplicates, "seq": seq,
                    }
                )  # fmt: skip
            elif kind == C_DAY_CLOSED:
                _, _, date, count, total = e
                self.days.append(
                    {"business_date": date, "seq": seq, "ts_ns": ts_ns, "member_count": count, "total_fen": total}
                )
            elif kind == C_BREAK:
                _, _, break_id, bank, sub, member, reason, bank_fen, ours, is_open = e
                if is_open:
                    self.new_breaks[break_id] = {
                        "break_id": break_id, "bank": bank, "sub_account": sub, "member": member, "reason": reason,
                        "bank_fen": bank_fen, "exchange_fen": ours, "is_open": True, "opened_seq": seq,
                        "last_seq": seq,
                    }  # fmt: skip
                else:
                    row = self.new_breaks.get(break_id)
                    if row is None:
                        row = self.break_updates.setdefault(break_id, {"b_break_id": break_id})
                    row["is_open"] = False
                    row["last_seq"] = seq

    def _hold(self, hold_id: int, seq: int, **changes: int) -> None:
        row = self.new_holds.get(hold_id)
        if row is None:
            row = self.hold_updates.setdefault(hold_id, {"b_hold_id": hold_id})
            row.setdefault("amount_fen", None)
            row.setdefault("state", HoldState.OPEN)
        row.update(changes)
        row["last_seq"] = seq

    def write(self, conn: Connection, core: Core) -> None:
        """Store the rows in the caller's transaction; balances are taken from
        `core`, which must stand at ``last_seq``."""
        clearing = core.clearing
        if self.transfers:
            conn.execute(_T.insert(), self.transfers)
        if self.members:
            members = sorted(self.members)
            conn.execute(_BAL.delete().where(_BAL.c.member.in_(members)))
            rows = []
            for member in members:
                bank, sub = clearing.members[member]
                a, m, esc = clearing.ledger.balances[member]
                rows.append(
                    {
                        "member": member, "bank": bank, "sub_account": sub, "available_fen": a,
                        "frozen_margin_fen": m, "frozen_escrow_fen": esc, "last_seq": self.last_seq,
                    }
                )  # fmt: skip
            conn.execute(_BAL.insert(), rows)
        if self.new_holds:
            conn.execute(_HOLD.insert(), list(self.new_holds.values()))
        _updates(conn, _HOLD, "hold_id", self.hold_updates)
        if self.new_deals:
            conn.execute(_DEAL.insert(), list(self.new_deals.values()))
        _updates(conn, _DEAL, "deal_id", self.deal_updates)
        for table, rows_ in ((_WD, self.withdrawals), (_DEP, self.deposits), (_FILE, self.files), (_DAY, self.days)):
            if rows_:
                conn.execute(table.insert(), rows_)
        if self.new_breaks:
            conn.execute(_BRK.insert(), list(self.new_breaks.values()))
        _updates(conn, _BRK, "break_id", self.break_updates)


def _updates(conn: Connection, table: Table, key: str, rows: dict[int, dict[str, Any]]) -> None:
    """Update rows written earlier: each dict holds b_<key> and the columns to set (a None amount stays)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows.values():
        values = {k: v for k, v in row.items() if v is not None}
        groups.setdefault(tuple(sorted(values)), []).append(values)
    for columns, group in groups.items():
        stmt = (
            update(table)
            .where(table.c[key] == bindparam(f"b_{key}"))
            .values({c: bindparam(c) for c in columns if c != f"b_{key}"})
        )
        conn.execute(stmt, group)


def projected_seq(conn: Connection) -> int:
    """The last seq whose clearing events are in the read models (0: none)."""
    value = conn.execute(select(_PROG.c.last_seq).where(_PROG.c.id == 1)).scalar()
    return int(value) if value is not None else 0


def _core_at(conn: Connection, seq: int) -> tuple[Core, int]:
    """A core as of a snapshot at or before `seq` (or empty) and the snapshot's seq."""
    rows = conn.execute(
        text("SELECT seq, state_hash, body FROM snapshots WHERE seq <= :s ORDER BY seq DESC"), {"s": seq}
    ).all()
    for snap_seq, state_hash, body in rows:
        try:
            return decode_snapshot(int(snap_seq), str(state_hash), bytes(body)), int(snap_seq)
        except ValueError:
            continue
    return Core(), 0


def catch_up_clearing(url: str, progress: Callable[[str], None] | None = None) -> int:
    """Project every journaled command not projected yet; returns the journal seq now projected."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            done = projected_seq(conn)
            last = int(conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM journal")).scalar() or 0)
            if done >= last:
                return done
            core, at = _core_at(conn, done)
            if progress:
                progress(f"projecting clearing events of commands {done + 1}..{last} (replaying from {at + 1})")
            projection = ClearingProjection()
            out: list[Event] = []
            apply = core.apply
            after = at
            while after < last:
                rows = conn.execute(
                    text(
                        "SELECT seq, ts_ns, kind, body, crc32 FROM journal WHERE seq > :a AND seq <= :b "
                        "ORDER BY seq LIMIT :n"
                    ),
                    {"a": after, "b": last, "n": READ_CHUNK_ROWS},
                ).all()
                assert rows, f"journal ends before seq {last}"
                for seq, ts_ns, kind, body, crc in rows:
                    assert seq == after + 1, f"journal gap at seq {after + 1}"
                    apply(decode(seq, kind, bytes(body), crc), seq, ts_ns, out)
                    if seq > done:
                        projection.add(out, seq, ts_ns)
                    out.clear()
                    after = seq
            projection.write(conn, core)
            if done:
                conn.execute(_PROG.update().where(_PROG.c.id == 1).values(last_seq=last))
            else:
                conn.execute(_PROG.insert().values(id=1, last_seq=last))
            return last
    finally:
        engine.dispose()
