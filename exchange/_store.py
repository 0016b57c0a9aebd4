"""The writer's side of the database: the writer lock, one transaction per
batch (journal rows, projection rows, optional snapshot), and streaming
reads for recovery.

It speaks the DB-API directly (sqlite3, psycopg2) through the SQLAlchemy
engine's raw connection: the batch insert is the hot path. The tables are
the ones declared in ``_tables`` and created by the migrations.

Writer lock: SQLite takes an exclusive ``flock`` on ``<database file>.lock``;
PostgreSQL takes ``pg_try_advisory_lock`` on a dedicated connection held
for the writer's life. Both are released when the process dies.

A hung PostgreSQL (PostgreSQL only): psycopg2 waits for an answer without a
time limit, and a server that hangs, or a network path that holds the bytes,
while the kernels at both ends still acknowledge them, is invisible to TCP
(keepalives and ``tcp_user_timeout`` see only a host that stops acknowledging).
So every commit (and the lock's release at close) is watched: a thread of the
store, ``_Watchdog``, shuts the connection's socket down when a statement has
waited longer than ``commit_timeout_ms``. The blocked call then fails at once,
and ``write`` raises DatabaseTimeout, which stops the writer like any failed
commit (its batch is unacknowledged; whether the server committed it is known
only to the journal, read again at restart). A shorter stall is ridden out.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine

from exchange._codec import JournalRecordBody
from exchange._db import is_sqlite, make_engine, sqlite_path
from exchange._errors import DatabaseTimeout, WriterLocked
from exchange._projections import ORDER_COLUMNS, TRADE_COLUMNS
from exchange._settings import DEFAULT_COMMIT_TIMEOUT_MS
from exchange._warehouse_projection import WarehouseRows, pg_warehouse_text, sqlite_warehouse_steps

__all__ = [
    "DATA_LOCK_KEY", "SNAPSHOTS_KEPT", "WRITER_LOCK_KEY", "Batch", "JournalRecord", "Prepared", "SnapshotRecord",
    "Store",
]  # fmt: skip

WRITER_LOCK_KEY = 0x62756C6B6578  # "bulkex": the advisory lock key of the one writer
DATA_LOCK_KEY = WRITER_LOCK_KEY + 1
"""Taken by the writer's data connection as well (a session lock, held across its
transactions). A writer whose connection was cut mid-commit may have left that commit in
flight: held by a hung server, or by the network, and executed later. The server runs it
before it notices the session is gone, and only then releases this lock; so a new writer,
which must take it too, cannot recover the journal while such a commit may still land after
its recovery (it would write the same seqs). WriterLocked until then."""
SNAPSHOTS_KEPT = 3
"""Snapshots kept; older ones are deleted in the transaction that writes a new one."""
READ_CHUNK_ROWS = 20_000
"""Journal rows fetched per round trip during replay."""

JournalRecord = tuple[int, int, str, Any, int]  # seq, ts_ns, kind, body (bytes or memoryview), crc32
SnapshotRecord = tuple[int, int, str, bytes]  # seq, ts_ns, state_hash, compressed body

_ORDER_INSERT_COLUMNS = ", ".join(ORDER_COLUMNS)  # the projection's rows, column for column
_TRADE_INSERT_COLUMNS = ", ".join(TRADE_COLUMNS)
_STATUS_SQL = (
    "CASE WHEN {open} > 0 THEN (CASE WHEN {filled} > 0 THEN 'partially_filled' ELSE 'open' END) "
    "WHEN {cancelled} > 0 THEN 'cancelled' ELSE 'filled' END"
)


def _json_columns(columns: tuple[str, ...]) -> str:
    """One row's fields (json_each's `value`, an array) in the order of `columns`."""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))


def _placeholders(columns: tuple[str, ...]) -> str:
    """A `?` for each of `columns`."""
    return ", ".join("?" * len(columns))


# SQLite, two ways to send a batch's rows (``Store.sqlite_row_statements``):
# - the rows of each table as ONE parameter, a JSON array of row arrays (orjson, in C), unpacked
#   by json_each inside SQLite: one statement per table and batch. For a store that shares its
#   interpreter lock with a busy thread (the sequencer's committer thread): sqlite3 takes the
#   lock back after every statement run (and binds every value holding it), and a thread that
#   takes it back often waits as often behind the sequencing thread (up to a switch interval
#   each time). The journal body (JSON text, valid UTF-8) travels as a JSON string and is stored
#   back as the same bytes (CAST AS BLOB).
# - executemany of plain rows: one statement run per row, no JSON at all. json_extract parses
#   the row's array again for each column, so this costs about a third less CPU a command
#   (`bench store`, 2026-12-07: 10.3-12.5 against 18.6-19.0 µs in 200-command batches, 15.6-16.1
#   against 23.4-25.0 in 30-command ones). For the committer process, whose only other thread
#   (prepare) is idle while a batch executes.
_SQLITE_JOURNAL = (
    "INSERT INTO journal (seq, ts_ns, kind, body, crc32) "
    "SELECT ?1 + key, ?2, json_extract(value, '$[0]'), CAST(json_extract(value, '$[1]') AS BLOB), "
    "json_extract(value, '$[2]') FROM json_each(?3)"
)
_SQLITE_ORDERS = f"INSERT INTO orders ({_ORDER_INSERT_COLUMNS}) SELECT {_json_columns(ORDER_COLUMNS)} FROM json_each(?)"
_SQLITE_TRADES = f"INSERT INTO trades ({_TRADE_INSERT_COLUMNS}) SELECT {_json_columns(TRADE_COLUMNS)} FROM json_each(?)"
_SQLITE_UPDATE = (
    "UPDATE orders SET filled_lots = orders.filled_lots + v.df, cancelled_lots = orders.cancelled_lots + v.dc, "
    "open_lots = v.open_lots, price_ticks = COALESCE(v.price, orders.price_ticks), "
    "quantity_lots = COALESCE(v.qty, orders.quantity_lots), last_seq = v.seq, status = "
    + _STATUS_SQL.format(
        open="v.open_lots", filled="orders.filled_lots + v.df", cancelled="orders.cancelled_lots + v.dc"
    )
    + " FROM (SELECT "
    + ", ".join(
        f"json_extract(value, '$[{i}]') AS {name}"
        for i, name in enumerate(("order_id", "df", "dc", "open_lots", "price", "qty", "seq"))
    )
    + " FROM json_each(?)) AS v "
    "WHERE orders.order_id = v.order_id"
)
_SQLITE_JOURNAL_ROWS = "INSERT INTO journal (seq, ts_ns, kind, body, crc32) VALUES (?, ?, ?, ?, ?)"
_SQLITE_ORDER_ROWS = f"INSERT INTO orders ({_ORDER_INSERT_COLUMNS}) VALUES ({_placeholders(ORDER_COLUMNS)})"
_SQLITE_TRADE_ROWS = f"INSERT INTO trades ({_TRADE_INSERT_COLUMNS}) VALUES ({_placeholders(TRADE_COLUMNS)})"
_SQLITE_UPDATE_ROWS = (
    "UPDATE orders SET filled_lots = filled_lots + ?2, cancelled_lots = cancelled_lots + ?3, open_lots = ?4, "
    "price_ticks = COALESCE(?5, price_ticks), quantity_lots = COALESCE(?6, quantity_lots), last_seq = ?7, status = "
    + _STATUS_SQL.format(open="?4", filled="filled_lots + ?2", cancelled="cancelled_lots + ?3")
    + " WHERE order_id = ?1"
)
_SQLITE_PROJECTIONS = (
    (_SQLITE_ORDERS, _SQLITE_ORDER_ROWS),
    (_SQLITE_UPDATE, _SQLITE_UPDATE_ROWS),
    (_SQLITE_TRADES, _SQLITE_TRADE_ROWS),
)
"""A batch's order inserts, order updates and trades: (json_each statement, executemany statement)."""
_SQLITE_SNAPSHOT = "INSERT INTO snapshots (seq, ts_ns, state_hash, body) VALUES (?, ?, ?, ?)"
_SQLITE_PRUNE_SNAPSHOTS = "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)"
_dumps = orjson.dumps


