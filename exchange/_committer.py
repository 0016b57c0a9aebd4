"""The committer process: the writer's transactions, written by a process of their own.

    sequencer's process                             committer process
    ───────────────────                             ─────────────────
    thread bulkex-sequencer: apply, project
    thread bulkex-committer: batch rows ──(marshal)──► bulkex-prepare: Store.prepare
      (at most IN_FLIGHT_MAX unanswered)                main thread: Store.execute, one
    thread bulkex-acknowledger ◄──── "committed" ──────  transaction per batch, in order
      acknowledges, in order
    snapshot of a committed seq ────────────────────► bulkex-snapshot-writer (own connection)

Why: building a batch's statements (COPY text for PostgreSQL, JSON for
SQLite) and SQLite's own work run in Python's interpreter; in the writer's
process they took turns on one interpreter lock with the sequencing thread
(the core), and each return from the database waited for that lock. In a
process of its own the committer formats and writes while the sequencer
applies the next batch, on the other core, and prepares the next batch's
statements while the database runs this one's (docs/architecture.md, "The
committer process"). What travels is the ``Batch`` as plain values
(``marshal``); the answer is one byte, or the exception the store raised.

Nothing changes for durability: the sequencer acknowledges a batch only
after the committer process answers that its transaction committed. The
writer lock stays with the sequencer's process; the data connection, and on
PostgreSQL the data lock that goes with it (``_store.DATA_LOCK_KEY``), move
to the committer process, which dies with the thread that started it (the
sequencing thread, ``PR_SET_PDEATHSIG``): a killed writer leaves no
committer behind to write after it. On SQLite the committer holds the
writer's lock file too (inherited), so the lock is free only when both
processes are gone.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from exchange._child import child_environment, die_with_parent, exit_status, portable, reap
from exchange._store import Batch, Prepared, SnapshotRecord, Store
from exchange._warehouse_projection import WarehouseRows

__all__ = ["SQLITE_LOCK_WAIT_MS", "START_TIMEOUT_S", "CommitterProcess", "committer_main", "pack", "unpack"]

log = logging.getLogger("bulkex.committer")

START_TIMEOUT_S = 60.0
"""How long the committer process may take to start and connect."""
SQLITE_LOCK_WAIT_MS = 600_000
"""SQLite: how long the committer process's connections wait for the one write lock (the
connections' default is 5 s). The batches' connection and the snapshot writer's take turns, and a
snapshot of a large state may hold the lock for seconds: a batch waits for it rather than fail.
No other writer can hold it long: the writer lock keeps out every other sequencer."""
STOP_TIMEOUT_S = 30.0
"""How long the committer process may take to finish after its pipe closes."""

_MARSHAL = b"M"
_PICKLED = b"P"
_SNAPSHOT = b"N"
_COMMITTED = b"K"
_READY = b"R"
_FAILED = b"E"


def pack(batch: Batch) -> bytes:
    """A batch as bytes: marshal data when its values are plain (they are: ints, strings,
    bytes, None, tuples, lists, dicts), pickled otherwise."""
    w = batch.warehouse
    values = (
        batch.first_seq, batch.ts_ns, batch.records, batch.order_inserts, batch.order_updates, batch.trades,
        batch.snapshot, (w.receipts, w.deliveries, w.stock) if w else None,
    )  # fmt: skip
    try:
        return _MARSHAL + marshal.dumps(values)
    except ValueError:
        return _PICKLED + pickle.dumps(values, pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Batch:
    """The batch ``pack`` made (from this exchange's own process, over a private socket pair)."""
    body = memoryview(data)[1:]
    values = marshal.loads(body) if data[:1] == _MARSHAL else pickle.loads(body)  # noqa: S301, S302
    first_seq, ts_ns, records, order_inserts, order_updates, trades, snapshot, warehouse = values
    rows = None
    if warehouse is not None:
        rows = WarehouseRows()
        rows.receipts, rows.deliveries, rows.stock = warehouse
    return Batch(first_seq, ts_ns, records, order_inserts, order_updates, trades, snapshot, rows)


def _failed(exc: BaseException) -> bytes:
    """The answer for a failure: the exception, pickled (``_child.portable``)."""
    return _FAILED + pickle.dumps(portable(exc), pickle.HIGHEST_PROTOCOL)


class CommitterProcess:
    """``Store.write`` in a child process: ``start``, ``write`` (returns once committed),
    ``close``. Start it from the thread that lives as long as the writer (the sequencing
    thread): the process is killed when that thread ends."""

    def __init__(self, database_url: str, commit_timeout_ms: int, lock_fd: int | None = None) -> None:
        self.database_url = database_url
        self.commit_timeout_ms = commit_timeout_ms
        self.lock_fd = lock_fd
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the process; returns when it is connected (and holds the data lock)."""
        assert self._process is None, "already started"
        parent, child = socket.socketpair()
        fds = (child.fileno(),) if self.lock_fd is None else (child.fileno(), self.lock_fd)
        env = child_environment()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from exchange._committer import committer_main; committer_main()",
                 str(child.fileno()), str(os.getpid()), str(self.commit_timeout_ms), self.database_url],
                pass_fds=fds,
                env=env,
            )  # fmt: skip
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise TimeoutError(f"the committer process did not start in {START_TIMEOUT_S:.0f} s")
            reply = self._recv()
            if reply[:1] != _READY:
                raise pickle.loads(memoryview(reply)[1:])  # noqa: S301
        except BaseException:
            self.close()
            raise

    def write(self, batch: Batch) -> None:
        """Write the batch in one transaction; returns once it is committed, raises what the
        store raised (the batch is then not committed, or its outcome unknown: see Store).
        Only with no batch in flight."""
        self.send(batch)
        self.receive()

    def send(self, batch: Batch) -> None:
        """Hand the batch over; ``receive`` tells how its transaction ended. Batches are
        written one after another in the order sent; while one is written the next is
        prepared. After a failure the process writes nothing more."""
        self.send_packed(pack(batch))

    def send_packed(self, data: bytes) -> None:
        """``send`` of a batch already packed (``pack``)."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the committer process is not running")
        try:
            conn.send_bytes(data)
        except OSError:
            raise self._died() from None

    def abort(self) -> None:
        """Shut the pipe down both ways: a ``receive`` waiting returns at once (the process
        died), and the process, seeing the end of its input, writes nothing more."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                dup = socket.socket(fileno=os.dup(conn.fileno()))
                try:
                    dup.shutdown(socket.SHUT_RDWR)
                finally:
                    dup.close()

    def send_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Hand over a snapshot whose seq is committed: written in a transaction of its own, on a
        connection of its own, beside the batches (a snapshot of a large state written with a
        batch held every batch behind it for as long as the database took to store it, and on
        SQLite the batch after it also paid for checkpointing it out of the WAL). Not answered; a
        snapshot that cannot be written is logged (the journal holds everything, a snapshot only
        shortens a restart). Written before the process exits. SQLite has one writer at a time:
        there the batches wait for the snapshot's transaction (SQLITE_LOCK_WAIT_MS), as they
        did when it was written with one of them."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the committer process is not running")
        try:
            conn.send_bytes(_SNAPSHOT + marshal.dumps(snapshot))
        except OSError:
            raise self._died() from None

    def receive(self) -> None:
        """Wait for the outcome of the oldest batch sent and not yet received: returns when it
        is committed, raises what the store raised."""
        reply = self._recv()
        if reply != _COMMITTED:
            raise pickle.loads(memoryview(reply)[1:])  # noqa: S301

    def _recv(self) -> bytes:
        conn = self._conn
        assert conn is not None
        try:
            return conn.recv_bytes()
        except (EOFError, OSError):
            raise self._died() from None

    def _died(self) -> RuntimeError:
        return RuntimeError(f"the committer process exited (status {exit_status(self._process)})")

    def close(self) -> None:
        """Close the pipe: the process closes its connection (releasing the data lock) and exits."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            conn.close()
        if process is not None:
            reap(process, STOP_TIMEOUT_S)


