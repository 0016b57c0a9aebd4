"""Recovery: the core's state from the newest valid snapshot plus the
journal's tail.

Snapshots are tried newest first; one whose body does not decompress, does
not match its state hash or does not load is skipped (and reported), and
the next older one is tried, down to a full replay from seq 1. The tail
must continue the snapshot's seq without a gap (JournalGap names the missing
seq) and every record must pass its checksum and decode (JournalCorrupt
names the seq).
"""

from __future__ import annotations

import gc
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from exchange._codec import decode
from exchange._core import Core, hash_state
from exchange._errors import JournalGap
from exchange._store import Store
from matching import Event

__all__ = ["RecoveryReport", "decode_snapshot", "encode_snapshot", "recover"]


@dataclass(slots=True)
class RecoveryReport:
    snapshot_seq: int = 0
    """Seq of the snapshot used (0: full replay)."""
    replayed_commands: int = 0
    last_seq: int = 0
    last_ts_ns: int = 0
    state_hash: str = ""
    elapsed_s: float = 0.0
    skipped_snapshots: list[str] = field(default_factory=list)
    """Why each newer snapshot was not used."""

    def summary(self) -> str:
        source = f"snapshot at seq {self.snapshot_seq}" if self.snapshot_seq else "the journal from seq 1"
        text = (
            f"recovered {self.last_seq} commands ({self.replayed_commands} replayed from {source}) "
            f"in {self.elapsed_s:.2f} s, state hash {self.state_hash}"
        )
        for reason in self.skipped_snapshots:
            text += f"; skipped {reason}"
        return text


def encode_snapshot(core: Core) -> tuple[str, bytes]:
    """(state_hash, zlib-compressed canonical JSON)."""
    body = core.state_bytes()
    return hash_state(body), zlib.compress(body, 1)


def decode_snapshot(seq: int, state_hash: str, compressed: bytes) -> Core:
    """The core of a snapshot; ValueError saying why when it is damaged."""
    try:
        body = zlib.decompress(compressed)
    except zlib.error as exc:
        raise ValueError(f"snapshot at seq {seq} does not decompress: {exc}") from None
    if hash_state(body) != state_hash:
        raise ValueError(f"snapshot at seq {seq} does not match its state hash")
    try:
        state: dict[str, Any] = orjson.loads(body)
        core = Core.from_state(state)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"snapshot at seq {seq} does not load: {exc!r}") from None
    return core


def recover(store: Store, use_snapshots: bool = True) -> tuple[Core, RecoveryReport]:
    """The core as of the journal's last record, and how it was rebuilt.

    The cyclic garbage collector is paused while the state is rebuilt (it
    would walk millions of live orders and ids again and again, a quarter of
    the replay time) and the rebuilt state is then frozen out of its sight
    (``gc.freeze``): the core holds no reference cycles to collect.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _recover(store, use_snapshots)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _recover(store: Store, use_snapshots: bool) -> tuple[Core, RecoveryReport]:
    started = time.perf_counter()
    report = RecoveryReport()
    last_seq = store.last_seq()
    core: Core | None = None
    if use_snapshots:
        for seq in store.snapshot_seqs():
            if seq > last_seq:
                report.skipped_snapshots.append(f"snapshot at seq {seq} lies beyond the journal's end ({last_seq})")
                continue
            snap_seq, snap_ts, state_hash, body = store.snapshot(seq)
            try:
                core = decode_snapshot(snap_seq, state_hash, body)
            except ValueError as exc:
                report.skipped_snapshots.append(str(exc))
                continue
            report.snapshot_seq = snap_seq
            report.last_ts_ns = snap_ts
            break
    if core is None:
        core = Core()
    expected = report.snapshot_seq + 1
    last_ts = report.last_ts_ns
    out: list[Event] = []
    apply = core.apply
    for seq, ts_ns, kind, body, crc in store.journal(report.snapshot_seq):
        if seq != expected:
            raise JournalGap(expected, seq)
        apply(decode(seq, kind, body, crc), seq, ts_ns, out)
        out.clear()
        expected += 1
        last_ts = ts_ns
    if expected - 1 != last_seq:
        raise JournalGap(expected, None)
    report.replayed_commands = expected - 1 - report.snapshot_seq
    report.last_seq = expected - 1
    report.last_ts_ns = last_ts
    report.state_hash = core.state_hash()
    report.elapsed_s = time.perf_counter() - started
    return core, report
