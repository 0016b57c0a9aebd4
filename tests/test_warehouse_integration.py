"""The warehouse inside the running exchange: sell orders lock receipts, trades
open deliveries, delivery versus payment settles through clearing, all
through the sequencer and the journal on SQLite and PostgreSQL; a restart
replays to the same state."""

from __future__ import annotations

from typing import Any

import pytest

from clearing import C_DEAL, BankDeposit, RegisterMember
from clearing._ledger import EXCHANGE, RISK_FUND
from exchange import Core, Sequencer, Settings, load_instruments
from exchange._warehouse_rule import X_RECEIPT_RULE, RequireReceipts
from matching import (
    ACCEPTED,
    BUY,
    CONTINUOUS,
    REJECTED,
    SELL,
    TRADE,
    AmendOrder,
    CancelOrder,
    ListInstrument,
    NewOrder,
    SetTradingState,
)
from warehouse import (
    DL_DEFAULTED,
    DL_SETTLED,
    W_DELIVERY,
    W_DELIVERY_STATE,
    W_LOCK,
    W_REJECTED,
    AddOperator,
    AddWarehouse,
    ConfirmDelivery,
    ConfirmReceipt,
    LockReceipts,
    PayDeal,
    RegisterReceipt,
    SweepDeadlines,
    VoidReceipt,
    WarehouseCode,
)
from warehouse._model import ACTIVE, DELIVERED, LOCKED

INSTRUMENTS = load_instruments(Settings().instruments_file)
REBAR = next(i for i in INSTRUMENTS if i.symbol == "RB-HRB400E-20")
COIL = next(i for i in INSTRUMENTS if i.symbol == "HC-Q235B-5.75")
BANK = "ICBC"
DATE = "2025-03-03"
DEPOSIT_FEN = 100_000_000  # 1 000 000 CNY each
T0 = 1_750_000_000 * 10**9
DAY_NS = 86_400 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now_ns = T0

    def __call__(self) -> int:
        return self.now_ns


def kinds(events: list[Any]) -> list[int]:
    return [e[0] for e in events]


def one(events: list[Any], kind: int) -> Any:
    found = [e for e in events if e[0] == kind]
    assert len(found) == 1, events
    return found[0]


def steel_receipt(operator: str, number: str, holder: str, weight_kg: int) -> RegisterReceipt:
    return RegisterReceipt(
        operator, number, holder, REBAR.symbol, weight_kg, weight_kg // 2_000, f"HEAT-{number}", f"CERT-{number}",
        0, 0, 0, "HRB400E", "20 mm x 12 m", "bay 1",
    )  # fmt: skip


def setup(seq: Sequencer) -> None:
    """Two members funded, two steel warehouses with an operator each, the
    seller's 120 t of rebar registered in W1 and confirmed, rebar requiring receipts."""
    seq.list_on_first_start(INSTRUMENTS)
    acks = seq.execute(
        [
            SetTradingState(REBAR.symbol, CONTINUOUS),
            SetTradingState(COIL.symbol, CONTINUOUS),
            RegisterMember("BUYER", BANK, "SUB-B"),
            RegisterMember("SELLER", BANK, "SUB-S"),
            BankDeposit(BANK, "D1", "BUYER", DEPOSIT_FEN, DATE),
            BankDeposit(BANK, "D2", "SELLER", DEPOSIT_FEN, DATE),
            AddWarehouse("W1", "East Steel Yard", ("EAST-STEEL",), "staff1"),
            AddWarehouse("W2", "Mixed Port", ("EAST-STEEL",), "staff1"),
            AddOperator("op1", "W1", "staff1"),
            AddOperator("op2", "W2", "staff1"),
            steel_receipt("op1", "R1", "SELLER", 120_000),
            ConfirmReceipt("R1", "SELLER"),
            RequireReceipts(REBAR.symbol, True, "staff1"),
        ]
    )
    for ack in acks:
        assert W_REJECTED not in kinds(ack.events), ack
        assert REJECTED not in kinds(ack.events), ack
    assert X_RECEIPT_RULE in kinds(acks[-1].events)


def trade(seq: Sequencer, lots: int = 10) -> int:
    """The seller's sell order rests (locking receipts), the buyer lifts it; returns the deal id."""
    sell = seq.execute([NewOrder("SELLER", REBAR.symbol, "s1", SELL, 3_500, lots)])[0]
    lock = one(sell.events, W_LOCK)
    assert lock[2] == sell.seq  # the order id is the command's sequence number
    assert lock[6] == lots * 10_000
    assert seq.core.warehouse.receipts["R1"].state == LOCKED
    buy = seq.execute([NewOrder("BUYER", REBAR.symbol, "b1", BUY, 3_500, lots)])[0]
    t = one(buy.events, TRADE)
    deal = one(buy.events, C_DEAL)
    delivery = one(buy.events, W_DELIVERY)
    assert t[2] == deal[2] == delivery[2]  # one id: the trade's, the deal's, the delivery's
    assert delivery[5] == sell.seq
    assert delivery[10] == lots * 10_000
    assert not seq.core.warehouse.locks  # all of the order traded: the lock ended
    return int(t[2])


