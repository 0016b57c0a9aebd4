"""Conservation under concurrent load (bench/conservation.py) in short on SQLite and
PostgreSQL; the long run is ``-m slow`` (and ``bulkex torture conservation``)."""

from __future__ import annotations

import random

import pytest

from bench.conservation import ConservationReport, _Readers, conservation
from bench.torture import _setup
from exchange import Store, upgrade

pytestmark = pytest.mark.timeout(600)


def _check(report: ConservationReport) -> None:
    for path in ("new_order", "bank_deposit", "request_withdrawal", "pay_deal", "confirm_delivery", "mass_cancel"):
        assert report.by_path.get(path, 0) > 0, (path, report.by_path)
    assert report.trades > 0
    assert report.deliveries_settled > 0
    assert report.journal_checks > 10
    assert report.sql_checks >= 1


def test_conservation_short(database_url: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"conservation seed {seed}")
    report = conservation(database_url, 4.0, seed, traders=6)
    _check(report)


def test_the_reader_notices_money_out_of_nowhere(database_url: str) -> None:
    """The check is not vacuous: custody moved without a deposit fails it."""
    upgrade(database_url)
    _setup(database_url, ["T000", "T001"])
    readers = _Readers(database_url, 0)
    store = Store(database_url)
    store.connect()
    try:
        readers.poll_journal(store)
    finally:
        store.close()
    readers.core.clearing.ledger.exchange[3] += 1  # BANK_CUSTODY, as a bug that mints money would
    with pytest.raises(AssertionError, match="does not balance"):
        readers._check_ledger()


@pytest.mark.slow
def test_conservation_long(database_url: str) -> None:
    seed = random.randrange(1 << 30)
    print(f"conservation seed {seed}")
    report = conservation(database_url, 120.0, seed, traders=16)
    _check(report)
