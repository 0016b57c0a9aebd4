"""The journal's write path alone: ``bulkex bench store [--json]``.

What the sequencer's committer waits for, without the sequencer's threads: the
batches of the journal benchmark's order flow (``bench.journal``: the same
instruments, members and seeded ``OrderFlow``) are applied to a core in memory
and turned into rows exactly as the sequencer's batch does (journal records,
``BatchProjection`` with the warehouse events handed on, ``WarehouseRows``);
then, timed, each is written through ``Store.prepare`` and ``Store.execute`` in
a transaction of its own into a fresh database, as the committer process writes
them (every PostgreSQL batch through COPY, ``text_batch_rows=0``; SQLite rows through
``executemany``, ``sqlite_row_statements``).

Figures per command: the time to prepare the statements (Python), the time to
execute and commit them, the writing process's CPU, and, for a PostgreSQL
server on this machine, the server process's CPU read from ``/proc``: the
database's own work per command, the least noisy figure of the write path
(``null`` on SQLite, which runs in the writing process, or for a server
elsewhere). The databases are scratch ones (``bench.journal.scratch_database``),
removed afterwards.

Prints the figures, then one JSON line (the last line of output).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.journal import SEED, _opening, opening, scratch_database
from exchange import Core, OrderFlow, upgrade
from exchange._codec import encode_record
from exchange._projections import BatchProjection
from exchange._store import Batch, Store
from exchange._warehouse_projection import WAREHOUSE_EVENT_KINDS, WarehouseRows
from matching import Event, Instrument

__all__ = ["build_batches", "run"]

TS_NS = 1_765_000_000_000_000_000
"""The batches' timestamp (the core reads no clock; a fixed one keeps runs identical)."""


def build_batches(instruments: list[Instrument], batches: int, batch_commands: int) -> list[Batch]:
    """The opening batch, then `batches` batches of `batch_commands` commands of the flow, with
    their rows as the sequencer makes them."""
    assert batches >= 0, batches
    assert batch_commands > 0, batch_commands
    core = Core()
    opening = _opening(instruments)
    flow = OrderFlow(instruments, seed=SEED + 1, first_seq=len(opening) + 1)
    out: list[Batch] = []
    seq = 0
    for index in range(batches + 1):
        commands = opening if index == 0 else flow.take(batch_commands)
        records = [encode_record(command) for command in commands]
        first_seq = seq + 1
        outs: list[list[Event]] = []
        for command in commands:
            seq += 1
            events: list[Event] = []
            core.apply(command, seq, TS_NS, events)
            outs.append(events)
        projection = BatchProjection()
        warehouse_events: list[Event] = []
        projection.add_all(outs, TS_NS, WAREHOUSE_EVENT_KINDS, warehouse_events)
        warehouse = WarehouseRows()
        if warehouse_events:
            warehouse.add_all((warehouse_events,), core.warehouse)
        out.append(
            Batch(first_seq, TS_NS, records, projection.order_inserts(), projection.order_updates(),
                  projection.trades, None, warehouse if warehouse else None)
        )  # fmt: skip
    return out


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine (None when it is not here)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, batches: list[Batch]) -> dict[str, Any]:
    """Write the batches (the first, the opening, untimed) one transaction each."""
    upgrade(url)
    store = Store(url, text_batch_rows=0, sqlite_row_statements=True)  # as the committer process writes
    store.lock()
    store.connect()
    try:
        store.write(batches[0])
        server_pid = store.server_pid()
        timed = batches[1:]
        commands = sum(len(b.records) for b in timed)
        assert commands > 0, "no batch to time"
        prepare_ns = execute_ns = 0
        clock = time.perf_counter_ns
        server_before = _process_cpu_s(server_pid) if server_pid else None
        cpu_before = time.process_time()
        for batch in timed:
            started = clock()
            prepared = store.prepare(batch)
            prepared_at = clock()
            store.execute(prepared)
            prepare_ns += prepared_at - started
            execute_ns += clock() - prepared_at
        client_cpu_s = time.process_time() - cpu_before
        server_after = _process_cpu_s(server_pid) if server_pid else None
        assert store.last_seq() == batches[-1].last_seq
    finally:
        store.close()
    server_us = None
    if server_before is not None and server_after is not None:
        server_us = (server_after - server_before) / commands * 1e6
    rows = {
        "order_inserts": sum(len(b.order_inserts) for b in timed),
        "order_updates": sum(len(b.order_updates) for b in timed),
        "trades": sum(len(b.trades) for b in timed),
    }
    return {
        "commands": commands,
        "batches": len(timed),
        "rows": rows,
        "prepare_us_per_command": prepare_ns / commands / 1000,
        "execute_us_per_command": execute_ns / commands / 1000,
        "client_cpu_us_per_command": client_cpu_s / commands * 1e6,
        "server_cpu_us_per_command": server_us,
    }


def run(
    database_url: str | None = None,
    json_only: bool = False,
    batches: int = 1_000,
    batch_commands: int = 200,
    write: Callable[[str], None] = print,
) -> dict[str, Any]:
    settings, instruments, say, backend, info = opening("store", database_url, json_only, write)
    built = build_batches(instruments, batches, batch_commands)
    with scratch_database(settings.database_url) as url:
        figures = measure(url, built)
    server = figures["server_cpu_us_per_command"]
    say(f"{figures['commands']:,} commands in {figures['batches']:,} batches ({figures['rows']}): "
        f"prepare {figures['prepare_us_per_command']:.2f} us, execute and commit "
        f"{figures['execute_us_per_command']:.2f} us a command; CPU a command: writer "
        f"{figures['client_cpu_us_per_command']:.2f} us, database server "
        + ("not measured (SQLite runs in the writer)" if server is None else f"{server:.2f} us"))  # fmt: skip
    result: dict[str, Any] = {"benchmark": "store", "database": backend, "batch_commands": batch_commands, **info,
                              **figures}  # fmt: skip
    write(orjson.dumps(result).decode())
    return result