def test_full_deal_from_receipt_to_settlement_and_restart(database_url: str) -> None:
    with Sequencer(database_url) as seq:
        setup(seq)
        # a member without receipts may not sell rebar (receipts required), and nothing is frozen
        ack = seq.execute([NewOrder("BUYER", REBAR.symbol, "x1", SELL, 3_500, 1)])[0]
        assert one(ack.events, REJECTED)[4] == 81
        assert seq.core.clearing.ledger.available("BUYER") == DEPOSIT_FEN
        # coil requires receipts too (every listed instrument does, by default)
        ack = seq.execute([NewOrder("BUYER", COIL.symbol, "x2", SELL, 3_800, 1)])[0]
        assert one(ack.events, REJECTED)[4] == 81
        # with the rule turned off by staff, a seller without receipts trades as before
        seq.execute([RequireReceipts(COIL.symbol, False, "staff1")])
        ack = seq.execute([NewOrder("BUYER", COIL.symbol, "x3", SELL, 3_800, 1)])[0]
        assert ACCEPTED in kinds(ack.events)
        seq.execute([CancelOrder("BUYER", ack.seq)])
        # the lock follows the order: a cancel gives the receipt back; an amend up beyond the
        # seller's receipts is refused, one within what the locked receipt holds is accepted
        sell = seq.execute([NewOrder("SELLER", REBAR.symbol, "s0", SELL, 3_600, 10)])[0]
        assert seq.core.warehouse.receipts["R1"].state == LOCKED
        ack = seq.execute([AmendOrder("SELLER", sell.seq, 3_600, 13)])[0]
        assert one(ack.events, REJECTED)[4] == 81
        assert seq.core.warehouse.locks[sell.seq].open_weight_kg == 100_000
        ack = seq.execute([AmendOrder("SELLER", sell.seq, 3_600, 12)])[0]
        assert seq.core.warehouse.locks[sell.seq].open_weight_kg == 120_000
        assert seq.core.matching.orders[sell.seq].open_lots == 12
        ack = seq.execute([AmendOrder("SELLER", sell.seq, 3_600, 4)])[0]
        assert seq.core.warehouse.locks[sell.seq].open_weight_kg == 40_000
        seq.execute([CancelOrder("SELLER", sell.seq)])
        assert seq.core.warehouse.receipts["R1"].state == ACTIVE
        assert not seq.core.warehouse.locks
        # the core alone locks receipts
        ack = seq.execute([LockReceipts(99, "SELLER", REBAR.symbol, 1, ())])[0]
        assert one(ack.events, W_REJECTED)[3] == WarehouseCode.CORE_ONLY

        deal_id = trade(seq)
        # the buyer pays into escrow
        ack = seq.execute([PayDeal(deal_id, "BUYER")])[0]
        assert one(ack.events, W_DELIVERY_STATE)[3] == "paid"
        # the operator of W2 cannot confirm W1's delivery nor void W1's goods
        ack = seq.execute([ConfirmDelivery(deal_id, "op2", 98_765, True, 49)])[0]
        assert one(ack.events, W_REJECTED)[3] == WarehouseCode.NOT_YOUR_WAREHOUSE
        seq.execute([steel_receipt("op1", "R9", "SELLER", 5_000)])
        ack = seq.execute([VoidReceipt("R9", "op2")])[0]
        assert one(ack.events, W_REJECTED)[3] == WarehouseCode.NOT_YOUR_WAREHOUSE
        assert seq.core.warehouse.receipts["R9"].state != "void"
        # W1 confirms 98 765 kg (within 3 % of 100 000 kg), quality passed: settled in the same step
        ack = seq.execute([ConfirmDelivery(deal_id, "op1", 98_765, True, 49)])[0]
        states = [e[3] for e in ack.events if e[0] == W_DELIVERY_STATE]
        assert states == ["delivery_confirmed", DL_SETTLED]
        settled = [e for e in ack.events if e[0] == W_DELIVERY_STATE][-1]
        # 98 765 kg x 350 000 fen/t / 1000 = 34 567 750 fen due; contract 35 000 000: refund 432 250
        assert (settled[6], settled[7], settled[8]) == (34_567_750, 432_250, 0)
        w = seq.core.warehouse
        assert w.deliveries[deal_id].state == DL_SETTLED
        buyer_receipts = [r for r in w.receipts.values() if r.holder == "BUYER" and r.state == ACTIVE]
        assert [r.weight_kg for r in buyer_receipts] == [98_765]
        assert any(r.state == DELIVERED and r.holder == "SELLER" for r in w.receipts.values())
        seller_live = sorted(r.weight_kg for r in w.receipts.values() if r.holder == "SELLER" and r.state == ACTIVE)
        assert seller_live == [1_235, 20_000]  # the undelivered rest of the allocation, and the unsold part
        # money, exact fen: notional 3500 ticks x 1000 fen/tick-lot x 10 lots = 35 000 000;
        # the buyer took liquidity (taker 5 bps = 17 500 fen), the seller rested (maker 2 bps = 7 000 fen)
        ledger = seq.core.clearing.ledger
        assert ledger.available("BUYER") == DEPOSIT_FEN - 34_567_750 - 17_500
        assert ledger.available("SELLER") == DEPOSIT_FEN + 34_567_750 - 7_000
        seq.core.check_invariants()
        assert not w.conservation_problems()
        live_hash = seq.state_hash()
        live_state = seq.core.export_state()
    assert Core.from_state(live_state).state_hash() == live_hash
    with Sequencer(database_url) as again:
        assert again.state_hash() == live_hash
    with Sequencer(database_url, use_snapshots=False) as replayed:
        assert replayed.state_hash() == live_hash


