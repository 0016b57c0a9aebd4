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

Deals settle by delivery versus payment when the flow is made with
``settle=True``: a ``DeliveryDesk`` plays the simulated members' back office
(each buyer pays its deals, ``PayDeal``) and the simulation warehouses'
operators (each paid delivery is confirmed, ``ConfirmDelivery``, with the
weight actually delivered: the contract weight, or now and then a little
less, inside the instrument's tolerance, so the tolerance settlement shows
and, for coal, the seller keeps a residual receipt: the desk states every
piece of steel, which goes to the buyer with the weight delivered). The receipts move to the buyers,
who sell those goods in turn, so a long run never starves its sellers.

The desk learns about deals only from the events of acknowledged commands
(``OrderFlow.observe(events)``, or ``DeliveryDesk.observe``), never from the
core's state; the flow emits the desk's commands, oldest first, before its
next orders, counting their seqs so that the order ids it predicts stay
right. Same seed and the same events observed after the same commands, the
same stream. The one explicit exception is ``prime(warehouse)``: a flow
that starts on an existing state (a recovered journal) reads the open
deliveries and the pieces of the live receipts once, before it sends
anything. Without ``settle`` (the journal benchmark) the stream is exactly
what it always was.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from clearing import BankDeposit, RegisterMember
from matching import BUY, DAY, GTC, IOC, SELL, AmendOrder, CancelOrder, Instrument, NewOrder
from warehouse import (
    DL_AWAITING_PAYMENT,
    DL_PAID,
    DL_SETTLED,
    ENDED_DELIVERY_STATES,
    LIVE_STATES,
    REGISTERED,
    W_DELIVERY,
    W_DELIVERY_STATE,
    W_RECEIPT,
    W_RECEIPT_STATE,
    AddOperator,
    AddWarehouse,
    ConfirmDelivery,
    ConfirmReceipt,
    PayDeal,
    RegisterReceipt,
    WarehouseEngine,
)

