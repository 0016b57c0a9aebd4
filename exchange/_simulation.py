"""Simulated order flow: a seeded, realistic mix of new orders, cancels and
amends on listed instruments, for the demo, the benchmarks and the tests.

Order ids are the seqs of the commands that entered them, so a generator
that is the only submitter predicts them: give it the seq its first command
will get. Cancels and amends aim at recent orders of the same account; some
of those have traded away and are rejected, as in real markets.

Every order goes through pre-trade risk, so the simulated members must be
registered with a bank and funded first: journal ``funding_commands(accounts)``
(``OrderFlow.funding()`` for a flow's own members) before the flow's first
command, then create the flow with the seq after them.

Sellers sell only goods in a warehouse: ``stocking_commands(instruments,
accounts)`` adds one simulation warehouse per instrument group with its
operator, who registers receipts for every member and instrument, which
the members confirm, all through the real warehouse commands.
``simulation_setup`` (``OrderFlow.setup()``) is funding and stocking
together: journal it before the flow.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from clearing import BankDeposit, RegisterMember
from matching import BUY, DAY, GTC, IOC, SELL, AmendOrder, CancelOrder, Instrument, NewOrder
from warehouse import AddOperator, AddWarehouse, ConfirmReceipt, RegisterReceipt

__all__ = [
    "SIMULATION_BANK",
    "SIMULATION_FUNDING_FEN",
    "SIMULATION_LOTS_PER_RECEIPT",
    "SIMULATION_RECEIPTS_PER_INSTRUMENT",
    "SIMULATION_STAFF",
    "OrderFlow",
    "funding_commands",
    "receipt_commands",
    "simulated_accounts",
    "simulation_operator",
    "simulation_setup",
    "simulation_warehouse",
    "stocking_commands",
    "warehouse_commands",
]

SIMULATION_BANK = "SIMBANK"
"""The partner bank of simulated members."""
SIMULATION_FUNDING_FEN = 1_000_000_000_000
"""What each simulated member deposits: 10 billion CNY, far more than any simulated run freezes."""


def simulated_accounts(count: int) -> list[str]:
    """The account ids of `count` simulated members: M000, M001, ..."""
    return [f"M{n:03d}" for n in range(count)]


def funding_commands(
    accounts: Sequence[str],
    amount_fen: int = SIMULATION_FUNDING_FEN,
    bank: str = SIMULATION_BANK,
    value_date: str = "2025-01-02",
) -> list[Any]:
    """RegisterMember then BankDeposit for each account (sub-account ``S-<account>``,
    deposit record ``FUND-<account>``). Journal them before the account's first order."""
    commands: list[Any] = []
    for account in accounts:
        commands.append(RegisterMember(account, bank, f"S-{account}"))
        commands.append(BankDeposit(bank, f"FUND-{account}", account, amount_fen, value_date))
    return commands


SIMULATION_STAFF = "SIMSTAFF"
"""The staff user that adds the simulation warehouses and their operators."""
SIMULATION_RECEIPTS_PER_INSTRUMENT = 10
"""Receipts each simulated member holds per instrument (a sell order locks whole receipts)."""
SIMULATION_LOTS_PER_RECEIPT = 10
"""Lots of goods one simulated receipt holds: the largest simulated sell order."""
_MAX_NUMBER_CHARS = 40


def simulation_warehouse(group: str) -> str:
    """The id of the simulation warehouse designated for instrument group `group`."""
    return f"SIM-{group}"


def simulation_operator(group: str) -> str:
    """The operator of the simulation warehouse of `group`."""
    return f"SIMOP-{group}"


def _receipt_number(account: str, symbol: str, index: int, n: int) -> str:
    number = f"{account}-{symbol}-{n}"
    if len(number) > _MAX_NUMBER_CHARS or "#" in number or "," in number or " " in number:
        number = f"{account[:24]}-i{index}-{n}"
    return number


def warehouse_commands(instruments: Sequence[Instrument], staff: str = SIMULATION_STAFF) -> list[Any]:
    """Per instrument group a simulation warehouse and its operator (AddWarehouse, AddOperator)."""
    commands: list[Any] = []
    for group in sorted({i.warehouse_group for i in instruments}):
        warehouse_id = simulation_warehouse(group)
        commands.append(AddWarehouse(warehouse_id, f"simulation warehouse {group}", (group,), staff))
        commands.append(AddOperator(simulation_operator(group), warehouse_id, staff))
    return commands


