"""Deliveries at scale: deals taken from the trade to settled delivery through
the sequencer and the journal.

    bulkex bench delivery [--database-url URL] [--deals 10000] [--json]

Untimed set-up: the standard instruments listed, rebar in continuous trading
and requiring receipts, `sellers` and `buyers` members funded, one steel
warehouse with its operator, and per seller one receipt registered by the
operator and confirmed by the seller, large enough for its deals plus 10 %.

Timed, every command sequenced, applied, journaled and committed
(``Sequencer.execute``, batches of the sequencer's size):

    1. trade     per deal a one-lot SELL (locks the seller's receipt) and the
                 crossing one-lot BUY (the trade: clearing's deal, the
                 delivery allocated a split of the receipt)
    2. pay       PayDeal per deal (the buyer's price into escrow)
    3. deliver   ConfirmDelivery per deal with an actual weight within the
                 3 % tolerance and quality passed: delivery versus payment
                 settles in the same step (receipt to the buyer, money to the
                 seller less fees, margins released)

The run checks that every deal ended settled and the core's invariants
hold. Without --database-url a temporary SQLite file is used; the figure of
record is on PostgreSQL (a database is created and dropped).
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

from bench._database import with_database
from clearing import BankDeposit, RegisterMember
from exchange import Sequencer, Settings, load_instruments
from exchange._warehouse_rule import RequireReceipts
from matching import BUY, CONTINUOUS, SELL, TRADE, NewOrder, SetTradingState
from matching._native import native_status
from warehouse import (
    DL_SETTLED,
    W_REJECTED,
    AddOperator,
    AddWarehouse,
    ConfirmDelivery,
    ConfirmReceipt,
    PayDeal,
    RegisterReceipt,
)

__all__ = ["report", "run"]

SYMBOL = "RB-HRB400E-20"
BANK = "BENCHBANK"
DATE = "2025-03-03"
FUNDS_FEN = 10**12
LOT_KG = 10_000
PRICE_TICKS = 3_500
MAX_DEALS = 1_000_000
"""At most this many deals per run (the warehouse's open-delivery limit)."""


def _setup(seq: Sequencer, sellers: list[str], buyers: list[str], deals_per_seller: int) -> None:
    seq.list_on_first_start(load_instruments(Settings().instruments_file))
    commands: list[Any] = [SetTradingState(SYMBOL, CONTINUOUS), RequireReceipts(SYMBOL, True, "staff")]
    for n, member in enumerate(sellers + buyers):
        commands.append(RegisterMember(member, BANK, f"SUB-{member}"))
        commands.append(BankDeposit(BANK, f"D{n}", member, FUNDS_FEN, DATE))
    commands.append(AddWarehouse("W1", "East Steel Yard", ("EAST-STEEL",), "staff"))
    commands.append(AddOperator("op1", "W1", "staff"))
    weight_kg = deals_per_seller * LOT_KG * 11 // 10
    for seller in sellers:
        number = f"R-{seller}"
        commands.append(
            RegisterReceipt(
                "op1", number, seller, SYMBOL, weight_kg, weight_kg // 2_000, f"HEAT-{seller}", f"CERT-{seller}",
                0, 0, 0, "HRB400E", "20 mm x 12 m", "bay 1",
            )
        )  # fmt: skip
        commands.append(ConfirmReceipt(number, seller))
    for ack in seq.execute(commands):
        assert all(e[0] != W_REJECTED for e in ack.events), ack


def _timed(url: str, deals: int, sellers_count: int) -> dict[str, Any]:
    sellers = [f"S{n:04d}" for n in range(sellers_count)]
    buyers = [f"B{n:04d}" for n in range(sellers_count)]
    per_seller = -(-deals // sellers_count)
    with Sequencer(url) as seq:
        _setup(seq, sellers, buyers, per_seller)
        orders: list[Any] = []
        for i in range(deals):
            k = i % sellers_count
            orders.append(NewOrder(sellers[k], SYMBOL, f"s{i}", SELL, PRICE_TICKS, 1))
            orders.append(NewOrder(buyers[k], SYMBOL, f"b{i}", BUY, PRICE_TICKS, 1))
        started = time.perf_counter()
        acks = seq.execute(orders)
        traded = time.perf_counter()
        deal_buyers: list[tuple[int, str]] = []
        for ack in acks:
            for e in ack.events:
                if e[0] == TRADE:
                    deal_buyers.append((e[2], e[7]))
        assert len(deal_buyers) == deals, (len(deal_buyers), deals)
        seq.execute([PayDeal(deal_id, buyer) for deal_id, buyer in deal_buyers])
        paid = time.perf_counter()
        # actual weights within the 3 % tolerance: 9 850 .. 10 150 kg for a 10 000 kg lot
        seq.execute(
            [
                ConfirmDelivery(deal_id, "op1", LOT_KG - 150 + (n * 37) % 301, True, 5)
                for n, (deal_id, _) in enumerate(deal_buyers)
            ]
        )
        done = time.perf_counter()
        w = seq.core.warehouse
        settled = sum(1 for deal_id, _ in deal_buyers if w.deliveries[deal_id].state == DL_SETTLED)
        assert settled == deals, (settled, deals)
        seq.core.check_invariants()
        assert not w.conservation_problems()
    commands = 4 * deals
    total = done - started
    return {
        "deals": deals,
        "commands": commands,
        "trade_s": round(traded - started, 3),
        "pay_s": round(paid - traded, 3),
        "deliver_s": round(done - paid, 3),
        "total_s": round(total, 3),
        "deals_per_s": round(deals / total),
        "commands_per_s": round(commands / total),
        "settled": settled,
    }


def run(database_url: str | None, deals: int = 10_000, sellers: int = 100) -> dict[str, Any]:
    """Run the benchmark; the result as JSON-able data."""
    if not (1 <= deals <= MAX_DEALS):
        raise ValueError(f"deals must be 1..{MAX_DEALS}, not {deals}")
    if not (1 <= sellers <= deals):
        raise ValueError(f"sellers must be 1..deals, not {sellers}")
    figures = with_database(database_url, "delivery", lambda url: _timed(url, deals, sellers))
    backend = "postgresql" if database_url and database_url.startswith("postgresql") else "sqlite"
    return {
        "benchmark": "delivery",
        "database": backend,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu {platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "build": native_status()[1],
        **figures,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    print(
        f"delivery on {result['database']}: {result['deals']:,} deals from trade to settled delivery, "
        f"{result['commands']:,} commands journaled: trade {result['trade_s']} s + pay {result['pay_s']} s "
        f"+ deliver and settle {result['deliver_s']} s = {result['total_s']} s "
        f"({result['deals_per_s']:,} deals/s, {result['commands_per_s']:,} commands/s)"
    )
    print(f"  {result['date']}, {result['machine']}, load average {result['load_average']}")
    if as_json:
        print(json.dumps(result))
