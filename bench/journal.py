"""Sequencer + journal benchmark: commands sequenced, applied to the core,
journaled with their projection rows and committed before acknowledgement.

Three figures, on SQLite (default) or PostgreSQL (``--database-url``):

1. throughput: N commands submitted as fast as the producer can, from first
   submit to last acknowledgement (commands/s);
2. acknowledgement latency at a fixed offered rate (default 50,000/s) from
   a producer thread, open loop: each command's latency runs from the moment
   it was due, so a producer that falls behind is counted, not hidden;

   in both the producer submits up to SUBMISSION_COMMANDS commands at a time
   with ``Sequencer.submit_batch`` (as the gateway does with what it read in
   one pass), each command encoded for the journal in the producer's thread;
   every command is sequenced, applied to the whole core (matching and
   clearing), journaled with its projection rows and committed before its
   acknowledgement; snapshots every 100,000 commands as in production;
3. restart time of a 1,000,000-command journal, from the newest snapshot plus
   the tail (the snapshot sits 50,000 commands before the end, the average
   case of a snapshot every 100,000) and by full replay. To build that
   journal quickly the commands are applied in memory and only the journal
   and snapshot rows are written (restart never reads projections).

The benchmark never touches an existing database: SQLite files go to a new
folder beside the configured database file (so they share its disk) and
PostgreSQL runs in a database created on the given server and dropped
afterwards. The command mix is ``OrderFlow``: 70 % new orders (10 % IOC,
10 % DAY, 80 % GTC) around the reference price, so many trade, 20 % cancels,
10 % amends, from 50 members (registered and funded first) on the listed
instruments.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from exchange import (
    Core,
    OrderFlow,
    Sequencer,
    Settings,
    encode_snapshot,
    funding_commands,
    load_instruments,
    simulated_accounts,
    upgrade,
)
from exchange._codec import JournalRecordBody, encode_record
from exchange._db import make_engine
from exchange._gc import serving_process
from exchange._store import Batch, Store
from matching import CONTINUOUS, Event, Instrument, ListInstrument, SetTradingState
from matching._native import native_status

__all__ = ["Opening", "machine", "opening", "run"]

RESTART_SNAPSHOT_BEFORE_END = 50_000
SUBMISSION_COMMANDS = 64
"""Commands per submission at most (``Sequencer.submit_batch``), as a gateway submits the
requests it read from its connections in one pass."""
SEED = 20_240_601


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "build": native_status()[1],
    }


class Opening(NamedTuple):
    settings: Settings
    instruments: list[Instrument]
    say: Callable[[str], None]
    """`write`, or nothing with ``--json``."""
    backend: str
    """sqlite or postgresql"""
    info: dict[str, Any]
    """``machine()``"""


def opening(name: str, database_url: str | None, json_only: bool, write: Callable[[str], None]) -> Opening:
    """What a database benchmark starts with: the settings (`database_url` or the configured one),
    the listed instruments, its printer, and the machine, named in its first line."""
    settings = Settings(database_url=database_url) if database_url else Settings()
    say: Callable[[str], None] = (lambda _text: None) if json_only else write
    backend = "sqlite" if settings.database_url.startswith("sqlite") else "postgresql"
    info = machine()
    say(f"{name} benchmark on {backend}; {info['cpus']} cpus, {info['cpu_model']}, Python {info['python']}")
    return Opening(settings, load_instruments(settings.instruments_file), say, backend, info)


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A new, empty database next to / on the server of `database_url`, removed afterwards."""
    from sqlalchemy.engine import make_url

    from exchange._db import make_engine, sqlite_path

    url = make_url(database_url)
    tag = f"bulkex_bench_{uuid.uuid4().hex[:10]}"
    if url.get_backend_name() == "sqlite":
        folder = sqlite_path(database_url).parent / tag
        folder.mkdir(parents=True)
        try:
            yield f"sqlite:///{folder / 'bench.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    admin = make_engine(database_url).execution_options(isolation_level="AUTOCOMMIT")
    from sqlalchemy import text

    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{tag}"'))
    try:
        yield url.set(database=tag).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _serving_process() -> Iterator[None]:
    """This process tuned as the writer process of ``bulkex serve`` is (its collector and switch
    interval, ``exchange._writer.writer_main``), for the time of a measurement."""
    enabled, threshold, interval = gc.isenabled(), gc.get_threshold(), sys.getswitchinterval()
    serving_process()
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
        gc.unfreeze()
        if enabled:
            gc.enable()