# ------------------------------------------------------------------ the child


def committer_main() -> None:  # pragma: no cover - runs in the committer process (tests drive it end to end)
    """``python -c '...committer_main()' FD PARENT_PID COMMIT_TIMEOUT_MS DATABASE_URL``."""
    fd, parent_pid, commit_timeout_ms, url = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    die_with_parent(parent_pid)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # the writer decides when to stop
        signal.signal(stop_signal, signal.SIG_IGN)
    conn = Connection(fd)
    # every PostgreSQL batch through COPY (see PG_TEXT_BATCH_ROWS); SQLite rows through executemany (this
    # thread holds the interpreter lock alone while a batch executes)
    store = Store(url, commit_timeout_ms, text_batch_rows=0, sqlite_row_statements=True)
    store.sqlite_lock_wait_ms = SQLITE_LOCK_WAIT_MS
    try:
        store.connect(data_lock=True)
    except BaseException as exc:
        conn.send_bytes(_failed(exc))
        store.close()
        return
    conn.send_bytes(_READY)
    prepared: queue.Queue[_Work] = queue.Queue(maxsize=1)
    snapshots = _SnapshotWriter(url, commit_timeout_ms)
    threading.Thread(
        target=_prepare, args=(conn, store, prepared, snapshots), name="bulkex-prepare", daemon=True
    ).start()
    try:
        while True:
            work = prepared.get()
            if work is None:
                snapshots.finish()  # the writer closed the pipe: the last snapshot written, done
                return
            try:
                if isinstance(work, BaseException):
                    raise work
                store.execute(work)
            except BaseException as exc:
                conn.send_bytes(_failed(exc))
                return  # the writer stops on a failed commit; so does its committer (nothing later is written)
            conn.send_bytes(_COMMITTED)
    finally:
        store.close()