_PG_UPDATE_HEAD = (
    "UPDATE orders AS o SET filled_lots = o.filled_lots + v.df, cancelled_lots = o.cancelled_lots + v.dc, "
    "open_lots = v.open_lots, price_ticks = COALESCE(v.price, o.price_ticks), "
    "quantity_lots = COALESCE(v.qty, o.quantity_lots), last_seq = v.seq, status = "
    + _STATUS_SQL.format(open="v.open_lots", filled="o.filled_lots + v.df", cancelled="o.cancelled_lots + v.dc")
    + " FROM unnest("
)
_PG_UPDATE_TAIL = ") AS v(order_id, df, dc, open_lots, price, qty, seq) WHERE o.order_id = v.order_id"
_PG_UPDATE_NULLABLE = (4, 5)
"""Columns of an order update that may be None (price and quantity: changed by an amend only)."""
_PG_PRUNE_SNAPSHOTS = "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT %s)"


PG_TEXT_BATCH_ROWS = 512
"""Batches of at most this many commands go to PostgreSQL as one statement text (one round
trip); larger ones through COPY (cheaper per row, one round trip per table). The one round trip
matters to a store that shares its process's interpreter lock with the sequencing thread (each
return from the network may wait for it); the committer process's store, which shares it with
nobody, uses COPY for every batch (``text_batch_rows=0``: at 30,000 commands/s, batches of about
100 commands, order-to-commit p50 6 ms against 18 ms)."""