def _opening(instruments: list[Instrument]) -> list[Any]:
    """List and open the instruments, register and fund the simulated members. The instruments
    are listed without the receipt rule: this measures the journal under the order flow (a
    million orders would need more warehouse receipts than the simulated members hold);
    `bench delivery` measures selling against receipts."""
    return (
        [ListInstrument(dataclasses.replace(i, receipts_required=False)) for i in instruments]
        + [SetTradingState(i.symbol, CONTINUOUS) for i in instruments]
        + funding_commands(simulated_accounts(50))
    )


def _percentile(sorted_values: list[int], fraction: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def _count_trades(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT COUNT(*) FROM trades").scalar_one())
    finally:
        engine.dispose()


def measure_throughput(
    url: str, instruments: list[Instrument], commands: int, chunk: int, committer_process: bool = True
) -> dict[str, Any]:
    """Submit `commands` as fast as the sequencer takes them, `chunk` commands per submission
    (``submit_batch``, as a gateway submits what it read in one frame batch); time from the
    first submission to the last acknowledgement."""
    sequencer = Sequencer(
        url, snapshot_every_commands=100_000, queue_max_commands=commands + 1, committer_process=committer_process
    )
    sequencer.open()
    try:
        sequencer.execute(_opening(instruments))
        flow = OrderFlow(instruments, seed=SEED, first_seq=sequencer.last_seq + 1)
        stream = flow.take(commands)
        chunks = [stream[i : i + chunk] for i in range(0, commands, chunk)]
        submit = sequencer.submit_batch
        sequencer.start()
        started = time.perf_counter()
        tickets = [submit(group) for group in chunks]
        acks = tickets[-1].result()
        elapsed = time.perf_counter() - started
        assert acks[-1].seq == sequencer.last_seq
        assert sequencer.committed_seq == sequencer.last_seq
        assert all(ticket.done() for ticket in tickets)
    finally:
        sequencer.close()
    return {
        "commands": commands,
        "commands_per_submission": chunk,
        "seconds": elapsed,
        "commands_per_s": commands / elapsed,
        "trades": _count_trades(url),
    }


def measure_latency(
    url: str, instruments: list[Instrument], rate: int, seconds: float, chunk: int, committer_process: bool = True
) -> dict[str, Any]:
    """Open loop at `rate` commands/s: every 0.2 ms the producer submits the commands that have
    come due (at most `chunk` per submission). A command's latency runs from its due time to
    the acknowledgement of its batch, so a producer or writer that falls behind is counted."""
    count = int(rate * seconds)
    sequencer = Sequencer(
        url, snapshot_every_commands=100_000, queue_max_commands=max(count, 1) + 1, committer_process=committer_process
    )
    sequencer.open()
    try:
        sequencer.execute(_opening(instruments))
        first_seq = sequencer.last_seq + 1
        stream = OrderFlow(instruments, seed=SEED + 1, first_seq=first_seq).take(count)
        batch_acks: list[tuple[int, int]] = []  # (last seq of a batch, ack time ns)
        clock_ns = time.perf_counter_ns

        def record(pairs: Any) -> None:
            batch_acks.append((pairs[-1][1].seq, clock_ns()))

        sequencer.listeners.append(record)
        sequencer.start()
        start_ns = clock_ns()
        interval_ns = 1_000_000_000 / rate
        submitted = 0
        submit = sequencer.submit_batch
        last: Any = None
        while submitted < count:
            due = min(count, int((clock_ns() - start_ns) / interval_ns) + 1)
            while submitted < due:
                end = min(due, submitted + chunk)
                last = submit(stream[submitted:end])
                submitted = end
            time.sleep(0.0002)
        last.result()
        end_ns = clock_ns()
    finally:
        sequencer.close()
    latencies: list[int] = []
    index = 0
    for last_seq, ack_ns in batch_acks:
        while index < count and first_seq + index <= last_seq:
            latencies.append(ack_ns - (start_ns + int(index * interval_ns)))
            index += 1
    assert index == count, (index, count)
    latencies.sort()
    return {
        "offered_per_s": rate,
        "achieved_per_s": count / ((end_ns - start_ns) / 1e9),
        "commands": count,
        "batches": len(batch_acks),
        "latency_us_p50": _percentile(latencies, 0.50) // 1000,
        "latency_us_p99": _percentile(latencies, 0.99) // 1000,
        "latency_us_max": latencies[-1] // 1000,
    }


def build_journal(url: str, instruments: list[Instrument], commands: int) -> tuple[int, str]:
    """A journal of `commands` commands with a snapshot RESTART_SNAPSHOT_BEFORE_END before its end;
    returns (snapshot seq, final state hash)."""
    upgrade(url)
    store = Store(url)
    store.lock()
    store.connect()
    try:
        core = Core()
        opening = _opening(instruments)
        flow = OrderFlow(instruments, seed=SEED + 2, first_seq=len(opening) + 1)
        snapshot_at = max(1, commands - RESTART_SNAPSHOT_BEFORE_END)
        seq = 0
        records: list[JournalRecordBody] = []
        out: list[Event] = []
        ts_ns = time.time_ns()
        snapshot_seq = 0
        while seq < commands:
            command = opening[seq] if seq < len(opening) else flow.next_command()
            seq += 1
            core.apply(command, seq, ts_ns, out)
            out.clear()
            records.append(encode_record(command))
            snapshot = None
            if seq == snapshot_at:
                state_hash, compressed = encode_snapshot(core)
                snapshot = (seq, ts_ns, state_hash, compressed)
                snapshot_seq = seq
            if len(records) >= 20_000 or snapshot is not None or seq == commands:
                store.write(Batch(seq - len(records) + 1, ts_ns, records, [], [], [], snapshot))
                records = []
        return snapshot_seq, core.state_hash()
    finally:
        store.close()


def measure_restart(url: str, instruments: list[Instrument], commands: int) -> dict[str, Any]:
    started = time.perf_counter()
    snapshot_seq, state_hash = build_journal(url, instruments, commands)
    build_s = time.perf_counter() - started
    result: dict[str, Any] = {"commands": commands, "snapshot_seq": snapshot_seq, "build_s": build_s}
    for label, use_snapshots in (("snapshot", True), ("full_replay", False)):
        started = time.perf_counter()
        sequencer = Sequencer(url, use_snapshots=use_snapshots)
        report = sequencer.open()
        result[f"{label}_s"] = time.perf_counter() - started
        sequencer.close()
        assert report.last_seq == commands, report
        assert report.state_hash == state_hash, f"{label}: restart hash differs from the live hash"
        result[f"{label}_replayed"] = report.replayed_commands
    return result


def run(
    database_url: str | None = None,
    json_only: bool = False,
    commands: int = 200_000,
    rate: int = 50_000,
    latency_seconds: float = 5.0,
    restart_commands: int = 1_000_000,
    write: Callable[[str], None] = print,
    chunk: int = SUBMISSION_COMMANDS,
) -> dict[str, Any]:
    settings, instruments, say, backend, info = opening("journal", database_url, json_only, write)
    result: dict[str, Any] = {"benchmark": "journal", "database": backend, **info}
    if commands:
        with scratch_database(settings.database_url) as url, _serving_process():
            t = measure_throughput(url, instruments, commands, chunk, settings.committer_process)
        say(f"throughput: {t['commands']:,} commands in {t['seconds']:.2f} s = {t['commands_per_s']:,.0f} commands/s "
            f"committed before acknowledgement ({t['trades']:,} trades)")  # fmt: skip
        result["throughput"] = t
    if rate and latency_seconds:
        with scratch_database(settings.database_url) as url, _serving_process():
            lat = measure_latency(url, instruments, rate, latency_seconds, chunk, settings.committer_process)
        say(f"latency at {rate:,}/s offered ({lat['achieved_per_s']:,.0f}/s achieved, {lat['batches']} batches): "
            f"p50 {lat['latency_us_p50'] / 1000:.2f} ms, p99 {lat['latency_us_p99'] / 1000:.2f} ms, "
            f"max {lat['latency_us_max'] / 1000:.2f} ms")  # fmt: skip
        result["latency"] = lat
    if restart_commands:
        with scratch_database(settings.database_url) as url:
            r = measure_restart(url, instruments, restart_commands)
        say(f"restart of a {r['commands']:,}-command journal: {r['snapshot_s']:.2f} s from the snapshot at seq "
            f"{r['snapshot_seq']:,} + {r['snapshot_replayed']:,} commands, {r['full_replay_s']:.2f} s by full replay "
            f"(journal built in {r['build_s']:.1f} s)")  # fmt: skip
        result["restart"] = r
    write(orjson.dumps(result).decode())
    return result