_Work = Prepared | BaseException | None
"""What the prepare thread hands the main thread: a batch, a failure to prepare it, or the end
of the input."""


def _prepare(conn: Connection, store: Store, prepared: queue.Queue[_Work], snapshots: _SnapshotWriter) -> None:
    """Thread bulkex-prepare: receive and prepare the next batch while the last one is written
    (the database works while this thread holds the interpreter lock, and the other way round);
    snapshots go to their writer."""
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            prepared.put(None)
            return
        if data[:1] == _SNAPSHOT:
            snapshots.put(marshal.loads(memoryview(data)[1:]))  # noqa: S302 (our own pipe)
            continue
        try:
            prepared.put(store.prepare(unpack(data)))
        except BaseException as exc:
            prepared.put(exc)
            return


class _SnapshotWriter:
    """Thread bulkex-snapshot-writer of the committer process: each snapshot in a transaction of
    its own on a connection of its own (no data lock: a snapshot of a committed seq is right
    whenever it lands; recovery skips one beyond the journal's end)."""

    def __init__(self, url: str, commit_timeout_ms: int) -> None:
        self.url = url
        self.commit_timeout_ms = commit_timeout_ms
        self._queue: queue.Queue[SnapshotRecord | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def put(self, snapshot: SnapshotRecord) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bulkex-snapshot-writer", daemon=True)
            self._thread.start()
        self._queue.put(snapshot)

    def finish(self) -> None:
        """Write what was handed over, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        store: Store | None = None
        try:
            while (snapshot := self._queue.get()) is not None:
                try:
                    if store is None:
                        store = Store(self.url, self.commit_timeout_ms)
                        store.sqlite_lock_wait_ms = SQLITE_LOCK_WAIT_MS
                        store.connect(data_lock=False)
                    store.write(Batch(snapshot[0] + 1, snapshot[1], [], [], [], [], snapshot))
                except Exception:
                    log.exception("the snapshot at seq %d could not be written", snapshot[0])
                    if store is not None:
                        store.close()
                        store = None  # connected again for the next one
        finally:
            if store is not None:
                store.close()
