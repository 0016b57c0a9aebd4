"""The crash loop of ``bulkex torture crash`` (bench/torture.py) in short, on SQLite and
PostgreSQL: the real server killed with SIGKILL under load, every check after every restart.
The long run is ``-m slow`` (and the command in docs/reliability.md)."""

from __future__ import annotations

import random

import pytest

from bench.torture import TortureFailure, TortureReport, _check_acked, _setup, _Trader, crash
from exchange import upgrade

pytestmark = pytest.mark.timeout(600)


def _assert_exercised(report: TortureReport, iterations: int) -> None:
    assert report.iterations == iterations
    assert report.kills == iterations
    assert report.orders_acked > 0
    assert report.back_office_acked > 0
    assert report.snapshots_checked > 0, "no live snapshot was compared with the replay"
    assert report.deposits_fen > 0
    assert report.deliveries_settled > 0
    assert report.files_acked > 0, "no bank file was imported under the kills"
    assert report.replay_unavailable >= 1
    kinds = " ".join(report.faults_detected)
    for fault in ("corrupt snapshot", "altered snapshot", "torn last record", "flipped byte", "gap"):
        assert fault in kinds, report.faults_detected


def test_crash_loop_short(database_url: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"torture crash seed {seed}")
    # snapshots every 40 commands: even a slow short run takes some before each kill; each run at
    # least 1.5 s, so that on a slow machine too a deal is paid and delivered before the kills
    report = crash(database_url, 3, seed, clients=4, min_run_s=1.5, max_run_s=2.5, snapshot_every=40)
    print("\n".join(report.lines()))
    _assert_exercised(report, 3)


def test_the_checker_notices_a_lost_acknowledgement(database_url: str) -> None:
    """The check is not vacuous: an acknowledged order missing from the journal fails it."""
    upgrade(database_url)
    _setup(database_url, ["T000"])
    lost = _Trader("T000", "", "", acked={"T000-lost": (10**9, 10**9)})

    def fail(message: str) -> TortureFailure:
        return TortureFailure(message)

    with pytest.raises(TortureFailure, match="not in the journal"):
        _check_acked(database_url, [lost], {}, fail)
    with pytest.raises(TortureFailure, match="not in the journal"):
        _check_acked(database_url, [], {10**9: "bank_deposit"}, fail)


@pytest.mark.slow
def test_crash_loop_long(database_url: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"torture crash seed {seed}")
    report = crash(database_url, 40, seed, clients=8, max_run_s=4.0)
    print("\n".join(report.lines()))
    _assert_exercised(report, 40)
