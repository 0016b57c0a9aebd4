"""Database faults: the writer on a PostgreSQL server of its own that is killed and brought back.

    bulkex torture dbfault --rounds 3 --seed 7

``ThrowawayPostgres`` runs ``initdb`` and ``pg_ctl`` (from /usr/lib/postgresql/*/bin) in a
temporary directory, on a free loopback port, as the ``postgres`` user when started as root
(initdb refuses root), and removes everything at the end. The shared development server is
never touched.

Each round: a sequencer on that server under a steady flow of orders and deposits (a submitter
thread, up to a few hundred commands in flight), then the server is stopped with
``pg_ctl stop -m immediate`` (every backend killed, no checkpoint: a crash) at a random moment,
left down for a while, and started again. Checked:

1. the writer stops: the failed commit stops it (``running`` turns false), every command in
   flight fails with WriterStopped, new submissions are refused at once, and no command is
   acknowledged after the writer stopped;
2. nothing unacknowledged was acknowledged: every acknowledged seq is in the journal with its
   kind once the server is back (a commit that succeeded but whose answer was lost may be
   journaled without an ack: that is allowed, and answered as a duplicate when sent again);
3. opening while the server is down fails with a clear error (no half-open writer);
4. restart rebuilds cleanly (the design: "a failed commit stops the writer; restart rebuilds
   from snapshot + journal"): the new writer recovers, the state from the snapshot equals a
   full replay, the core's invariants hold, and it goes on taking commands.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from exchange import (
    OrderFlow,
    Sequencer,
    Settings,
    WriterStopped,
    decode,
    funding_commands,
    load_instruments,
    make_engine,
    simulated_accounts,
)
from matching import CONTINUOUS, SetTradingState

__all__ = ["DbFaultFailure", "DbFaultReport", "PostgresMissing", "ThrowawayPostgres", "db_faults", "postgres_bin"]


class PostgresMissing(RuntimeError):
    """No initdb/pg_ctl on this machine."""


class DbFaultFailure(AssertionError):
    """A check failed; the message names the seed and the round."""


def postgres_bin() -> str:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl (PostgresMissing if none)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for folder in candidates:
        if os.path.exists(os.path.join(folder, "initdb")) and os.path.exists(os.path.join(folder, "pg_ctl")):
            return folder
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(found)
    raise PostgresMissing("initdb and pg_ctl not found under /usr/lib/postgresql/*/bin or on PATH")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL cluster: ``start``, ``crash`` (immediate stop), ``stop``, ``remove``."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.folder = tempfile.mkdtemp(prefix="bulkex-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, os.path.join(self.bin, program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()[-1000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        log = os.path.join(self.folder, "server.log")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.data, "-l", log, "-o", options)

    def crash(self) -> None:
        """Kill the server and every backend now (no checkpoint), as a crash would."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", self.data)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", self.data)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove()


@dataclass
class DbFaultReport:
    seed: int
    rounds: int = 0
    acked: int = 0
    failed_in_flight: int = 0
    refused_after_stop: int = 0
    journaled_unacked: int = 0
    down_s: float = 0.0
    open_refused: list[str] = field(default_factory=list)
    last_seq: int = 0

    def lines(self) -> list[str]:
        return [
            f"database faults, seed {self.seed}: {self.rounds} immediate stops of a private PostgreSQL "
            f"({self.down_s:.1f} s down in all), journal at seq {self.last_seq}",
            f"  {self.acked} commands acknowledged, all journaled; {self.failed_in_flight} in flight failed with "
            f"WriterStopped, {self.refused_after_stop} refused at submit after the stop, none acknowledged after it",
            f"  {self.journaled_unacked} commands committed whose answer was lost with the connection (allowed)",
            f"  opening while the server was down: {self.open_refused[0] if self.open_refused else 'not tried'}",
        ]


@contextlib.contextmanager
def _writer(url: str) -> Iterator[Sequencer]:
    sequencer = Sequencer(url, snapshot_every_commands=2_000, batch_max_commands=256)
    sequencer.open()
    try:
        yield sequencer
    finally:
        sequencer.close()