def _pg_text(value: str) -> str:
    """A string as a COPY text-format field (NUL becomes U+FFFD, as in _pg_literal)."""
    if "\\" in value or not value.isprintable():
        return value.replace("\x00", "\ufffd").translate(_PG_ESCAPES)
    return value


_PG_NESTED_LOOP = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
"""Before the order update: look each order up through the primary key. With a thousand rows
to update the planner may otherwise hash them and scan the whole orders table, a cost that
grows with the table (measured in the journal benchmark when the rows came as VALUES, batches
of ~4,000 commands at up to 200,000 orders: 37 ms a batch against 22 ms)."""
_PG_BEGIN_UPDATE = "BEGIN; " + _PG_NESTED_LOOP


def _pg_update_text(updates: list[tuple[Any, ...]]) -> str:
    """UPDATE orders FROM unnest(seven bigint arrays), the arrays as literals: the server parses
    each array in one call, and plans the join through the primary key (with the hash and merge
    joins off, ``_PG_NESTED_LOOP``) in a tenth of the time a VALUES list of the same rows took
    (0.08 ms against 0.45-0.7 ms for 80 rows; replaying a 40,000-commands/s run's batches, the
    server's CPU a command fell by 15-20 %). Values are ints (None: NULL), rendered with ``str``."""
    columns = list(zip(*updates, strict=True))
    assert len(columns) == 7, len(columns)
    arrays = []
    for index, column in enumerate(columns):
        if index in _PG_UPDATE_NULLABLE:
            body = ",".join(["NULL" if value is None else str(value) for value in column])
        else:
            body = ",".join(map(str, column))
        arrays.append("'{" + body + "}'::bigint[]")
    return _PG_UPDATE_HEAD + ",".join(arrays) + _PG_UPDATE_TAIL


def _pg_snapshot_text(snapshot: SnapshotRecord) -> str:
    seq, ts, state_hash, body = snapshot
    return (
        f"INSERT INTO snapshots (seq, ts_ns, state_hash, body) VALUES "
        f"({seq},{ts},{_pg_literal(state_hash)},'\\x{body.hex()}'); " + _PG_PRUNE_SNAPSHOTS % SNAPSHOTS_KEPT
    )


_PG_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _pg_literal(value: str) -> str:
    """A string as a PostgreSQL literal (standard_conforming_strings: only quotes are doubled).
    NUL cannot be stored in PostgreSQL text: it becomes U+FFFD in the read model (the journal,
    bytea, keeps the command exactly)."""
    if "'" in value or "\x00" in value:
        value = value.replace("\x00", "\ufffd").replace("'", "''")
    return "'" + value + "'"


