"""The committer process (exchange/_committer.py): the same journal, projections and answers as
the committer thread, snapshots through it, its failures stop the writer, it never outlives it."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from typing import Any

import pytest

from exchange import (
    DatabaseTimeout,
    JournalCorrupt,
    JournalGap,
    OrderFlow,
    QueueFull,
    Sequencer,
    WriterLocked,
    WriterStopped,
)
from exchange._committer import SQLITE_LOCK_WAIT_MS, CommitterProcess, pack, unpack
from exchange._store import DATA_LOCK_KEY, Batch, Store
from exchange._warehouse_projection import WarehouseRows
from tests.test_exchange_sequencer import (
    INSTRUMENTS,
    assert_projections_match_replay,
    execute_sql,
    fake_clock,
    fetch,
    opening,
)

TABLES = ("journal", "orders", "trades", "warehouse_receipts", "warehouse_deliveries", "warehouse_stock")


def _run(url: str, committer_process: bool, commands: int, seed: int) -> tuple[str, list[Any], dict[str, list[Any]]]:
    """An opening and `commands` simulated orders submitted in groups while the threads run;
    (state hash, acks, the tables' rows)."""
    with Sequencer(url, clock=fake_clock(), batch_max_commands=97, committer_process=committer_process) as sequencer:
        sequencer.execute(opening(sequencer))
        flow = OrderFlow(INSTRUMENTS, seed=seed, first_seq=sequencer.last_seq + 1, settle=True)
        sequencer.start()
        acks: list[Any] = []
        for _ in range(commands // 50):
            group = flow.take(50) + flow.settlement()
            answered = sequencer.submit_batch(group).result(timeout=60)
            flow.observe(event for ack in answered for event in ack.events)
            acks += answered
        state_hash = sequencer.state_hash()
    rows = {table: sorted(fetch(url, f"SELECT * FROM {table}")) for table in TABLES}
    return state_hash, acks, rows


def test_the_committer_process_writes_what_the_committer_thread_writes(database_url: str, tmp_path: Any) -> None:
    seed = int(time.time()) % 10_000
    print(f"seed {seed}")
    other = f"sqlite:///{tmp_path / 'thread.db'}"
    in_process = _run(other, committer_process=False, commands=3_000, seed=seed)
    in_child = _run(database_url, committer_process=True, commands=3_000, seed=seed)
    assert in_child[0] == in_process[0], f"seed {seed}: state hashes differ"
    assert in_child[1] == in_process[1], f"seed {seed}: acknowledgements differ"
    assert len(in_child[2]["trades"]) > 100, "the flow traded"
    assert in_child[2]["warehouse_deliveries"], "the flow delivered"
    for table in TABLES[1:]:
        assert in_child[2][table] == in_process[2][table], f"seed {seed}: table {table} differs"
    journal = [(seq, kind, bytes(body), crc) for seq, _ts, kind, body, crc in in_child[2]["journal"]]
    assert journal == [(seq, kind, bytes(body), crc) for seq, _ts, kind, body, crc in in_process[2]["journal"]]
    assert_projections_match_replay(database_url)


def test_snapshots_are_written_through_the_committer_process(database_url: str) -> None:
    with Sequencer(
        database_url, clock=fake_clock(), batch_max_commands=100, snapshot_every_commands=400, committer_process=True
    ) as sequencer:
        sequencer.execute(opening(sequencer))
        flow = OrderFlow(INSTRUMENTS, seed=5, first_seq=sequencer.last_seq + 1)
        sequencer.start()
        for _ in range(12):
            sequencer.submit_batch(flow.take(200)).result(timeout=60)
            time.sleep(0.05)  # room for a background export to finish and be written
        live_hash = sequencer.state_hash()
        last_seq = sequencer.last_seq
    snapshots = fetch(database_url, "SELECT seq FROM snapshots")
    assert snapshots, "no snapshot was written"
    with Sequencer(database_url) as recovered:
        assert recovered.recovery is not None
        assert recovered.recovery.snapshot_seq == max(seq for (seq,) in snapshots)
        assert recovered.last_seq == last_seq
        assert recovered.state_hash() == live_hash


def test_a_killed_committer_process_stops_the_writer(database_url: str) -> None:
    with Sequencer(database_url, clock=fake_clock(), committer_process=True) as sequencer:
        sequencer.execute(opening(sequencer))
        flow = OrderFlow(INSTRUMENTS, seed=9, first_seq=sequencer.last_seq + 1)
        sequencer.start()
        acked = sequencer.submit_batch(flow.take(100)).result(timeout=60)
        committer = sequencer._committer
        assert committer is not None
        assert committer.pid is not None
        os.kill(committer.pid, signal.SIGKILL)
        assert committer._process is not None
        assert committer._process.wait(10) == -signal.SIGKILL  # dead before the next commit
        with pytest.raises(WriterStopped, match="committer process exited"):
            sequencer.submit_batch(flow.take(20)).result(timeout=60)
        assert not sequencer.running
        with pytest.raises(WriterStopped):
            sequencer.submit(flow.take(1)[0])
        committed = sequencer.committed_seq
    assert committed >= acked[-1].seq
    with Sequencer(database_url, use_snapshots=False) as recovered:
        assert recovered.last_seq == committed, "the journal holds exactly what was acknowledged"
    assert_projections_match_replay(database_url)


def test_the_committer_process_ends_with_the_writer(database_url: str) -> None:
    sequencer = Sequencer(database_url, clock=fake_clock(), committer_process=True)
    sequencer.open()
    sequencer.start()
    committer = sequencer._committer
    assert committer is not None
    assert committer.pid is not None
    pid = committer.pid
    sequencer.close()
    with pytest.raises(ChildProcessError):  # reaped: no such child any more
        os.waitpid(pid, os.WNOHANG)
    with Sequencer(database_url, committer_process=True) as again:  # the locks were released
        commands = opening(again)
        again.start()
        acks = again.submit_batch(commands).result(timeout=60)
        assert again.running
        assert again.committed_seq == acks[-1].seq


@pytest.mark.postgres
def test_a_committer_process_that_cannot_take_the_data_lock_fails_the_start(postgres_database: str) -> None:
    import psycopg2

    url = postgres_database
    other = psycopg2.connect(url)
    try:
        with Sequencer(url, committer_process=True) as sequencer:
            command = opening(sequencer)[0]
            cursor = other.cursor()
            # The sequencer's own data connection holds the data lock until start() hands it over:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (DATA_LOCK_KEY,))
            assert cursor.fetchone() == (False,)
            sequencer._store.disconnect()  # type: ignore[union-attr]  # what start() does first
            cursor.execute("SELECT pg_advisory_lock(%s)", (DATA_LOCK_KEY,))  # taken here before the child can
            with pytest.raises(WriterLocked, match=str(DATA_LOCK_KEY)):
                sequencer.start()
            assert not sequencer.running
            with pytest.raises(WriterStopped, match="did not start"):
                sequencer.submit(command)
    finally:
        other.close()
    execute_sql(url, "SELECT 1")  # the server is fine


def test_a_batch_travels_whole() -> None:
    rows = WarehouseRows()
    rows.receipts["R1"] = ("R1", "W1", 3, "registered", None)
    rows.deliveries[7] = (7, "R1", 12)
    rows.stock[("W1", "RB")] = ["steel", 1, 2, 3, 4]
    batch = Batch(
        41, 1_700_000_000_000_000_000, [("new_order", b'{"a":1}', 123)],
        [(1, "a", "RB", "c", 1, 1, 3, 4, 0, 4, 0, "", 41)], [(9, 1, 0, 3, None, None, 41)],
        [(5, 41, 1, "RB", 3, 1, 1, "a", 2, "b", 1)], (40, 1, "h", b"z"), rows,
    )  # fmt: skip
    back = unpack(pack(batch))
    for name in Batch.__slots__:
        if name != "warehouse":
            assert getattr(back, name) == getattr(batch, name), name
    assert back.warehouse is not None
    assert (back.warehouse.receipts, back.warehouse.deliveries, back.warehouse.stock) == (
        rows.receipts, rows.deliveries, rows.stock,
    )  # fmt: skip
    assert unpack(pack(Batch(1, 2, [], [], [], []))).warehouse is None


@pytest.mark.parametrize(
    "error",
    [
        DatabaseTimeout("commit of seq 1..2", 500),
        WriterLocked("PostgreSQL database 'x' (advisory lock 7)"),
        WriterStopped("closed"),
        QueueFull(100),
        JournalGap(5, None),
        JournalGap(5, 9),
        JournalCorrupt(3, "crc32 mismatch"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_the_exchange_errors_cross_the_pipe_as_themselves(error: Exception) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


def test_write_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        CommitterProcess("sqlite:///unused.db", 0).write(Batch(1, 2, [], [], [], []))


def _refuse_journal_seq(url: str, seq: int) -> None:
    """A trigger that makes the database refuse the journal row `seq` (a failing commit)."""
    if url.startswith("sqlite"):
        execute_sql(
            url,
            f"CREATE TRIGGER refuse_seq BEFORE INSERT ON journal WHEN NEW.seq = {seq} "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        return
    execute_sql(
        url,
        "CREATE FUNCTION refuse_seq() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
    )
    execute_sql(
        url, f"CREATE TRIGGER refuse_seq BEFORE INSERT ON journal FOR EACH ROW WHEN (NEW.seq = {seq}) "
        "EXECUTE FUNCTION refuse_seq()",
    )  # fmt: skip


def test_a_failed_commit_fails_its_batch_and_every_later_one(database_url: str) -> None:
    """Batches are handed over while an earlier one is written: when one fails, it and every
    batch after it fail, and nothing after the last acknowledged seq is in the journal."""
    with Sequencer(database_url, clock=fake_clock(), batch_max_commands=40, committer_process=True) as sequencer:
        sequencer.execute(opening(sequencer))
        refused = sequencer.last_seq + 500
        _refuse_journal_seq(database_url, refused)
        flow = OrderFlow(INSTRUMENTS, seed=13, first_seq=sequencer.last_seq + 1)
        sequencer.start()
        tickets = [sequencer.submit_batch(flow.take(25)) for _ in range(60)]  # 1,500 commands, many batches
        answered: list[Any] = []
        failures: list[str] = []
        for ticket in tickets:
            try:
                answered += ticket.result(timeout=60)
            except WriterStopped as exc:
                failures.append(str(exc))
        committed = sequencer.committed_seq
        assert not sequencer.running
    assert failures
    assert all("refused by the test" in failure for failure in failures), failures[0]
    assert answered, "batches before the refused one were acknowledged"
    assert [ack.seq for ack in answered] == list(range(answered[0].seq, committed + 1)), "acks are gapless"
    assert committed < refused
    with Sequencer(database_url, use_snapshots=False) as recovered:
        assert recovered.last_seq == committed, "the journal holds exactly what was acknowledged"
    execute_sql(database_url, "DROP TRIGGER refuse_seq" + ("" if database_url.startswith("sqlite") else " ON journal"))
    assert_projections_match_replay(database_url)


def test_a_failing_answer_callback_stops_the_writer_and_close_returns(tmp_path: Any) -> None:
    """A ticket's callback that raises (the gateway's, once its event loop is closed) stops the
    writer as with the committer thread: later tickets fail, nothing waits forever."""
    url = f"sqlite:///{tmp_path / 'callback.db'}"
    sequencer = Sequencer(url, clock=fake_clock(), batch_max_commands=50, committer_process=True)
    sequencer.open()
    sequencer.execute(opening(sequencer))
    flow = OrderFlow(INSTRUMENTS, seed=3, first_seq=sequencer.last_seq + 1)
    sequencer.start()

    def fail(_ticket: Any) -> None:
        raise RuntimeError("Event loop is closed")

    for _ in range(100):  # a ticket answered before its callback is added runs it here, at once
        first = sequencer.submit_batch(flow.take(10))
        try:
            first.add_done_callback(fail)
            break
        except RuntimeError:
            continue
    later = []
    deadline = time.monotonic() + 30
    while sequencer.running and time.monotonic() < deadline:
        later.append(sequencer.submit_batch(flow.take(50)))
        time.sleep(0.01)
    assert not sequencer.running, "the writer did not stop"
    assert "Event loop is closed" in str(sequencer._stopped)
    closing = threading.Thread(target=sequencer.close, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive(), "close() did not return"
    assert all(ticket.done() for ticket in later), "a ticket was left unanswered"
    with Sequencer(url, use_snapshots=False) as recovered:
        committed = [ack.seq for ticket in [first, *later] if ticket.exception() is None for ack in ticket.result()]
        assert recovered.last_seq >= max(committed)


def test_the_committer_process_waits_long_for_the_sqlite_write_lock(tmp_path: Any) -> None:
    """Its batches and its snapshot writer take turns on SQLite's one write lock: a batch
    waits for a long snapshot (SQLITE_LOCK_WAIT_MS) instead of failing after the default 5 s."""
    url = f"sqlite:///{tmp_path / 'wait.db'}"
    with Sequencer(url):
        pass  # the schema
    store = Store(url)
    store.sqlite_lock_wait_ms = SQLITE_LOCK_WAIT_MS
    store.connect()
    try:
        assert store._conn.driver_connection.execute("PRAGMA busy_timeout").fetchone() == (SQLITE_LOCK_WAIT_MS,)
    finally:
        store.close()
    default = Store(url)
    default.connect()
    try:
        assert default._conn.driver_connection.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    finally:
        default.close()