__all__ = [
    "SIMULATION_BANK",
    "SIMULATION_FUNDING_FEN",
    "SIMULATION_LOTS_PER_RECEIPT",
    "SIMULATION_RECEIPTS_PER_INSTRUMENT",
    "SIMULATION_STAFF",
    "SIMULATION_WEIGHT_DIFFERENCE_PCT",
    "DeliveryDesk",
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
SIMULATION_RECEIPTS_PER_INSTRUMENT = 20
"""Receipts each simulated member holds per instrument. A sell order locks whole receipts, so a
member with many resting sell orders needs more receipts than goods sold: with 20 a seeded run of
20,000 settling commands refuses no sell order for lack of receipts (with 10, 129 of 4,510)."""
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


SIMULATION_WEIGHT_DIFFERENCE_PCT = 10
"""Share of simulated deliveries whose actual weight is a little under the
contract weight (at most two thirds of the instrument's tolerance): settled
inside the tolerance, the buyer refunded, the seller of coal left a residual receipt."""
_ENDED_RECEIPT_STATES = frozenset(("void", "delivered", "merged", "cancelled"))


class DeliveryDesk:
    """The simulated world's side of every deal, after the trade.

    Buyers among `accounts` pay each deal they bought (``PayDeal`` when the
    delivery opens); the operator of a simulation warehouse confirms each
    paid delivery of that warehouse (``ConfirmDelivery``, quality passed),
    which settles it by delivery versus payment. The actual weight is the
    contract weight, or for about `weight_difference_pct` % of deliveries
    (seeded) a little less, inside the tolerance. Steel deliveries state
    every piece of the allocated receipts, coal none.

    Everything it knows comes from ``observe(events)`` (the events of
    acknowledged commands, in order) and, once at the start, ``prime`` (the
    open deliveries and live receipts of an existing state). It keeps the
    pieces of live receipts (from W_RECEIPT and split events) and the open
    deliveries it has a part in; ``due`` holds its next commands, oldest
    first. A refused command is not retried: the deal runs to its deadline.
    """

    def __init__(
        self,
        instruments: Sequence[Instrument],
        accounts: Iterable[str],
        seed: int,
        weight_difference_pct: int = SIMULATION_WEIGHT_DIFFERENCE_PCT,
        operators: dict[str, str] | None = None,
    ) -> None:
        assert 0 <= weight_difference_pct <= 100, weight_difference_pct
        self.instruments = {i.symbol: i for i in instruments}
        self.accounts = frozenset(accounts)
        self.operators = (
            operators
            if operators is not None
            else {simulation_warehouse(g): simulation_operator(g) for g in {i.warehouse_group for i in instruments}}
        )
        self.random = random.Random(seed)
        self.weight_difference_pct = weight_difference_pct
        self.pieces: dict[str, int] = {}  # live receipt number -> pieces
        # open deal -> (instrument, warehouse, contract kg, allocated receipts)
        self.deals: dict[int, tuple[str, str, int, tuple[str, ...]]] = {}
        self.due: deque[Any] = deque()
        self.payments = 0
        self.confirmations = 0
        self.settled = 0
        self.settled_with_difference = 0
        self.unconfirmable = 0

    def prime(self, warehouse: WarehouseEngine) -> None:
        """Take the live receipts' pieces and the open deliveries of an existing state
        (read once, before the first command; the only read of the core's state)."""
        for r in warehouse.receipts.values():
            if r.state in LIVE_STATES or r.state == REGISTERED:
                self.pieces[r.number] = r.pieces
        for deal_id in sorted(warehouse.open_deals):
            d = warehouse.deliveries[deal_id]
            if d.instrument not in self.instruments:
                continue
            self.deals[deal_id] = (d.instrument, d.warehouse_id, d.contract_weight_kg, tuple(d.receipts))
            if d.state == DL_AWAITING_PAYMENT and d.buyer in self.accounts:
                self._pay(deal_id, d.buyer)
            elif d.state == DL_PAID:
                self._confirm(deal_id)

    def observe(self, events: Iterable[tuple[Any, ...]]) -> None:
        """Follow the events of acknowledged commands (all of them, in order)."""
        pieces = self.pieces
        split_parent = ""
        for e in events:
            kind = e[0]
            if kind == W_RECEIPT:
                pieces[e[2]] = e[10]
                if split_parent:
                    pieces[split_parent] -= e[10]
                    split_parent = ""
            elif kind == W_RECEIPT_STATE:
                if e[3] == "split":
                    split_parent = e[2] if e[2] in pieces else ""
                elif e[4] in _ENDED_RECEIPT_STATES:
                    pieces.pop(e[2], None)
            elif kind == W_DELIVERY:
                deal_id, instrument, warehouse_id, buyer = e[2], e[3], e[4], e[6]
                if instrument in self.instruments:
                    self.deals[deal_id] = (instrument, warehouse_id, e[10], tuple(e[13].split(",")))
                    if buyer in self.accounts:
                        self._pay(deal_id, buyer)
            elif kind == W_DELIVERY_STATE:
                deal_id, state = e[2], e[3]
                deal = self.deals.get(deal_id)
                if deal is None:
                    continue
                if state == DL_PAID:
                    self._confirm(deal_id)
                elif state in ENDED_DELIVERY_STATES:
                    del self.deals[deal_id]
                    if state == DL_SETTLED:
                        self.settled += 1
                        self.settled_with_difference += e[4] != deal[2]

    def take(self, count: int) -> list[Any]:
        """Up to `count` due commands, oldest first."""
        due = self.due
        return [due.popleft() for _ in range(min(count, len(due)))]

    def _pay(self, deal_id: int, buyer: str) -> None:
        self.due.append(PayDeal(deal_id, buyer))
        self.payments += 1

    def _confirm(self, deal_id: int) -> None:
        instrument, warehouse_id, contract_kg, receipts = self.deals[deal_id]
        operator = self.operators.get(warehouse_id)
        if operator is None:
            return  # not a simulation warehouse: its own operator confirms
        inst = self.instruments[instrument]
        actual_kg = contract_kg
        if self.random.randrange(100) < self.weight_difference_pct:
            short_bps = self.random.randint(1, max(1, inst.weight_tolerance_bps * 2 // 3))
            actual_kg = contract_kg - max(1, contract_kg * short_bps // 10_000)
        pieces = 0
        if inst.commodity == "steel":
            known = [self.pieces.get(n) for n in receipts]
            pieces = sum(p for p in known if p is not None)
            if None in known or pieces <= 0:
                self.unconfirmable += 1  # pieces unknown (or none): left to the deadline
                return
        self.due.append(ConfirmDelivery(deal_id, operator, actual_kg, True, pieces))
        self.confirmations += 1


RECENT_ORDERS_KEPT = 2_000
"""Orders remembered as targets for cancels and amends."""


class OrderFlow:
    """An endless, reproducible stream of order commands; with `settle`, also
    the payments and delivery confirmations of its members' deals (see
    ``DeliveryDesk``: feed it the acknowledged events with ``observe``)."""

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
        settle: bool = False,
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
        # the desk draws from its own generator, so the orders are those of a flow without it
        self.desk = DeliveryDesk(self.instruments, self.accounts, seed ^ 0x5E771E) if settle else None

    def funding(self, amount_fen: int = SIMULATION_FUNDING_FEN) -> list[Any]:
        """The commands that register and fund this flow's members (journal them first)."""
        return funding_commands(self.accounts, amount_fen)

    def setup(self) -> list[Any]:
        """Funding and warehouse receipts for this flow's members (journal them first)."""
        return simulation_setup(self.instruments, self.accounts)

    def observe(self, events: Iterable[tuple[Any, ...]]) -> None:
        """The events of acknowledged commands, in order (with `settle`; else ignored)."""
        if self.desk is not None:
            self.desk.observe(events)

    def prime(self, warehouse: WarehouseEngine) -> None:
        """Start on an existing state: see ``DeliveryDesk.prime`` (with `settle`; else nothing)."""
        if self.desk is not None:
            self.desk.prime(warehouse)

    def settlement(self) -> list[Any]:
        """Only the due payments and confirmations (none without `settle`), their seqs counted."""
        if self.desk is None:
            return []
        commands = self.desk.take(len(self.desk.due))
        self.next_seq += len(commands)
        return commands

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next_command()

    def take(self, count: int) -> list[Any]:
        return [self.next_command() for _ in range(count)]

    def next_command(self) -> Any:
        desk = self.desk
        if desk is not None and desk.due:
            self.next_seq += 1
            return desk.due.popleft()
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