class Batch:
    """Everything one transaction writes: journal records first_seq, first_seq + 1, ... (all
    stamped ts_ns), projection rows, optionally a snapshot (of a seq at most the last one
    written with or before it) and the warehouse read-model rows."""

    __slots__ = ("first_seq", "ts_ns", "records", "order_inserts", "order_updates", "trades", "snapshot", "warehouse")

    def __init__(
        self,
        first_seq: int,
        ts_ns: int,
        records: list[JournalRecordBody],
        order_inserts: list[tuple[Any, ...]],
        order_updates: list[tuple[Any, ...]],
        trades: list[tuple[Any, ...]],
        snapshot: SnapshotRecord | None = None,
        warehouse: WarehouseRows | None = None,
    ) -> None:
        self.first_seq = first_seq
        self.ts_ns = ts_ns
        self.records = records
        self.order_inserts = order_inserts
        self.order_updates = order_updates
        self.trades = trades
        self.snapshot = snapshot
        self.warehouse = warehouse

    @property
    def last_seq(self) -> int:
        """The seq of the last journal record (first_seq - 1 when there is none)."""
        return self.first_seq + len(self.records) - 1


_EXECUTE = 0  # execute(sql) or execute(sql, parameters)
_EXECUTE_MANY = 1  # executemany(sql, rows)
_COPY = 2  # COPY sql FROM STDIN with the text
_Step = tuple[int, str, Any]


class Prepared(NamedTuple):
    """A batch's statements with their data, ready to run (``Store.prepare``)."""

    what: str  # for the watchdog's error: "commit of seq A..B"
    steps: list[_Step]


class _Watchdog:
    """Cuts the socket of a PostgreSQL connection whose statement waits past the bound.

    ``arm`` before the statement, ``disarm`` after (one statement watched at a time: the store
    is used by one thread at a time). The thread wakes every ``timeout/20`` (20 ms .. 500 ms),
    so a stalled statement is cut between 1 and 1.05 times the bound after it began. Cutting
    is ``shutdown(SHUT_RDWR)`` on a duplicate of the connection's descriptor: the socket is
    the same, the descriptor libpq holds stays valid, and its blocked read returns at once.
    """

    def __init__(self, timeout_ms: int) -> None:
        assert timeout_ms > 0, timeout_ms
        self.timeout_ms = timeout_ms
        self._timeout_s = timeout_ms / 1000
        self._poll_s = min(0.5, max(0.02, self._timeout_s / 20))
        self._lock = threading.Lock()
        self._watched: tuple[int, float, Any] | None = None  # generation, deadline, DB-API driver connection
        self._generation = 0
        self._cut_generation = -1
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.cuts = 0

    def arm(self, driver: Any) -> int:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bulkex-db-watchdog", daemon=True)
            self._thread.start()
        with self._lock:
            assert self._watched is None, "one watched statement at a time"
            self._generation += 1
            self._watched = (self._generation, time.monotonic() + self._timeout_s, driver)
            return self._generation

    def disarm(self, generation: int) -> bool:
        """Stop watching; True when this statement was cut for taking too long."""
        with self._lock:
            self._watched = None
            return self._cut_generation == generation

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._closed.clear()  # armed again (a store reopened): a new thread

    def _run(self) -> None:
        while not self._closed.wait(self._poll_s):
            with self._lock:
                watched = self._watched
                if watched is None or watched[0] == self._cut_generation or time.monotonic() < watched[1]:
                    continue
                self._cut_generation = watched[0]
                self.cuts += 1
                with contextlib.suppress(Exception):  # already closed (OSError, InterfaceError): nothing to cut
                    dup = socket.socket(fileno=os.dup(watched[2].fileno()))
                    try:
                        dup.shutdown(socket.SHUT_RDWR)
                    finally:
                        dup.close()