class _Load:
    """A submitter thread: orders (and a deposit per wave) until the writer refuses."""

    def __init__(self, sequencer: Sequencer, seed: int, prefix: str) -> None:
        self.sequencer = sequencer
        instruments = load_instruments(Settings().instruments_file)
        self.flow = OrderFlow(instruments, seed=seed, first_seq=sequencer.last_seq + 1, client_prefix=prefix)
        self.prefix = prefix
        self.acked: dict[int, str] = {}
        self.acked_after_stop = 0
        self.failed = 0
        self.refused = 0
        self.stopped_seen = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_done(self, kind: str) -> Callable[[Any], None]:
        def done(ticket: Any) -> None:
            with self.lock:
                if ticket.exception() is not None:
                    self.failed += 1
                    return
                if self.stopped_seen.is_set():
                    self.acked_after_stop += 1
                self.acked[ticket.result().seq] = kind

        return done

    def _run(self) -> None:
        sequencer = self.sequencer
        wave = 0
        waves: list[Any] = []
        while True:
            wave += 1
            commands = self.flow.take(40)
            try:
                tickets = sequencer.submit_many(commands)
            except WriterStopped:
                self.refused += 1
                if self.refused >= 5:
                    return
                time.sleep(0.01)
                continue
            for command, ticket in zip(commands, tickets, strict=True):
                ticket.add_done_callback(self._on_done(type(command).KIND))
            if not sequencer.running:
                self.stopped_seen.set()
            waves.append(tickets[-1])
            if len(waves) >= 4:  # up to four waves in flight: batches commit while others queue
                with contextlib.suppress(WriterStopped):
                    waves.pop(0).result(timeout=30)
            if not sequencer.running:
                self.stopped_seen.set()
            # the flow predicts order ids from seqs: keep it the only submitter, pace it
            time.sleep(0.002)


def _journal(url: str) -> dict[int, tuple[str, bytes, int]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT seq, kind, body, crc32 FROM journal"))
            return {int(r[0]): (str(r[1]), bytes(r[2]), int(r[3])) for r in rows}
    finally:
        engine.dispose()


def db_faults(rounds: int, seed: int, log: Callable[[str], None] = print) -> DbFaultReport:
    """Run the rounds on a private PostgreSQL; raise DbFaultFailure on a failed check."""
    if not (1 <= rounds <= 1_000):
        raise ValueError(f"rounds must be 1..1000, not {rounds}")
    rnd = random.Random(seed)
    report = DbFaultReport(seed)
    with ThrowawayPostgres() as server:
        url = server.url
        with _writer(url) as sequencer:
            sequencer.list_on_first_start(load_instruments(Settings().instruments_file))
            opening = [SetTradingState(symbol, CONTINUOUS) for symbol in sequencer.core.trading_states()]
            sequencer.execute(opening + funding_commands(simulated_accounts(50)))
        for number in range(rounds):

            def fail(message: str, number: int = number) -> DbFaultFailure:
                return DbFaultFailure(f"seed {seed}, round {number}: {message}")

            with _writer(url) as sequencer:
                report_before = sequencer.recovery
                assert report_before is not None
                sequencer.start()
                load = _Load(sequencer, rnd.randrange(1 << 30), f"r{number}-")
                load.thread.start()
                time.sleep(rnd.uniform(0.3, 1.5))
                server.crash()
                down_at = time.monotonic()
                load.thread.join(timeout=60)
                if load.thread.is_alive():
                    raise fail("the submitter still runs: the writer never refused after the database died")
                if sequencer.running:
                    raise fail("the writer still runs after its database was killed")
                if load.acked_after_stop:
                    raise fail(f"{load.acked_after_stop} commands acknowledged after the writer stopped")
                try:
                    sequencer.submit(opening[0])
                except WriterStopped:
                    pass
                else:
                    raise fail("a stopped writer took a new command")
                try:  # a second writer while the database is down: refused with an error, nothing half-open
                    with _writer(url):
                        raise fail("a writer opened on a database that is down")
                except DbFaultFailure:
                    raise
                except Exception as exc:
                    report.open_refused = [f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"]
                time.sleep(rnd.uniform(0.2, 1.0))
                server.start()
                report.down_s += time.monotonic() - down_at
            journal = _journal(url)
            for seq, (kind, body, crc) in journal.items():
                decode(seq, kind, body, crc)  # JournalCorrupt on a torn or damaged record
            for seq, kind in load.acked.items():
                if journal.get(seq, ("",))[0] != kind:
                    raise fail(f"acknowledged {kind} at seq {seq} is not in the journal")
            mine = [
                s
                for s, row in journal.items()
                if s > report_before.last_seq and row[0] in ("new_order", "cancel_order")
            ]
            report.journaled_unacked += sum(1 for s in mine if s not in load.acked)
            with _writer(url) as recovered:  # restart: snapshot + journal
                recovered.core.check_invariants()
                live = recovered.state_hash()
                last_seq = recovered.last_seq
            with Sequencer(url, use_snapshots=False) as replayed:
                if replayed.last_seq != last_seq or replayed.state_hash() != live:
                    raise fail("recovery from the snapshot differs from a full replay")
            with _writer(url) as resumed:  # and it goes on taking commands
                resumed.start()
                resumed.submit(opening[0]).result(timeout=30)
            report.acked += len(load.acked)
            report.failed_in_flight += load.failed
            report.refused_after_stop += load.refused
            report.rounds += 1
            log(
                f"round {number}: {len(load.acked)} acknowledged, {load.failed} failed in flight, "
                f"{load.refused} refused at submit, database down and back"
            )
        report.last_seq = max(_journal(url), default=0)
    return report
