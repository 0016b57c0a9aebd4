"""The PostgreSQL writer lock is released when the writer closes, not a moment later.

Found by the database fault runs: a writer opened right after another one closed was refused
(WriterLocked) now and then, because a closed connection's server process lets go of its
advisory lock only when it ends, shortly after the client closed the socket. ``Store.close``
now unlocks explicitly first.

The writer's data connection holds a second advisory lock, so that a writer cut off mid-commit
keeps the next one out until its session (and any commit still in flight in it) is over.
"""

from __future__ import annotations

import psycopg2
import pytest

from exchange import Store, WriterLocked, upgrade
from exchange._store import WRITER_LOCK_KEY

pytestmark = pytest.mark.postgres


def test_writer_lock_released_on_close(postgres_database: str) -> None:
    url = postgres_database
    upgrade(url)
    admin = psycopg2.connect(url)
    admin.autocommit = True
    cur = admin.cursor()
    held_after_close = 0
    try:
        for _ in range(50):
            store = Store(url)
            store.lock()
            store.close()
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            held_after_close += cur.fetchone()[0]
    finally:
        admin.close()
    assert held_after_close == 0


def test_next_writer_starts_at_once(postgres_database: str) -> None:
    upgrade(postgres_database)
    for _ in range(50):
        first = Store(postgres_database)
        first.lock()
        first.close()
        second = Store(postgres_database)
        second.lock()  # WriterLocked now and then before the fix
        second.close()


def test_data_session_of_a_lost_writer_keeps_the_next_one_out(postgres_database: str) -> None:
    """The writer's data connection holds DATA_LOCK_KEY as well: while the data session of a
    writer whose lock session is gone is still open on the server (it may still be running a
    commit sent before its connection was cut), a new writer is refused, and let in once that
    session ends."""
    upgrade(postgres_database)
    first = Store(postgres_database)
    first.lock()
    first.connect()
    lock_conn = first._lock_conn
    assert lock_conn is not None
    cursor = lock_conn.cursor()
    cursor.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK_KEY,))  # its lock session, as if gone
    lock_conn.commit()
    second = Store(postgres_database)
    second.lock()
    with pytest.raises(WriterLocked, match="data session"):
        second.connect()
    second.close()
    first.close()
    third = Store(postgres_database)
    third.lock()
    third.connect()  # the data session ended: in
    third.close()


def test_readers_connect_beside_the_writer(postgres_database: str) -> None:
    """connect() without lock() (tools reading the journal) takes no lock and is never refused."""
    upgrade(postgres_database)
    writer = Store(postgres_database)
    writer.lock()
    writer.connect()
    try:
        reader = Store(postgres_database)
        reader.connect()
        reader.close()
    finally:
        writer.close()
