"""Database faults (bench/dbfault.py): the writer on a private PostgreSQL cluster (initdb +
pg_ctl in a temporary directory, never the shared server) that is killed mid-run and started
again. Skipped only when the PostgreSQL binaries are missing and CI is not set."""

from __future__ import annotations

import os
import random

import pytest

from bench.dbfault import DbFaultReport, PostgresMissing, db_faults, postgres_bin

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
