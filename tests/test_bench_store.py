"""``bulkex bench store`` writes what the sequencer writes: its batches, built from the journal
benchmark's flow, leave the orders and trades tables equal to a replay of the journal they wrote
(the check the sequencer's own projections pass), on SQLite and PostgreSQL; and it reports its
figures, the database server's CPU where it can read it."""

from __future__ import annotations

from typing import Any

from bench.store import build_batches, measure, run
from exchange import Settings, load_instruments
from tests.test_exchange_sequencer import assert_projections_match_replay

INSTRUMENTS = load_instruments(Settings().instruments_file)


def test_the_benchmarks_batches_are_the_sequencers(database_url: str) -> None:
    batches = build_batches(INSTRUMENTS, 12, 150)
    assert [b.first_seq for b in batches[1:]] == [batches[0].last_seq + 1 + 150 * i for i in range(12)]
    figures = measure(database_url, batches)
    assert figures["commands"] == 12 * 150
    assert figures["rows"]["trades"] > 0
    assert figures["rows"]["order_updates"] > 0
    if database_url.startswith("sqlite"):
        assert figures["server_cpu_us_per_command"] is None
    else:
        assert figures["server_cpu_us_per_command"] is not None  # the server runs on this machine
    assert_projections_match_replay(database_url)


def test_run_prints_the_figures_and_a_json_line(tmp_path: Any) -> None:
    lines: list[str] = []
    result = run(database_url=f"sqlite:///{tmp_path / 'bulkex.db'}", batches=3, batch_commands=50, write=lines.append)
    assert lines[-1].startswith('{"benchmark":"store"')
    assert result["commands"] == 150
    assert result["execute_us_per_command"] > 0
    assert not list(tmp_path.glob("bulkex_bench_*")), "the scratch database is removed"
