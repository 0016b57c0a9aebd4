"""The warehouse read models (receipts, deliveries, stock) are written in the
sequencer's batch transaction and agree with the core after a simulated day
with deliveries, a dispute, a pledge and a load-out, on SQLite and PostgreSQL,
in small batches and in large ones (PostgreSQL's COPY path); a restart writes
nothing; the CLI reports from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from exchange import (
    OrderFlow,
    Sequencer,
    Settings,
    list_deliveries,
    list_receipts,
    load_instruments,
    make_engine,
    simulation_setup,
    warehouse_stock_report,
)
from exchange._projections import BatchProjection
from exchange._simulation import simulation_operator
from exchange._store import PG_TEXT_BATCH_ROWS
from exchange._warehouse_projection import WAREHOUSE_EVENT_KINDS
from matching import ACCEPTED, CONTINUOUS, SetTradingState
from warehouse import W_REJECTED, ConfirmDelivery, ConfirmLoadOut, PayDeal, PledgeReceipt, RequestLoadOut
from warehouse._model import ACTIVE, DL_DISPUTED, DL_PAID, DL_SETTLED, STEEL

INSTRUMENTS = load_instruments(Settings().instruments_file)
ACCOUNTS = [f"M{n:03d}" for n in range(8)]
BANK = "SIMBANK"


def fake_clock() -> Callable[[], int]:
    ticks = count(1_750_000_000_000_000_000, 1_000)
    return lambda: next(ticks)


def symbol_of(commodity: str, grade: str, group: str) -> str:
    return next(i.symbol for i in INSTRUMENTS if (i.commodity, i.grade, i.warehouse_group) == (commodity, grade, group))


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def simulated_day(seq: Sequencer) -> None:
    """Setup in one large batch, trading in small batches, then deliveries in every state."""
    seq.list_on_first_start(INSTRUMENTS)
    setup = [SetTradingState(i.symbol, CONTINUOUS) for i in INSTRUMENTS] + simulation_setup(INSTRUMENTS, ACCOUNTS)
    assert len(setup) > PG_TEXT_BATCH_ROWS  # one batch through COPY on PostgreSQL
    for ack in seq.execute(setup):
        assert W_REJECTED not in [e[0] for e in ack.events], ack
    seq.batch_max_commands = 40  # many batches: a receipt changes in one batch and again in a later one
    flow = OrderFlow(INSTRUMENTS, seed=21, first_seq=seq.last_seq + 1, accounts=len(ACCOUNTS))
    seq.execute(flow.take(1_200))
    w = seq.core.warehouse
    deals = sorted(w.open_deals)
    assert len(deals) >= 8, "the flow traded against receipts"
    commands: list[Any] = [PayDeal(deal_id, w.deliveries[deal_id].buyer) for deal_id in deals[:6]]
    seq.execute(commands)
    confirms: list[Any] = []
    for index, deal_id in enumerate(deals[:5]):
        d = w.deliveries[deal_id]
        operator = simulation_operator(w.instruments[d.instrument].group)
        pieces = sum(w.receipts[n].pieces for n in d.receipts) if w.instruments[d.instrument].commodity == STEEL else 0
        weight = d.contract_weight_kg if index < 4 else d.contract_weight_kg * 2  # the last one far outside tolerance
        confirms.append(ConfirmDelivery(deal_id, operator, weight, True, pieces))
    seq.execute(confirms)
    active = sorted(n for n, r in w.receipts.items() if r.state == ACTIVE)
    loaded, pledged = active[0], active[1]
    operator = simulation_operator(w.receipts[loaded].group)
    scale_kg = w.receipts[loaded].weight_kg - 35
    seq.execute(
        [
            RequestLoadOut(loaded, w.receipts[loaded].holder),
            ConfirmLoadOut(loaded, operator, scale_kg),
            PledgeReceipt(pledged, w.receipts[pledged].holder, BANK),
        ]
    )
    states = [w.deliveries[d].state for d in deals[:6]]
    assert states == [DL_SETTLED] * 4 + [DL_DISPUTED, DL_PAID], states


def check_tables_equal_core(url: str, seq: Sequencer) -> None:
    w = seq.core.warehouse
    rows = fetch(
        url,
        "SELECT number, holder, state, weight_kg, pieces, order_id, deal_id, warehouse_id, pledgee, scale_weight_kg, "
        "instrument, since_seq FROM warehouse_receipts",
    )
    assert {r[0]: r[1:] for r in rows} == {
        r.number: (
            r.holder, r.state, r.weight_kg, r.pieces, r.order_id, r.deal_id, r.warehouse_id, r.pledgee,
            r.scale_weight_kg, symbol_of(r.commodity, r.grade, r.group), r.since_seq,
        )
        for r in w.receipts.values()
    }  # fmt: skip
    rows = fetch(
        url,
        "SELECT deal_id, state, seller, buyer, contract_weight_kg, actual_weight_kg, amount_fen, refund_fen, "
        "extra_fen, receipts, buyer_receipt, residual_receipt, detail FROM warehouse_deliveries",
    )
    assert {r[0]: r[1:] for r in rows} == {
        d.deal_id: (
            d.state, d.seller, d.buyer, d.contract_weight_kg, d.actual_weight_kg, d.amount_fen, d.refund_fen,
            d.extra_fen, ",".join(d.receipts), d.buyer_receipt, d.residual_receipt, d.detail,
        )
        for d in w.deliveries.values()
    }  # fmt: skip
    assert max(r[0] for r in fetch(url, "SELECT last_seq FROM warehouse_receipts")) <= seq.last_seq
    # the stock report, per warehouse and instrument, summed per warehouse and group, is the core's
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            report = warehouse_stock_report(conn)
    finally:
        engine.dispose()
    by_group: dict[tuple[str, str], dict[str, int]] = {}
    group_of = {i.symbol: i.warehouse_group for i in INSTRUMENTS}
    for row in report:
        assert row["live_kg"] == row["taken_in_kg"] - row["loaded_out_kg"], row  # goods conserved per instrument
        total = by_group.setdefault((row["warehouse_id"], group_of[row["instrument"]]), {})
        for name, value in row.items():
            if name.endswith("_kg"):
                total[name] = total.get(name, 0) + value
    core_report = {(r["warehouse_id"], r["group"]): r for r in w.stock_report()}
    assert set(by_group) == set(core_report)
    for key, total in by_group.items():
        assert total == {name: core_report[key][name] for name in total}, key
    assert sum(r["loaded_out_kg"] for r in report) > 0
    assert sum(r["pledged_kg"] for r in report) > 0
    assert sum(r["in_delivery_kg"] for r in report) > 0
    assert sum(r["locked_kg"] for r in report) > 0


def test_read_models_follow_the_core_and_survive_a_restart(database_url: str) -> None:
    with Sequencer(database_url, clock=fake_clock()) as seq:
        simulated_day(seq)
        check_tables_equal_core(database_url, seq)
        live_hash = seq.state_hash()
        before = fetch(database_url, "SELECT * FROM warehouse_receipts ORDER BY number")
        stock_before = fetch(database_url, "SELECT * FROM warehouse_stock ORDER BY warehouse_id, instrument")
    with Sequencer(database_url, use_snapshots=False) as again:
        assert again.state_hash() == live_hash
        check_tables_equal_core(database_url, again)
    assert fetch(database_url, "SELECT * FROM warehouse_receipts ORDER BY number") == before
    assert fetch(database_url, "SELECT * FROM warehouse_stock ORDER BY warehouse_id, instrument") == stock_before


def test_cli_reports_stock_and_receipts_from_the_read_models(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["warehouse", "stock", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "no stock" in result.output
    with Sequencer(url, clock=fake_clock()) as seq:
        simulated_day(seq)
        holder = ACCOUNTS[3]
        held = sorted(n for n, r in seq.core.warehouse.receipts.items() if r.holder == holder)
    result = runner.invoke(app, ["warehouse", "stock", "--database-url", url, "--json"])
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    with engine.connect() as conn:
        assert json.loads(result.output)["stock"] == warehouse_stock_report(conn)
        assert len(list_receipts(conn, limit=5)) == 5
        disputed = list_deliveries(conn, state=DL_DISPUTED)
        assert len(disputed) == 1
        seller = disputed[0]["seller"]
        mine = list_deliveries(conn, member=seller, limit=10_000)
        assert disputed[0] in mine
        assert all(seller in (d["buyer"], d["seller"]) for d in mine)
        assert [d["deal_id"] for d in mine] == sorted((d["deal_id"] for d in mine), reverse=True)
    engine.dispose()
    result = runner.invoke(app, ["warehouse", "stock", "--database-url", url])
    assert "SIM-EAST-STEEL" in result.output
    assert "RB-HRB400E-20" in result.output
    result = runner.invoke(
        app, ["warehouse", "receipts", "--holder", holder, "--limit", "10000", "--database-url", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["receipts"]
    assert sorted(r["number"] for r in listed) == held
    assert {r["holder"] for r in listed} == {holder}
    result = runner.invoke(app, ["warehouse", "receipts", "--state", "pledged", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 2  # the header and the one pledged receipt
    result = runner.invoke(app, ["warehouse", "receipts", "--limit", "0", "--database-url", url])
    assert result.exit_code != 0


def test_the_orders_pass_hands_on_exactly_the_warehouse_events(database_url: str) -> None:
    """The sequencer finds a batch's warehouse events in the orders' pass over its events (most
    batches have none, and skip the warehouse rows): the orders' rows are the same as without
    the hand-on, and what is handed on is every warehouse event, in order, and nothing else."""
    event_lists: list[list[Any]] = []
    with Sequencer(database_url, clock=fake_clock()) as seq:
        seq.listeners.append(lambda pairs: event_lists.extend(ack.events for _command, ack in pairs))
        simulated_day(seq)
    expected = [e for events in event_lists for e in events if e[0] in WAREHOUSE_EVENT_KINDS]
    assert len({e[0] for e in expected}) == len(WAREHOUSE_EVENT_KINDS), "the day makes every kind"
    found: list[Any] = []
    traded = updated = 0
    for start in range(0, len(event_lists), 50):  # batches of 50 commands: later ones update earlier orders
        chunk = event_lists[start : start + 50]
        plain, handing = BatchProjection(), BatchProjection()
        plain.add_all(chunk, 5)
        handing.add_all(chunk, 5, WAREHOUSE_EVENT_KINDS, found)
        assert handing.order_inserts() == plain.order_inserts()
        assert handing.order_updates() == plain.order_updates()
        assert handing.trades == plain.trades
        traded += len(plain.trades)
        updated += len(plain.order_updates())
    assert found == expected
    assert traded > 0
    assert updated > 0
    with pytest.raises(AssertionError, match="projected kind"):
        BatchProjection().add_all(event_lists, 5, frozenset({ACCEPTED}), [])
