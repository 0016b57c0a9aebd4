"""The commit timeout (BULKEX_COMMIT_TIMEOUT_MS): a commit that PostgreSQL does not answer is cut
at the bound and the writer stops with DatabaseTimeout; a shorter stall is ridden out. The
stall is made by a fault proxy (bench/_pgproxy.py) between the writer and the shared server:
bytes held, sockets open, which TCP's own timeouts cannot see."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from bench._pgproxy import FaultProxy
from exchange import DatabaseTimeout, Sequencer, WriterStopped, pg_connect_args, upgrade
from matching import HALTED, SetTradingState

pytestmark = pytest.mark.postgres

BOUND_MS = 1_000


def _through(proxy: FaultProxy, url: str) -> str:
    parsed = make_url(url)
    assert parsed.database is not None
    return proxy.url(database=parsed.database, user=parsed.username or "postgres")


def test_libpq_bounds_follow_the_timeout() -> None:
    assert pg_connect_args(0) == {}
    args = pg_connect_args(10_000)
    assert args["tcp_user_timeout"] == 10_000
    assert args["connect_timeout"] == 10
    assert args["keepalives"] == 1
    assert args["keepalives_idle"] * 1 + args["keepalives_interval"] * args["keepalives_count"] <= 10
    assert pg_connect_args(1_000)["connect_timeout"] == 2  # libpq's own floor


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_hung_commit_stops_the_writer_at_the_bound(database_url: str) -> None:
    upgrade(database_url)
    with FaultProxy(make_url(database_url).port or 5432) as proxy:
        sequencer = Sequencer(_through(proxy, database_url), commit_timeout_ms=BOUND_MS)
        sequencer.open()
        try:
            sequencer.start()
            sequencer.submit(SetTradingState("NONE", HALTED)).result(timeout=10)  # flows
            proxy.freeze()
            began = time.monotonic()
            ticket = sequencer.submit(SetTradingState("NONE", HALTED))
            with pytest.raises(WriterStopped, match="DatabaseTimeout") as raised:
                ticket.result(timeout=10)
            took = time.monotonic() - began
            assert BOUND_MS / 1000 <= took <= BOUND_MS / 1000 * 1.05 + 0.5, took
            assert "1000 ms" in str(raised.value)
            assert not sequencer.running
            with pytest.raises(WriterStopped):
                sequencer.submit(SetTradingState("NONE", HALTED))
        finally:
            began = time.monotonic()
            sequencer.close()  # still frozen: the locks' release is cut at the bound too
            assert time.monotonic() - began <= 2 * BOUND_MS / 1000 * 1.05 + 1.0
            proxy.thaw()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_stall_below_the_bound_is_ridden_out(database_url: str) -> None:
    upgrade(database_url)
    with (
        FaultProxy(make_url(database_url).port or 5432) as proxy,
        Sequencer(_through(proxy, database_url), commit_timeout_ms=3 * BOUND_MS) as sequencer,
    ):
        sequencer.start()
        sequencer.submit(SetTradingState("NONE", HALTED)).result(timeout=10)
        proxy.freeze()
        ticket = sequencer.submit(SetTradingState("NONE", HALTED))
        time.sleep(1.5)
        assert not ticket.done(), "acknowledged while the database was frozen"
        proxy.thaw()
        ack = ticket.result(timeout=10)
        assert ack.seq == sequencer.committed_seq
        assert sequencer.running


def test_database_timeout_names_the_setting() -> None:
    message = str(DatabaseTimeout("commit of seq 5..9", 10_000))
    assert "10000 ms" in message
    assert "BULKEX_COMMIT_TIMEOUT_MS" in message
