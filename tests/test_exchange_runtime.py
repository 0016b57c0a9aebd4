"""Settings, tickets, limits and odd inputs of the exchange runtime."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from clearing._engine import Deal
from exchange import (
    ConfigError,
    Core,
    OrderFlow,
    QueueFull,
    Sequencer,
    Settings,
    Ticket,
    WriterStopped,
    canonical_json,
    funding_commands,
    load_instruments,
    make_engine,
    stocking_commands,
)
from matching import CONTINUOUS, MassCancel, NewOrder, SetTradingState
from matching._book import ORDER_FIELDS, Order

INSTRUMENTS = load_instruments(Settings().instruments_file)


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'bulkex.db'}"
    assert settings.batch_max_commands == 4096
    assert settings.snapshot_every_commands == 100_000
    assert settings.instruments_file.name == "instruments.toml"
    monkeypatch.setenv("BULKEX_BATCH_MAX_COMMANDS", "17")
    monkeypatch.setenv("BULKEX_DATABASE_URL", "postgresql://u@h/db")
    settings = Settings()
    assert settings.batch_max_commands == 17
    assert settings.database_url == "postgresql://u@h/db"
    monkeypatch.setenv("BULKEX_BATCH_MAX_COMMANDS", "0")
    with pytest.raises(ValueError, match="batch_max_commands"):
        Settings()


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        Sequencer("sqlite:///:memory:").open()
    with pytest.raises(ConfigError, match="only sqlite and postgresql"):
        make_engine("mysql://x@y/z")


def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'bulkex.db'}"
    with Sequencer(url) as sequencer:
        assert sequencer.last_seq == 0
    assert (tmp_path / "a" / "b" / "bulkex.db").exists()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()


def test_export_state_round_trips_through_the_core(tmp_path: Path) -> None:
    """Snapshots rely on from_state(export_state()) giving back the same state."""
    with Sequencer(f"sqlite:///{tmp_path / 'x.db'}", snapshot_every_commands=0) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute([SetTradingState(i.symbol, CONTINUOUS) for i in INSTRUMENTS])
        sequencer.execute(OrderFlow(INSTRUMENTS, seed=11, first_seq=0).setup())
        sequencer.execute(OrderFlow(INSTRUMENTS, seed=11, first_seq=sequencer.last_seq + 1).take(3000))
        state = sequencer.core.export_state()
    assert state["clearing"]["deals"], "the flow traded: deals hold money"
    rebuilt = Core.from_state(state)
    assert canonical_json(rebuilt.export_state()) == canonical_json(state)
    rebuilt.check_invariants()


@pytest.mark.parametrize("filler", [0, 600])  # PostgreSQL: small batches as one statement text, large by COPY
def test_strings_with_tabs_backslashes_and_newlines_survive_the_projections(database_url: str, filler: int) -> None:
    # a member id may hold backslashes, quotes and any printable letter (clearing refuses tabs,
    # line breaks, spaces, commas, bars and double quotes in member ids); a client order id anything printable
    account = "M1\\x'é"
    clid = "b\\1'\"é"
    symbol = INSTRUMENTS[0].symbol
    with Sequencer(database_url) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute([SetTradingState(symbol, CONTINUOUS)])
        sequencer.execute(funding_commands([account, "M2", *(f"F{n}" for n in range(filler))]))
        sequencer.execute(stocking_commands(INSTRUMENTS[:1], ["M2"], receipts_each=1, lots_each=1))
        price = INSTRUMENTS[0].reference_price_ticks
        low = price - 50
        others = [NewOrder(f"F{n}", symbol, f"f{n}", 0, low, 1) for n in range(filler)]
        sequencer.execute(
            [*others, NewOrder(account, symbol, clid, 0, price, 2), NewOrder("M2", symbol, "s\\1", 1, price, 1)]
        )
        sequencer.execute([MassCancel(account, symbol), *(MassCancel(f"F{n}", symbol) for n in range(filler))])
    engine = make_engine(database_url)
    with engine.connect() as conn:
        orders = conn.execute(
            text("SELECT account, client_order_id, status FROM orders WHERE account NOT LIKE 'F%' ORDER BY order_id")
        ).all()
        trades = conn.execute(text("SELECT buy_account, sell_account FROM trades")).all()
    engine.dispose()
    assert [tuple(r) for r in orders] == [(account, clid, "cancelled"), ("M2", "s\\1", "filled")]
    assert [tuple(r) for r in trades] == [(account, "M2")]


def test_ticket_result_callbacks_and_errors() -> None:
    ticket: Ticket[int] = Ticket()
    seen: list[int] = []
    ticket.add_done_callback(lambda t: seen.append(t.result()))
    assert not ticket.done()
    with pytest.raises(TimeoutError):
        ticket.result(timeout=0.01)
    threading.Timer(0.02, ticket.set_result, args=(5,)).start()
    assert ticket.result(timeout=5) == 5
    assert seen == [5]
    ticket.add_done_callback(lambda t: seen.append(t.result() + 1))
    assert seen == [5, 6]
    with pytest.raises(AssertionError, match="once"):
        ticket.set_result(6)
    failed: Ticket[int] = Ticket()
    failed.set_exception(WriterStopped("test"))
    assert isinstance(failed.exception(), WriterStopped)
    with pytest.raises(WriterStopped):
        failed.result()


def test_submit_many_and_the_queue_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with Sequencer(url, queue_max_commands=100) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute(OrderFlow(INSTRUMENTS, seed=5, first_seq=0).setup())
        sequencer.start()
        flow = OrderFlow(INSTRUMENTS, seed=5, first_seq=sequencer.last_seq + 1)
        tickets = sequencer.submit_many(flow.take(100))
        acks = [t.result(timeout=30) for t in tickets]
        assert [a.seq for a in acks] == list(range(acks[0].seq, acks[0].seq + 100))
        with pytest.raises(QueueFull, match="100 commands"):
            sequencer.submit_many(flow.take(101))


def test_cli_db_upgrade_and_help(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "newest schema" in result.output
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0
    assert "journal" in result.output


def test_cli_demo_twice_recovers(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = runner.invoke(app, ["demo", "--database-url", url, "--seed", "3"])
    assert first.exit_code == 0, first.output
    assert "new journal" in first.output
    final_hash = first.output.strip().splitlines()[-2].rsplit(" ", 1)[-1]
    second = runner.invoke(app, ["demo", "--database-url", url, "--seed", "4"])
    assert second.exit_code == 0, second.output
    assert f"state hash {final_hash}" in second.output.splitlines()[1]


def test_exported_rows_list_their_fields_in_the_declared_order(tmp_path: Path) -> None:
    """Order.to_list and Deal.to_list are written out (a snapshot exports every resting order and
    every deal); their order is the one ORDER_FIELDS and Deal._FIELDS declare, and what they list
    builds the same object back (as from_state does)."""
    with Sequencer(f"sqlite:///{tmp_path / 'x.db'}", snapshot_every_commands=0) as sequencer:
        sequencer.list_on_first_start(INSTRUMENTS)
        sequencer.execute([SetTradingState(i.symbol, CONTINUOUS) for i in INSTRUMENTS])
        sequencer.execute(OrderFlow(INSTRUMENTS, seed=12, first_seq=0).setup())
        sequencer.execute(OrderFlow(INSTRUMENTS, seed=12, first_seq=sequencer.last_seq + 1).take(2000))
        core = sequencer.core
    orders = list(core.matching.orders.values())
    deals = list(core.clearing.deals.values())
    assert orders, "orders rest"
    assert deals, "the flow traded"
    for order in orders:
        row: list[Any] = order.to_list()  # the record's fields, passed back positionally below
        assert row == [getattr(order, name) for name in ORDER_FIELDS]
        assert Order(*row).to_list() == row  # every constructor argument, in its place
    for deal in deals:
        row = deal.to_list()
        assert row == [getattr(deal, name) for name in Deal._FIELDS]
        assert Deal.from_list(row).to_list() == row
