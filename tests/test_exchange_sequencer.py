"""Sequencer, journal, snapshots and recovery, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from itertools import count
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from exchange import (
    Ack,
    Core,
    JournalCorrupt,
    JournalGap,
    OrderFlow,
    OrdersModel,
    Sequencer,
    Settings,
    WriterLocked,
    WriterStopped,
    decode,
    load_instruments,
    make_engine,
    order_status,
    simulated_accounts,
    simulation_setup,
)
from matching import CONTINUOUS, Event, NewOrder, SetTradingState

INSTRUMENTS = load_instruments(Settings().instruments_file)


def fake_clock() -> Callable[[], int]:
    ticks = count(1_700_000_000_000_000_000, 1_000)
    return lambda: next(ticks)


def opening(sequencer: Sequencer) -> list[Any]:
    """List the instruments, then open them, register and fund the simulated members and give
    them warehouse receipts to sell."""
    sequencer.list_on_first_start(INSTRUMENTS)
    return [SetTradingState(i.symbol, CONTINUOUS) for i in INSTRUMENTS] + simulation_setup(
        INSTRUMENTS, simulated_accounts(50)
    )


def run_flow(url: str, commands_count: int, seed: int = 7, clock=None, **options) -> tuple[str, list[Ack]]:
    """Sequence the instruments, an opening and `commands_count` simulated orders; (state hash, acks)."""
    with Sequencer(url, clock=clock or fake_clock(), **options) as sequencer:
        acks = sequencer.execute(opening(sequencer))
        flow = OrderFlow(INSTRUMENTS, seed=seed, first_seq=sequencer.last_seq + 1)
        acks += sequencer.execute(flow.take(commands_count))
        return sequencer.state_hash(), acks


def execute_sql(url: str, sql: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(sql))
    engine.dispose()


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return rows


def test_replay_reproduces_the_live_state_hash(database_url: str) -> None:
    live_hash, acks = run_flow(database_url, 3000, snapshot_every_commands=0, batch_max_commands=256)
    assert sum(1 for ack in acks for e in ack.events if e[0] == 3) > 50, "the flow should trade"
    assert not any(e[0] == 116 for ack in acks for e in ack.events), "funded members pass pre-trade risk"
    assert sum(1 for ack in acks for e in ack.events if e[0] == 110) > 50, "trades become deals"
    with Sequencer(database_url) as sequencer:
        report = sequencer.recovery
        assert report is not None
        assert report.snapshot_seq == 0
        assert report.last_seq == len(acks) + len(INSTRUMENTS)
        assert report.state_hash == live_hash
        assert sequencer.state_hash() == live_hash
        sequencer.core.matching.check_invariants()


def test_same_commands_give_byte_identical_events(database_url: str, tmp_path) -> None:
    # one time for every batch: deliveries take their deadlines from the trade's time
    def fixed() -> int:
        return 1_700_000_000_000_000_000

    _, first = run_flow(database_url, 1500, clock=fixed, batch_max_commands=100)
    _, second = run_flow(f"sqlite:///{tmp_path / 'other.db'}", 1500, clock=fixed, batch_max_commands=999)
    assert orjson.dumps([a.events for a in first]) == orjson.dumps([a.events for a in second])
    assert [a.seq for a in first] == list(range(len(INSTRUMENTS) + 1, len(INSTRUMENTS) + 1 + len(first)))


def test_snapshot_and_tail_equal_full_replay(database_url: str) -> None:
    live_hash, _ = run_flow(database_url, 2500, snapshot_every_commands=700, batch_max_commands=100)
    snapshots = fetch(database_url, "SELECT seq FROM snapshots ORDER BY seq")
    assert len(snapshots) == 3, "older snapshots are pruned to the newest three"
    with Sequencer(database_url) as sequencer:
        report = sequencer.recovery
        assert report is not None
        assert report.snapshot_seq == snapshots[-1][0]
        assert report.skipped_snapshots == []
        assert 0 < report.replayed_commands < 700
        assert sequencer.state_hash() == live_hash
    with Sequencer(database_url, use_snapshots=False) as sequencer:
        assert sequencer.recovery is not None
        assert sequencer.recovery.snapshot_seq == 0
        assert sequencer.state_hash() == live_hash


@pytest.mark.parametrize("damage", ["body", "hash", "not_json"])
def test_corrupt_snapshot_falls_back_to_an_older_one(database_url: str, damage: str) -> None:
    live_hash, _ = run_flow(database_url, 2200, snapshot_every_commands=700, batch_max_commands=100)
    (newest,), (older,) = fetch(database_url, "SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2")
    if damage == "body":
        bad = "X'00'" if "sqlite" in database_url else "'\\x00'::bytea"
        execute_sql(database_url, f"UPDATE snapshots SET body = {bad} WHERE seq = {newest}")
    elif damage == "hash":
        execute_sql(database_url, f"UPDATE snapshots SET state_hash = '{'0' * 64}' WHERE seq = {newest}")
    else:
        body = zlib.compress(b'{"matching": 1}').hex()
        literal = f"X'{body}'" if "sqlite" in database_url else f"'\\x{body}'::bytea"
        execute_sql(database_url, f"UPDATE snapshots SET body = {literal} WHERE seq = {newest}")
    with Sequencer(database_url) as sequencer:
        report = sequencer.recovery
        assert report is not None
        assert report.snapshot_seq == older
        assert len(report.skipped_snapshots) == 1
        assert f"snapshot at seq {newest}" in report.skipped_snapshots[0]
        assert sequencer.state_hash() == live_hash


def test_journal_gap_is_named(database_url: str) -> None:
    run_flow(database_url, 300, snapshot_every_commands=0)
    execute_sql(database_url, "DELETE FROM journal WHERE seq = 123")
    with pytest.raises(JournalGap, match="seq 123 is missing") as info:
        Sequencer(database_url).open()
    assert info.value.missing_seq == 123
    assert info.value.found_seq == 124


def test_missing_first_record_is_a_gap(database_url: str) -> None:
    run_flow(database_url, 10, snapshot_every_commands=0)
    execute_sql(database_url, "DELETE FROM journal WHERE seq = 1")
    with pytest.raises(JournalGap, match="seq 1 is missing"):
        Sequencer(database_url).open()


def test_corrupt_journal_record_is_named(database_url: str) -> None:
    run_flow(database_url, 300, snapshot_every_commands=0)
    execute_sql(database_url, "UPDATE journal SET crc32 = crc32 + 1 WHERE seq = 200")
    with pytest.raises(JournalCorrupt, match="seq 200 is corrupt: checksum mismatch"):
        Sequencer(database_url).open()


def test_tail_after_snapshot_is_checked_too(database_url: str) -> None:
    run_flow(database_url, 1050, snapshot_every_commands=500, batch_max_commands=100)
    (snapshot_seq,) = fetch(database_url, "SELECT MAX(seq) FROM snapshots")[0]
    (last_seq,) = fetch(database_url, "SELECT MAX(seq) FROM journal")[0]
    assert snapshot_seq < last_seq - 1
    execute_sql(database_url, f"DELETE FROM journal WHERE seq = {snapshot_seq + 1}")
    with pytest.raises(JournalGap) as info:
        Sequencer(database_url).open()
    assert info.value.missing_seq == snapshot_seq + 1


@pytest.mark.parametrize("batch_max_commands", [333, 1500])  # PostgreSQL: one statement text / COPY
def test_projections_match_a_fresh_replay(database_url: str, batch_max_commands: int) -> None:
    run_flow(database_url, 4000, batch_max_commands=batch_max_commands, snapshot_every_commands=0)
    assert_projections_match_replay(database_url)


def assert_projections_match_replay(url: str) -> None:
    """The orders and trades tables equal the read model built by replaying the journal command by command."""
    core = Core()
    model = OrdersModel()
    for seq, ts_ns, kind, body, crc in fetch(url, "SELECT seq, ts_ns, kind, body, crc32 FROM journal ORDER BY seq"):
        out: list[Event] = []
        core.apply(decode(seq, kind, bytes(body), crc), seq, ts_ns, out)
        model.add(out, ts_ns)
    orders = fetch(
        url,
        "SELECT order_id, account, instrument, client_order_id, side, time_in_force, price_ticks, quantity_lots, "
        "filled_lots, open_lots, cancelled_lots, status, last_seq FROM orders ORDER BY order_id",
    )
    trades = fetch(
        url,
        "SELECT trade_id, seq, ts_ns, instrument, price_ticks, quantity_lots, buy_order_id, buy_account, "
        "sell_order_id, sell_account, aggressor FROM trades ORDER BY trade_id",
    )
    assert orders == [model.orders[k] for k in sorted(model.orders)]
    assert trades == [model.trades[k] for k in sorted(model.trades)]
    open_ids = set(core.matching.orders)
    for row in orders:
        order_id, quantity, filled, open_lots, cancelled, status = row[0], row[7], row[8], row[9], row[10], row[11]
        assert filled + open_lots + cancelled == quantity, row
        assert status == order_status(filled, open_lots, cancelled)
        assert (open_lots > 0) == (order_id in open_ids), row


def test_second_writer_is_refused_from_another_process(database_url: str) -> None:
    program = textwrap.dedent(
        f"""
        from exchange import Sequencer, WriterLocked
        try:
            Sequencer({database_url!r}).open()
        except WriterLocked as exc:
            print("refused:", exc)
            raise SystemExit(3)
        print("opened")
        """
    )
    with Sequencer(database_url) as first:
        first.start()
        result = subprocess.run(
            [sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert "another bulkex writer holds the writer lock" in result.stdout
        with pytest.raises(WriterLocked):  # a second connection of this process is refused too
            Sequencer(database_url).open()
        first.submit(SetTradingState(INSTRUMENTS[0].symbol, CONTINUOUS)).result(timeout=10)
    result = subprocess.run([sys.executable, "-c", program], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "opened" in result.stdout


def test_threaded_submissions_are_acknowledged_after_commit(database_url: str) -> None:
    seen_by_listener: list[int] = []
    with Sequencer(database_url, clock=fake_clock(), batch_max_commands=64) as sequencer:
        sequencer.execute(opening(sequencer))
        sequencer.listeners.append(lambda pairs: seen_by_listener.extend(ack.seq for _, ack in pairs))
        sequencer.start()
        flow = OrderFlow(INSTRUMENTS, seed=3, first_seq=sequencer.last_seq + 1)
        futures = [sequencer.submit(command) for command in flow.take(2000)]
        acks = [f.result(timeout=30) for f in futures]
        assert [a.seq for a in acks] == list(range(acks[0].seq, acks[0].seq + 2000))
        assert all(a.ts_ns >= b.ts_ns for a, b in zip(acks[1:], acks, strict=False))
        journaled = fetch(database_url, "SELECT COUNT(*), MAX(seq) FROM journal")[0]
        assert journaled == (acks[-1].seq, acks[-1].seq)
        live_hash = sequencer.state_hash()
    assert seen_by_listener == [a.seq for a in acks]
    with Sequencer(database_url) as sequencer:
        assert sequencer.state_hash() == live_hash
    assert_projections_match_replay(database_url)


def test_failed_commit_stops_the_writer(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Sequencer(database_url, clock=fake_clock()) as sequencer:
        sequencer.execute(opening(sequencer))
        committed_seq = sequencer.last_seq
        committed_hash = sequencer.state_hash()
        store = sequencer._store
        assert store is not None

        def broken_write(batch: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(store, "write", broken_write)
        sequencer.start()
        future = sequencer.submit(NewOrder("M001", INSTRUMENTS[0].symbol, "x1", 0, 3500, 1))
        with pytest.raises(WriterStopped, match="disk full"):
            future.result(timeout=10)
        with pytest.raises(WriterStopped):
            sequencer.submit(NewOrder("M001", INSTRUMENTS[0].symbol, "x2", 0, 3500, 1))
        assert not sequencer.running
    with Sequencer(database_url) as sequencer:
        assert sequencer.last_seq == committed_seq
        assert sequencer.state_hash() == committed_hash


def test_unregistered_command_is_refused_at_submit(database_url: str) -> None:
    with Sequencer(database_url) as sequencer:
        sequencer.start()
        with pytest.raises(TypeError, match="not a registered command"):
            sequencer.submit(object())
        assert sequencer.running


def test_instruments_are_listed_only_on_first_start(database_url: str) -> None:
    with Sequencer(database_url) as sequencer:
        assert sequencer.list_on_first_start(INSTRUMENTS) == len(INSTRUMENTS)
        assert sorted(sequencer.core.trading_states()) == sorted(i.symbol for i in INSTRUMENTS)
    with Sequencer(database_url) as sequencer:
        assert sequencer.list_on_first_start(INSTRUMENTS) == 0
        assert sequencer.last_seq == len(INSTRUMENTS)


def test_submit_batch_submit_many_and_submit_share_one_order(database_url: str) -> None:
    """Groups stay in submission order and whole; every kind of ticket answers after the commit."""
    with Sequencer(database_url, clock=fake_clock(), batch_max_commands=50) as sequencer:
        sequencer.execute(opening(sequencer))
        sequencer.start()
        flow = OrderFlow(INSTRUMENTS, seed=11, first_seq=sequencer.last_seq + 1)
        commands = flow.take(600)
        first_seq = sequencer.last_seq + 1
        group = sequencer.submit_batch(commands[:250])
        many = sequencer.submit_many(commands[250:400])
        singles = [sequencer.submit(command) for command in commands[400:]]
        acks = group.result(timeout=30) + [t.result(timeout=30) for t in many + singles]
        assert [a.seq for a in acks] == list(range(first_seq, first_seq + 600))
        (journaled,) = fetch(database_url, f"SELECT COUNT(*) FROM journal WHERE seq >= {first_seq}")[0]
        assert journaled == 600
        live_hash = sequencer.state_hash()
    with Sequencer(database_url, use_snapshots=False) as replayed:
        assert replayed.state_hash() == live_hash
    assert_projections_match_replay(database_url)


def test_background_snapshots_are_written_and_recover_the_live_state(database_url: str) -> None:
    """Snapshots exported by a forked child land in the journal's database with a later batch
    (or at close) and restart from them reproduces the live state hash."""
    with Sequencer(database_url, clock=fake_clock(), batch_max_commands=100, snapshot_every_commands=400) as sequencer:
        sequencer.execute(opening(sequencer))
        sequencer.start()
        flow = OrderFlow(INSTRUMENTS, seed=5, first_seq=sequencer.last_seq + 1)
        for _ in range(10):
            sequencer.submit_batch(flow.take(200)).result(timeout=30)
        live_hash = sequencer.state_hash()
        last_seq = sequencer.last_seq
    snapshots = [seq for (seq,) in fetch(database_url, "SELECT seq FROM snapshots ORDER BY seq")]
    assert snapshots, "no snapshot was written"
    assert all(seq <= last_seq for seq in snapshots)
    with Sequencer(database_url) as sequencer:
        report = sequencer.recovery
        assert report is not None
        assert report.snapshot_seq == snapshots[-1]
        assert report.skipped_snapshots == []
        assert sequencer.state_hash() == live_hash
    with Sequencer(database_url, use_snapshots=False) as replayed:
        assert replayed.state_hash() == live_hash