class Store:
    """The one writer's connection to the database (open() takes the lock)."""

    def __init__(
        self,
        url: str,
        commit_timeout_ms: int = DEFAULT_COMMIT_TIMEOUT_MS,
        text_batch_rows: int = PG_TEXT_BATCH_ROWS,
        sqlite_row_statements: bool = False,
    ) -> None:
        assert commit_timeout_ms >= 0, commit_timeout_ms
        assert text_batch_rows >= 0, text_batch_rows
        self.url = url
        self.text_batch_rows = text_batch_rows
        self.sqlite = is_sqlite(url)
        self.commit_timeout_ms = commit_timeout_ms
        self._watchdog = _Watchdog(commit_timeout_ms) if commit_timeout_ms and not self.sqlite else None
        self._engine: Engine | None = None
        self._conn: Any = None  # the DB-API connection
        self._lock_file: int | None = None
        self._lock_conn: Any = None
        self._data_locked = False  # the data connection holds DATA_LOCK_KEY (PostgreSQL)
        self.sqlite_lock_wait_ms: int | None = None  # SQLite: busy timeout of the data connection, if not the default
        self.sqlite_row_statements = sqlite_row_statements  # SQLite: executemany, not json_each (see above)

    # ------------------------------------------------------------ lifecycle

    def lock(self) -> None:
        """Take the writer lock; WriterLocked when another writer holds it."""
        if self.sqlite:
            path = sqlite_path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = f"{path}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise WriterLocked(lock_path) from None
            self._lock_file = fd
            return
        self._engine = self._engine or make_engine(self.url, self.commit_timeout_ms)
        conn = self._engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK_KEY,))
            row = cursor.fetchone()
            assert row is not None
            taken = bool(row[0])
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            raise WriterLocked(f"PostgreSQL database {self._engine.url.database!r} (advisory lock {WRITER_LOCK_KEY})")
        self._lock_conn = conn

    @property
    def lock_fd(self) -> int | None:
        """The descriptor of the lock file (SQLite, while locked)."""
        return self._lock_file

    def connect(self, data_lock: bool | None = None) -> None:
        """Open the data connection; on PostgreSQL it takes the data lock (DATA_LOCK_KEY) when
        `data_lock` says so (by default: when this store holds the writer lock)."""
        if data_lock is None:
            data_lock = self._lock_conn is not None
        self._engine = self._engine or make_engine(self.url, self.commit_timeout_ms)
        self._conn = self._engine.raw_connection()
        if self.sqlite:
            # Explicit transactions: BEGIN IMMEDIATE ... COMMIT around each batch.
            self._conn.driver_connection.isolation_level = None
            if self.sqlite_lock_wait_ms is not None:
                self._conn.driver_connection.execute(f"PRAGMA busy_timeout={int(self.sqlite_lock_wait_ms)}")
        else:
            # The batch text quotes strings by doubling quotes only; backslashes must be literal.
            cur = self._conn.cursor()
            cur.execute("SET standard_conforming_strings = on")
            if data_lock:  # the writer's own connection: see DATA_LOCK_KEY
                cur.execute("SELECT pg_try_advisory_lock(%s)", (DATA_LOCK_KEY,))
                row = cur.fetchone()
                assert row is not None
                if not row[0]:
                    cur.close()
                    self._conn.commit()
                    raise WriterLocked(
                        f"PostgreSQL database {self._engine.url.database!r} (advisory lock {DATA_LOCK_KEY}: the "
                        "data session of a writer that lost its connection is still open on the server)"
                    )
                self._data_locked = True
            cur.close()
            self._conn.commit()

    def disconnect(self) -> None:
        """Close the data connection (releasing the data lock), keeping the writer lock: the
        writes move to a committer process (``exchange._committer``)."""
        self._release_data_lock()
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
            self._conn = None

    def _release_data_lock(self) -> None:
        if not self._data_locked or self._conn is None:
            return
        self._data_locked = False
        with (
            contextlib.suppress(Exception),  # a broken connection: its session, and lock, are gone
            self._watched(self._conn.driver_connection, "release of the data lock"),
        ):
            driver = self._conn.driver_connection
            if not driver.autocommit:
                driver.rollback()
            cursor = driver.cursor()
            cursor.execute("SELECT pg_advisory_unlock(%s)", (DATA_LOCK_KEY,))
            cursor.close()
            if not driver.autocommit:
                driver.commit()

    def close(self) -> None:
        if self._lock_conn is not None:
            # Release the writer lock now: a closed connection's server process ends (and lets go of
            # its advisory lock) only a little later, and a writer started at once would be refused.
            with (
                contextlib.suppress(Exception),  # a broken connection: its session, and lock, are gone
                self._watched(self._lock_conn.driver_connection, "release of the writer lock"),
            ):
                cursor = self._lock_conn.cursor()
                cursor.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK_KEY,))
                cursor.close()
                self._lock_conn.commit()
        self._release_data_lock()
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(Exception):  # closing a broken connection after a failure
                    if getattr(conn.driver_connection, "closed", 0):
                        conn.invalidate()  # the driver closed it (the socket broke): not back to the pool
                    else:
                        conn.close()
        self._conn = self._lock_conn = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._watchdog is not None:
            self._watchdog.close()

    @contextlib.contextmanager
    def _watched(self, driver: Any, what: str) -> Iterator[None]:
        """Run the block under the watchdog (PostgreSQL with a bound): DatabaseTimeout when it cut it."""
        watchdog = self._watchdog
        if watchdog is None:
            yield
            return
        generation = watchdog.arm(driver)
        try:
            yield
        except Exception as exc:
            if watchdog.disarm(generation):
                raise DatabaseTimeout(what, watchdog.timeout_ms) from exc
            raise
        except BaseException:
            watchdog.disarm(generation)
            raise
        else:
            watchdog.disarm(generation)  # cut just as the answer came: the next statement fails

    # ---------------------------------------------------------------- write

    def write(self, batch: Batch) -> None:
        """Write the batch in one transaction and commit (durable on return)."""
        self.execute(self.prepare(batch))

    def prepare(self, b: Batch) -> Prepared:
        """The batch's statements and their data, built without touching the database (the
        committer process builds the next batch's while the database runs this one's)."""
        if self.sqlite:
            return self._prepare_sqlite(b, self.sqlite_row_statements)
        what = f"commit of seq {b.first_seq}..{b.last_seq}" if b.records else "snapshot"
        if len(b.records) > self.text_batch_rows:
            return Prepared(what, self._prepare_copy(b))
        return Prepared(what, [(_EXECUTE, self._postgres_text(b), None)])

    def execute(self, prepared: Prepared) -> None:
        """Run a prepared batch as one transaction and commit (durable on return)."""
        if self.sqlite:
            self._execute_sqlite(prepared)
        else:
            self._execute_postgres(prepared)

    @staticmethod
    def _prepare_sqlite(b: Batch, row_statements: bool) -> Prepared:
        steps: list[_Step] = [(_EXECUTE, "BEGIN IMMEDIATE", None)]
        if b.records:
            if row_statements:
                first, ts_ns = b.first_seq, b.ts_ns
                journal = [(first + i, ts_ns, kind, body, crc) for i, (kind, body, crc) in enumerate(b.records)]
                steps.append((_EXECUTE_MANY, _SQLITE_JOURNAL_ROWS, journal))
            else:
                rows = [(kind, body.decode(), crc) for kind, body, crc in b.records]
                steps.append((_EXECUTE, _SQLITE_JOURNAL, (b.first_seq, b.ts_ns, _dumps(rows))))
        for table_rows, (as_json, as_rows) in zip(
            (b.order_inserts, b.order_updates, b.trades), _SQLITE_PROJECTIONS, strict=True
        ):
            if table_rows:
                steps.append(
                    (_EXECUTE_MANY, as_rows, table_rows) if row_statements
                    else (_EXECUTE, as_json, (_dumps(table_rows),))
                )  # fmt: skip
        if b.warehouse:
            steps.extend((_EXECUTE_MANY, sql, rows) for sql, rows in sqlite_warehouse_steps(b.warehouse))
        if b.snapshot is not None:
            steps.append((_EXECUTE, _SQLITE_SNAPSHOT, b.snapshot))
            steps.append((_EXECUTE, _SQLITE_PRUNE_SNAPSHOTS, (SNAPSHOTS_KEPT,)))
        steps.append((_EXECUTE, "COMMIT", None))
        return Prepared("commit", steps)

    def _execute_sqlite(self, prepared: Prepared) -> None:
        conn = self._conn.driver_connection
        cur = conn.cursor()
        try:
            for kind, sql, data in prepared.steps:
                if kind == _EXECUTE_MANY:
                    cur.executemany(sql, data)
                elif data is None:
                    cur.execute(sql)
                else:
                    cur.execute(sql, data)
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        finally:
            cur.close()

    def _execute_postgres(self, prepared: Prepared) -> None:
        """The steps on the writer's connection, under the watchdog; on a failure the
        transaction is rolled back (the server has rolled it back already, or will)."""
        conn = self._conn
        driver = conn.driver_connection
        if not driver.autocommit:
            driver.rollback()
            driver.autocommit = True  # the statements carry their own BEGIN ... COMMIT
        with self._watched(driver, prepared.what):
            cur = driver.cursor()
            try:
                for kind, sql, data in prepared.steps:
                    if kind == _COPY:
                        # the whole text in one read (8 KiB reads would take the GIL back once per chunk)
                        cur.copy_expert(sql, io.StringIO(data), size=max(8192, len(data)))
                    else:
                        cur.execute(sql)
            except BaseException:
                with contextlib.suppress(Exception):  # the connection may be gone; the original error matters
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    @staticmethod
    def _postgres_text(b: Batch) -> str:
        """A small batch as ONE statement text, ``BEGIN; ...; COMMIT``, sent in one round trip.

        One round trip, not one per table: a committer that shares its process's interpreter
        lock lets go of it for every network wait, and each time it wants it back it may wait a
        whole switch interval behind the sequencing thread. The server runs a multi-statement
        text as one unit: if any statement fails, nothing of it is committed. Values are
        rendered as literals here (integers with ``str``, strings quoted, bytes as hex
        ``bytea``), which is also far cheaper than binding them one by one.
        """
        parts = ["BEGIN"]
        if b.records:
            ts = b.ts_ns
            parts.append("; INSERT INTO journal (seq, ts_ns, kind, body, crc32) VALUES ")
            parts.append(
                ",".join(
                    [
                        f"({seq},{ts},{_pg_literal(kind)},'\\x{body.hex()}',{crc})"
                        for seq, (kind, body, crc) in enumerate(b.records, b.first_seq)
                    ]
                )
            )
        if b.order_inserts:
            parts.append(f"; INSERT INTO orders ({_ORDER_INSERT_COLUMNS}) VALUES ")
            parts.append(
                ",".join(
                    [
                        f"({r[0]},{_pg_literal(r[1])},{_pg_literal(r[2])},{_pg_literal(r[3])},{r[4]},{r[5]},{r[6]},"
                        f"{r[7]},{r[8]},{r[9]},{r[10]},'{r[11]}',{r[12]})"
                        for r in b.order_inserts
                    ]
                )
            )
        if b.order_updates:
            parts.append("; " + _PG_NESTED_LOOP + _pg_update_text(b.order_updates))
        if b.trades:
            parts.append(f"; INSERT INTO trades ({_TRADE_INSERT_COLUMNS}) VALUES ")
            parts.append(
                ",".join(
                    [
                        f"({t[0]},{t[1]},{t[2]},{_pg_literal(t[3])},{t[4]},{t[5]},{t[6]},{_pg_literal(t[7])},{t[8]},"
                        f"{_pg_literal(t[9])},{t[10]})"
                        for t in b.trades
                    ]
                )
            )
        if b.warehouse:
            parts.append("; " + pg_warehouse_text(b.warehouse, _pg_literal))
        if b.snapshot is not None:
            parts.append("; " + _pg_snapshot_text(b.snapshot))
        parts.append("; COMMIT")
        return "".join(parts)

    @staticmethod
    def _prepare_copy(b: Batch) -> list[_Step]:
        """A large batch: ``BEGIN`` with the order updates (literals), then one COPY per table
        (cheaper per row than parsing literals), then the snapshot with ``COMMIT``."""
        steps: list[_Step] = [
            (_EXECUTE, _PG_BEGIN_UPDATE + _pg_update_text(b.order_updates) if b.order_updates else "BEGIN", None)
        ]
        ts = b.ts_ns
        steps.append(
            (_COPY, "COPY journal (seq, ts_ns, kind, body, crc32) FROM STDIN",
             "".join([f"{seq}\t{ts}\t{_pg_text(kind)}\t\\\\x{body.hex()}\t{crc}\n"
                      for seq, (kind, body, crc) in enumerate(b.records, b.first_seq)]))
        )  # fmt: skip
        if b.order_inserts:
            steps.append(
                (_COPY, f"COPY orders ({_ORDER_INSERT_COLUMNS}) FROM STDIN",
                 "".join([f"{r[0]}\t{_pg_text(r[1])}\t{_pg_text(r[2])}\t{_pg_text(r[3])}\t{r[4]}\t{r[5]}\t{r[6]}\t"
                          f"{r[7]}\t{r[8]}\t{r[9]}\t{r[10]}\t{r[11]}\t{r[12]}\n" for r in b.order_inserts]))
            )  # fmt: skip
        if b.trades:
            steps.append(
                (_COPY, f"COPY trades ({_TRADE_INSERT_COLUMNS}) FROM STDIN",
                 "".join([f"{t[0]}\t{t[1]}\t{t[2]}\t{_pg_text(t[3])}\t{t[4]}\t{t[5]}\t{t[6]}\t{_pg_text(t[7])}\t"
                          f"{t[8]}\t{_pg_text(t[9])}\t{t[10]}\n" for t in b.trades]))
            )  # fmt: skip
        if b.warehouse:
            steps.append((_EXECUTE, pg_warehouse_text(b.warehouse, _pg_literal), None))
        commit = "COMMIT" if b.snapshot is None else _pg_snapshot_text(b.snapshot) + "; COMMIT"
        steps.append((_EXECUTE, commit, None))
        return steps

    # ----------------------------------------------------------------- read

    def last_seq(self) -> int:
        return int(self._query_one("SELECT COALESCE(MAX(seq), 0) FROM journal")[0])

    def server_pid(self) -> int | None:
        """PostgreSQL: the process id of the server process serving the data connection (to
        measure its CPU); None on SQLite, which runs in this process."""
        if self.sqlite:
            return None
        return int(self._query_one("SELECT pg_backend_pid()")[0])

    def snapshot_seqs(self) -> list[int]:
        """Snapshot sequence numbers, newest first."""
        cur = self._conn.cursor()
        try:
            cur.execute("SELECT seq FROM snapshots ORDER BY seq DESC")
            seqs = [int(r[0]) for r in cur.fetchall()]
        finally:
            cur.close()
        self._end_read()
        return seqs

    def snapshot(self, seq: int) -> SnapshotRecord:
        mark = "?" if self.sqlite else "%s"
        row = self._query_one(f"SELECT seq, ts_ns, state_hash, body FROM snapshots WHERE seq = {mark}", (seq,))
        return int(row[0]), int(row[1]), str(row[2]), bytes(row[3])

    def journal(self, after_seq: int) -> Iterator[JournalRecord]:
        """Journal records with seq > after_seq, in seq order, streamed."""
        for rows in self.journal_chunks(after_seq):
            yield from rows

    def journal_chunks(self, after_seq: int) -> Iterator[list[JournalRecord]]:
        """``journal`` in lists of up to READ_CHUNK_ROWS records (replay loops over each list
        without resuming a generator per record)."""
        if self.sqlite:
            cur = self._conn.driver_connection.cursor()
            try:
                cur.execute(
                    "SELECT seq, ts_ns, kind, body, crc32 FROM journal WHERE seq > ? ORDER BY seq", (after_seq,)
                )
                while rows := cur.fetchmany(READ_CHUNK_ROWS):
                    yield rows
            finally:
                cur.close()
            return
        conn = self._conn
        cur = conn.cursor(name="bulkex_replay")
        cur.itersize = READ_CHUNK_ROWS
        try:
            cur.execute("SELECT seq, ts_ns, kind, body, crc32 FROM journal WHERE seq > %s ORDER BY seq", (after_seq,))
            while rows := cur.fetchmany(READ_CHUNK_ROWS):
                yield rows
        finally:
            cur.close()
            conn.rollback()

    def _query_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        cur = self._conn.cursor()
        try:
            cur.execute(sql, params)
            row = cur.fetchone()
        finally:
            cur.close()
        self._end_read()
        return row

    def _end_read(self) -> None:
        if not self.sqlite:
            self._conn.rollback()
