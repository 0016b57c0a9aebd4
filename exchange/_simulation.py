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
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from clearing import BankDeposit, RegisterMember
from matching import BUY, DAY, GTC, IOC, SELL, AmendOrder, CancelOrder, Instrument, NewOrder

__all__ = ["SIMULATION_BANK", "SIMULATION_FUNDING_FEN", "OrderFlow", "funding_commands", "simulated_accounts"]

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