def test_buyer_who_does_not_pay_by_the_deadline_defaults(database_url: str) -> None:
    clock = Clock()
    with Sequencer(database_url, clock=clock) as seq:
        setup(seq)
        deal_id = trade(seq, lots=5)
        # before the payment deadline nothing is overdue
        clock.now_ns = T0 + DAY_NS
        ack = seq.execute([SweepDeadlines("staff1")])[0]
        assert W_DELIVERY_STATE not in kinds(ack.events)
        clock.now_ns = T0 + REBAR.payment_days * DAY_NS + 1
        ack = seq.execute([PayDeal(deal_id, "BUYER")])[0]
        assert one(ack.events, W_REJECTED)[3] == WarehouseCode.PAYMENT_DEADLINE_PASSED
        ack = seq.execute([SweepDeadlines("staff1")])[0]
        ended = one(ack.events, W_DELIVERY_STATE)
        assert (ended[3], ended[9]) == (DL_DEFAULTED, "buyer")
        w = seq.core.warehouse
        assert [r.state for r in w.receipts.values() if r.holder == "SELLER" and r.weight_kg > 0].count(LOCKED) == 0
        assert sum(r.weight_kg for r in w.receipts.values() if r.holder == "SELLER" and r.state == ACTIVE) == 120_000
        # the buyer forfeits its margin: 10 % of 5 x 10 t x 3500 CNY/t = 1 750 000 fen; the fee hold is released
        ledger = seq.core.clearing.ledger
        assert ledger.available("BUYER") == DEPOSIT_FEN - 1_750_000
        risk_fund = ledger.balance(EXCHANGE, RISK_FUND)
        assert ledger.available("SELLER") + risk_fund == DEPOSIT_FEN + 1_750_000
        seq.core.check_invariants()
        live_hash = seq.state_hash()
    with Sequencer(database_url, use_snapshots=False) as replayed:
        assert replayed.state_hash() == live_hash


@pytest.mark.parametrize("required", [True, False])
def test_receipt_rule_is_journaled_state(required: bool) -> None:
    core = Core()
    out: list[Any] = []
    core.apply(ListInstrument(REBAR), 1, T0, out)
    assert REBAR.symbol in core.receipts_required  # listed: required unless the instrument says otherwise
    core.apply(RequireReceipts(REBAR.symbol, required, "staff1"), 2, T0, out)
    assert (REBAR.symbol in core.receipts_required) is required
    assert Core.from_state(core.export_state()).receipts_required == core.receipts_required
    out.clear()
    core.apply(RequireReceipts("NO-SUCH", True, "staff1"), 3, T0, out)
    assert one(out, W_REJECTED)[3] == WarehouseCode.UNKNOWN_INSTRUMENT


def test_bench_delivery_runs_and_reports(tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from api.cli import app

    url = f"sqlite:///{tmp_path / 'bench.db'}"
    result = CliRunner().invoke(
        app, ["bench", "delivery", "--database-url", url, "--deals", "40", "--sellers", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert (figures["deals"], figures["settled"], figures["commands"]) == (40, 40, 160)


def test_warehouse_admin_through_the_cli(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, "--database-url", url])
        return result.exit_code, result.output

    code, output = cli("warehouse", "add", "W1", "East Steel Yard", "--group", "EAST-STEEL", "--by", "staff1")
    assert code == 0, output
    code, output = cli("warehouse", "operator", "op1", "W1", "--by", "staff1")
    assert code == 0, output
    code, output = cli("warehouse", "operator", "op2", "W9", "--by", "staff1")
    assert code == 1
    assert "no warehouse with this id" in output
    code, output = cli("warehouse", "require-receipts", REBAR.symbol, "--by", "staff1")
    assert code == 0, output
    code, output = cli("warehouse", "rules")
    assert code == 0, output
    every = ", ".join(sorted(i.symbol for i in INSTRUMENTS))
    assert f"receipts required for: {every}\n" in output  # every instrument requires receipts by default
    assert "receipts not required for: no instrument" in output
    code, output = cli("warehouse", "require-receipts", REBAR.symbol, "--off", "--by", "staff1")
    assert code == 0, output
    code, output = cli("warehouse", "rules")
    others = ", ".join(sorted(i.symbol for i in INSTRUMENTS if i.symbol != REBAR.symbol))
    assert f"receipts required for: {others}\n" in output
    assert f"receipts not required for: {REBAR.symbol}" in output
    code, output = cli("warehouse", "stock")
    assert code == 0, output
    assert "no stock" in output
