"""Database faults (bench/dbfault.py): the writer on a private PostgreSQL cluster (initdb +
pg_ctl in a temporary directory, never the shared server) that is killed mid-run and started
again, or reached through a fault proxy (bench/_pgproxy.py) that freezes (a hung server or a
partition: bytes held, sockets open) or resets its connections. Skipped only when the
PostgreSQL binaries are missing and CI is not set."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from bench.dbfault import DbFaultReport, DbHangReport, PostgresMissing, db_faults, db_hang, postgres_bin
from exchange import DEFAULT_COMMIT_TIMEOUT_MS

pytestmark = [pytest.mark.timeout(600), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _binaries() -> None:
    try:
        postgres_bin()
    except PostgresMissing as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (CI=true: the database fault tests must run)")
        pytest.skip(str(exc))


def _check(report: DbFaultReport, rounds: int) -> None:
    assert report.rounds == rounds
    assert report.acked > 0
    assert report.refused_after_stop > 0, "new submissions after the stop were never refused"
    assert report.open_refused, "opening a writer while the database was down was not tried"
    assert report.gateway_accepted > 0
    assert report.gateway_unavailable >= 80, "the gateway did not keep refusing after the database died"


def test_database_killed_and_back_short() -> None:
    seed = random.randrange(1 << 30)
    print(f"dbfault seed {seed}")
    report = db_faults(2, seed)
    print("\n".join(report.lines()))
    _check(report, 2)


@pytest.mark.slow
def test_database_killed_and_back_long() -> None:
    seed = random.randrange(1 << 30)
    print(f"dbfault seed {seed}")
    report = db_faults(20, seed)
    print("\n".join(report.lines()))
    _check(report, 20)


# ------------------------------------------------- hung (frozen) and reset (cut) connections


def _run(fault: str, short_freeze_s: float, long_freeze_s: float, **options: Any) -> DbHangReport:
    """One db_hang run on a fresh seed, printed (seed first, so a failure can be replayed)."""
    seed = random.randrange(1 << 30)
    print(f"dbfault {fault} seed {seed}")
    report = db_hang(fault, seed, short_freeze_s, long_freeze_s, **options)
    print("\n".join(report.lines()))
    return report


def _check_hang(report: DbHangReport, rounds: int) -> None:
    assert len(report.rounds) == 2 * rounds
    assert report.acked > 0
    assert report.acked_while_frozen == 0
    assert report.queued_at_thaw > 0, "no short freeze held a commit"
    assert len(report.stopped_after_s) == rounds
    bound_s = report.commit_timeout_ms / 1000
    assert all(bound_s - 0.5 <= s <= bound_s * 1.05 + 1.0 for s in report.stopped_after_s), report.stopped_after_s
    assert report.stop_reasons
    assert all("DatabaseTimeout" in reason for reason in report.stop_reasons), report.stop_reasons
    assert "timeout expired" in report.open_frozen, report.open_frozen
    assert 0 < report.close_frozen_s <= bound_s * 1.05 + 3.0


def _check_cut(report: DbHangReport, rounds: int) -> None:
    assert len(report.rounds) == rounds
    assert report.acked > 0
    assert len(report.stopped_after_s) == rounds
    assert all(s < 2.0 for s in report.stopped_after_s), report.stopped_after_s  # the next commit fails
    assert not any("DatabaseTimeout" in reason for reason in report.stop_reasons), report.stop_reasons
    assert report.open_cut, "opening a writer through the cut proxy was not tried"


def test_database_frozen_short() -> None:
    """A freeze of 1 s with a 3 s bound is ridden out; one of 4.5 s stops the writer at 3 s."""
    _check_hang(_run("hang", 1.0, 4.5, commit_timeout_ms=3_000), 1)


def test_database_cut_short() -> None:
    _check_cut(_run("cut", 0.0, 0.0, commit_timeout_ms=3_000, rounds=2), 2)


@pytest.mark.slow
def test_database_frozen_long() -> None:
    """The default bound (10 s): freezes of 6 s (ridden out) and 14 s (stopped), three times."""
    report = _run("hang", 6.0, 14.0, rounds=3)
    assert report.commit_timeout_ms == DEFAULT_COMMIT_TIMEOUT_MS
    _check_hang(report, 3)


@pytest.mark.slow
def test_database_cut_long() -> None:
    _check_cut(_run("cut", 0.0, 0.0, rounds=10), 10)


def test_proxy_freeze_holds_bytes_and_thaw_delivers_them() -> None:
    """The proxy alone, on an echo server: frozen, nothing comes back and the socket stays open;
    thawed, the held bytes arrive in order; cut, the client sees a reset."""
    import socket
    import threading

    from bench._pgproxy import FaultProxy

    echo = socket.create_server(("127.0.0.1", 0))
    server_reset = threading.Event()

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except ConnectionResetError:
                server_reset.set()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with FaultProxy(echo.getsockname()[1]) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        client.sendall(b"one")
        assert client.recv(16) == b"one"
        proxy.freeze()
        client.sendall(b"two")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(16)
        proxy.thaw()
        client.settimeout(5)
        got = b""
        while len(got) < 3:
            got += client.recv(16)
        assert got == b"two"
        proxy.cut()
        with pytest.raises(ConnectionResetError):  # an RST, not an orderly close (recv would give b"")
            client.recv(16)
        client.close()
        server.join(timeout=5)
        assert server_reset.is_set(), "the server's side was not reset"
    echo.close()


def test_cli_default_commit_timeout_is_the_exchange_default() -> None:
    from api._torture_cli import COMMIT_TIMEOUT_MS

    assert COMMIT_TIMEOUT_MS == DEFAULT_COMMIT_TIMEOUT_MS