def receipt_commands(
    instruments: Sequence[Instrument],
    accounts: Sequence[str],
    receipts_each: int = SIMULATION_RECEIPTS_PER_INSTRUMENT,
    lots_each: int = SIMULATION_LOTS_PER_RECEIPT,
) -> list[Any]:
    """Per account and instrument `receipts_each` receipts of `lots_each` lots,
    registered by the simulation operator after inspection and confirmed by
    the member (RegisterReceipt, ConfirmReceipt; numbers ``<account>-<symbol>-<n>``)."""
    assert receipts_each >= 0, receipts_each
    assert lots_each >= 1, lots_each
    commands: list[Any] = []
    for account in accounts:
        for index, inst in enumerate(instruments):
            weight_kg = lots_each * inst.lot_size_t * 1_000
            steel = inst.commodity == "steel"
            grade, _, dimensions = inst.grade.partition(",")
            for n in range(receipts_each):
                number = _receipt_number(account, inst.symbol, index, n)
                commands.append(
                    RegisterReceipt(
                        simulation_operator(inst.warehouse_group),
                        number,
                        account,
                        inst.symbol,
                        weight_kg,
                        lots_each * inst.lot_size_t if steel else 0,  # steel: one bundle per tonne
                        f"LOT-{n + 1}",
                        f"CERT-{number}",
                        0 if steel else 5_500,  # coal: kcal/kg, moisture and sulphur in bps
                        0 if steel else 1_000,
                        0 if steel else 60,
                        (grade.strip() or inst.grade)[:200] if steel else "",
                        (dimensions.strip() or "as graded")[:200] if steel else "",
                        f"yard {index + 1}, bay {n + 1}",
                    )
                )
                commands.append(ConfirmReceipt(number, account))
    return commands


def stocking_commands(
    instruments: Sequence[Instrument],
    accounts: Sequence[str],
    receipts_each: int = SIMULATION_RECEIPTS_PER_INSTRUMENT,
    lots_each: int = SIMULATION_LOTS_PER_RECEIPT,
) -> list[Any]:
    """Warehouse setup for simulated sellers, as real commands:
    ``warehouse_commands`` then ``receipt_commands``. Journal them after the
    instruments are listed; repeating them is refused command by command and
    changes nothing."""
    return warehouse_commands(instruments) + receipt_commands(instruments, accounts, receipts_each, lots_each)


def simulation_setup(instruments: Sequence[Instrument], accounts: Sequence[str]) -> list[Any]:
    """``funding_commands(accounts)`` then ``stocking_commands(instruments, accounts)``."""
    return funding_commands(accounts) + stocking_commands(instruments, accounts)


RECENT_ORDERS_KEPT = 2_000
"""Orders remembered as targets for cancels and amends."""


class OrderFlow:
    """An endless, reproducible stream of order commands."""

    def __init__(
        self,
        instruments: Sequence[Instrument],
        seed: int,
        first_seq: int,
        accounts: int = 50,
        client_prefix: str = "c",
        spread_ticks: int = 12,
        new_share_pct: int = 70,
        cancel_share_pct: int = 20,
    ) -> None:
        assert instruments, "no instruments to trade"
        assert accounts >= 1, accounts
        assert 0 <= new_share_pct + cancel_share_pct <= 100, (new_share_pct, cancel_share_pct)
        self.instruments = list(instruments)
        self.random = random.Random(seed)
        self.next_seq = first_seq
        self.accounts = simulated_accounts(accounts)
        self.client_prefix = client_prefix
        self.spread_ticks = spread_ticks
        self.new_share_pct = new_share_pct
        self.cancel_share_pct = cancel_share_pct
        self.counter = 0
        self.recent: list[tuple[int, str, Instrument]] = []

    def funding(self, amount_fen: int = SIMULATION_FUNDING_FEN) -> list[Any]:
        """The commands that register and fund this flow's members (journal them first)."""
        return funding_commands(self.accounts, amount_fen)

    def setup(self) -> list[Any]:
        """Funding and warehouse receipts for this flow's members (journal them first)."""
        return simulation_setup(self.instruments, self.accounts)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next_command()

    def take(self, count: int) -> list[Any]:
        return [self.next_command() for _ in range(count)]

    def next_command(self) -> Any:
        rnd = self.random
        roll = rnd.randrange(100)
        seq = self.next_seq
        self.next_seq += 1
        if self.recent and roll >= self.new_share_pct:
            index = rnd.randrange(len(self.recent))
            order_id, account, instrument = self.recent[index]
            if roll < self.new_share_pct + self.cancel_share_pct:
                self.recent[index] = self.recent[-1]
                self.recent.pop()
                return CancelOrder(account, order_id)
            price = self._price(instrument, rnd.choice((BUY, SELL)))
            return AmendOrder(account, order_id, price, rnd.randint(1, 5))
        instrument = rnd.choice(self.instruments)
        account = rnd.choice(self.accounts)
        side = BUY if rnd.random() < 0.5 else SELL
        self.counter += 1
        tif_roll = rnd.randrange(10)
        tif = IOC if tif_roll == 0 else DAY if tif_roll == 1 else GTC
        command = NewOrder(
            account, instrument.symbol, f"{self.client_prefix}{self.counter}", side, self._price(instrument, side),
            rnd.randint(1, 10), tif,
        )  # fmt: skip
        if tif != IOC:
            self.recent.append((seq, account, instrument))
            if len(self.recent) > RECENT_ORDERS_KEPT:
                self.recent[rnd.randrange(len(self.recent))] = self.recent[-1]
                self.recent.pop()
        return command

    def _price(self, instrument: Instrument, side: int) -> int:
        """Around the reference price, buyers a little below, sellers a little
        above, overlapping enough to trade; always inside the band."""
        reference = instrument.reference_price_ticks
        offset = self.random.randint(-self.spread_ticks, self.spread_ticks // 3)
        price = reference + offset if side == BUY else reference - offset
        band = reference * instrument.price_band_bps // 10_000
        return min(max(price, reference - band), reference + band)
