"""A short demonstration on the configured database: list the instruments,
register and fund the simulated members through their bank, have the
simulation warehouses' operators register the members' goods as receipts
(so sellers sell only against receipts), run an opening
call auction and a burst of continuous trading (every order through
pre-trade risk) in which the buyers pay their deals and the simulation
warehouses' operators confirm delivery, so deals settle by delivery versus
payment and the goods move to the buyers (``OrderFlow(settle=True)``, see
``exchange._simulation.DeliveryDesk``), print trades, deliveries, the top of
each book and the money held, and close.

Run it twice: the second run recovers the first run's journal (snapshot +
tail) and prints the recovered state hash before trading on.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from exchange._instruments import load_instruments
from exchange._sequencer import Ack, Sequencer
from exchange._settings import Settings
from exchange._simulation import (
    SIMULATION_BANK,
    SIMULATION_FUNDING_FEN,
    OrderFlow,
    funding_commands,
    simulated_accounts,
    stocking_commands,
)
from exchange._ticket import Ticket
from matching import (
    AUCTION,
    BUY,
    CLOSED,
    CONTINUOUS,
    HALTED,
    INDICATIVE,
    REJECTED,
    SELL,
    TRADE,
    Instrument,
    NewOrder,
    RejectCode,
    SetTradingState,
    TradingState,
)
from matching._native import native_status
from warehouse import ConfirmDelivery, PayDeal

__all__ = ["run_demo"]

AUCTION_MEMBERS = 8
CONTINUOUS_COMMANDS = 5_000
SETTLEMENT_EVERY_COMMANDS = 500
"""The demo waits for the acks of this many commands, then shows their events to the flow's
delivery desk, whose payments and confirmations go first in the next ones."""
SIMULATED_MEMBERS = 50


def _move(sequencer: Sequencer, symbol: str, state: int) -> Ticket[Ack]:
    return sequencer.submit(SetTradingState(symbol, state))


def run_demo(settings: Settings | None = None, write: Callable[[str], None] = print, seed: int | None = None) -> str:
    """Run the demo; returns the final state hash."""
    settings = settings or Settings()
    seed = random.randrange(1 << 30) if seed is None else seed
    write(f"database {settings.database_url}")
    sequencer = Sequencer.from_settings(settings)
    report = sequencer.open()
    if report.last_seq:
        write(report.summary())
    else:
        write("new journal")
    write(f"core: {native_status()[1]}")
    try:
        instruments = load_instruments(settings.instruments_file)
        listed = sequencer.list_on_first_start(instruments)
        if listed:
            write(f"listed {listed} instruments (journaled as commands 1..{listed})")
            funded = sequencer.execute(funding_commands(simulated_accounts(SIMULATED_MEMBERS)))
            write(
                f"registered {SIMULATED_MEMBERS} members at {SIMULATION_BANK} and booked their deposits of "
                f"{SIMULATION_FUNDING_FEN // 100:,} CNY each (commands {funded[0].seq}..{funded[-1].seq})"
            )
            stocked = sequencer.execute(stocking_commands(instruments, simulated_accounts(SIMULATED_MEMBERS)))
            warehouse = sequencer.core.warehouse
            write(
                f"added {len(warehouse.warehouses)} warehouses with their operators, who registered "
                f"{len(warehouse.receipts)} receipts for the members' goods, confirmed by the members "
                f"(commands {stocked[0].seq}..{stocked[-1].seq}): sellers sell only goods in a warehouse"
            )
        by_symbol = {b.symbol: b.instrument for b in sequencer.core.matching.books.values()}
        _print_instruments(list(by_symbol.values()), write)
        sequencer.start()
        _opening_auction(sequencer, by_symbol, seed, write)
        _continuous(sequencer, list(by_symbol.values()), seed, write)
        for symbol, state in sequencer.core.trading_states().items():
            if state != CLOSED:
                _move(sequencer, symbol, CLOSED).result()
        write("session closed: DAY orders expired, last prices become tomorrow's reference prices")
        _money(sequencer, write)
        _stock(sequencer, write)
        state_hash = sequencer.state_hash()
        write(f"journal at seq {sequencer.last_seq}, state hash {state_hash}")
        write("run the demo again to see recovery from the journal")
        return state_hash
    finally:
        sequencer.close()


def _print_instruments(instruments: list[Instrument], write: Callable[[str], None]) -> None:
    write("")
    write(f"{'symbol':<15} {'product':<16} {'lot':>5} {'tick':>10} {'reference':>12} {'band':>7}  grade")
    for i in instruments:
        write(
            f"{i.symbol:<15} {i.product:<16} {i.lot_size_t:>3} t {i.tick_cny():>6} CNY "
            f"{i.ticks_to_price(i.reference_price_ticks):>8} CNY {i.price_band_bps / 100:>6.1f}%  {i.grade}"
        )
    write("")


def _opening_auction(
    sequencer: Sequencer, instruments: dict[str, Instrument], seed: int, write: Callable[[str], None]
) -> None:
    rnd = random.Random(seed)
    run = sequencer.last_seq
    for symbol, state in sequencer.core.trading_states().items():
        if state in (CLOSED, HALTED, CONTINUOUS):
            _move(sequencer, symbol, AUCTION).result()
    write("call auction: members enter orders, the indicative price is published")
    last: Ticket[Ack] | None = None
    for symbol in instruments:
        reference = sequencer.core.matching.book(symbol).reference_price_ticks
        for member in range(AUCTION_MEMBERS):
            side = BUY if member % 2 == 0 else SELL
            offset = rnd.randint(-6, 6)
            price = reference + offset
            order = NewOrder(f"M{member:03d}", symbol, f"a{run}-{symbol}-{member}", side, price, rnd.randint(1, 20))
            last = sequencer.submit(order)
    if last is not None:
        ack = last.result()
        assert ack.seq == sequencer.last_seq
    for book in sequencer.core.matching.books.values():
        price, volume, imbalance = book.indicative
        instrument = book.instrument
        shown = instrument.ticks_to_price(price) if price else "-"
        write(f"  {book.symbol:<15} indicative {shown:>9} CNY/t  volume {volume:>4} lots  imbalance {imbalance:+d}")
    write("continuous trading starts: the auction uncrosses")
    for symbol, instrument in instruments.items():
        ack = _move(sequencer, symbol, CONTINUOUS).result()
        trades = [e for e in ack.events if e[0] == TRADE]
        volume = sum(e[5] for e in trades)
        if trades:
            opened = instrument.ticks_to_price(trades[0][4])
            write(f"  {symbol:<15} opened at {opened:>9} CNY/t, {volume} lots in {len(trades)} trades")
        else:
            indicative = [e for e in ack.events if e[0] == INDICATIVE]
            write(f"  {symbol:<15} no opening trade ({len(indicative)} indicative updates)")


def _run(sequencer: Sequencer, flow: OrderFlow, commands: list[Any]) -> list[Ack]:
    """Submit `commands`, wait for their acks and let the flow's delivery desk see their events."""
    acks = [f.result() for f in [sequencer.submit(command) for command in commands]]
    flow.observe(e for ack in acks for e in ack.events)
    return acks


def _continuous(sequencer: Sequencer, instruments: list[Instrument], seed: int, write: Callable[[str], None]) -> None:
    flow = OrderFlow(
        instruments, seed=seed, first_seq=sequencer.last_seq + 1, client_prefix=f"d{sequencer.last_seq}-", settle=True
    )
    # the auction's deals (and, after a restart, the deals the last run left open) are read once;
    # from here on the desk follows the acknowledged events only
    flow.prime(sequencer.core.warehouse)
    by_symbol = {i.symbol: i for i in instruments}
    started = time.perf_counter()
    acks: list[Ack] = []
    kinds: Counter[str] = Counter()
    while len(acks) < CONTINUOUS_COMMANDS:
        batch = flow.take(min(SETTLEMENT_EVERY_COMMANDS, CONTINUOUS_COMMANDS - len(acks)))
        kinds.update(type(c).__name__ for c in batch)
        acks += _run(sequencer, flow, batch)
    elapsed = time.perf_counter() - started
    trades = [e for ack in acks for e in ack.events if e[0] == TRADE]
    payments = confirmations = 0
    for _ in range(2):  # the last deals: pay, then confirm
        commands = flow.settlement()
        payments += sum(1 for c in commands if isinstance(c, PayDeal))
        confirmations += sum(1 for c in commands if isinstance(c, ConfirmDelivery))
        _run(sequencer, flow, commands)
    write(
        f"continuous trading: {len(acks)} commands from {len(flow.accounts)} members ({kinds['NewOrder']} orders, "
        f"{kinds['CancelOrder']} cancels, {kinds['AmendOrder']} amends, {kinds['PayDeal']} payments, "
        f"{kinds['ConfirmDelivery']} delivery confirmations), {len(trades)} trades, "
        f"{len(acks) / elapsed:,.0f} commands/s committed before acknowledgement"
    )
    refused = sum(
        1 for ack in acks for e in ack.events if e[0] == REJECTED and e[4] == RejectCode.INSUFFICIENT_RECEIPTS
    )
    _deliveries(sequencer, flow, payments, confirmations, refused, write)
    write("last trades:")
    for e in trades[-5:]:
        instrument = by_symbol[e[3]]
        aggressor = {BUY: "buyer", SELL: "seller"}.get(e[12], "auction")
        write(
            f"  #{e[2]:<7} {e[3]:<15} {e[5]:>3} lots @ {instrument.ticks_to_price(e[4]):>9} CNY/t  "
            f"buy {e[7]} / sell {e[10]}  ({aggressor} aggressed)"
        )
    write("top of book:")
    matching = sequencer.core.matching
    for symbol, instrument in by_symbol.items():
        bid = matching.depth(symbol, BUY, 1)
        ask = matching.depth(symbol, SELL, 1)
        bid_text = f"{bid[0][1]:>4} lots @ {instrument.ticks_to_price(bid[0][0]):>9}" if bid else f"{'-':>22}"
        ask_text = f"{instrument.ticks_to_price(ask[0][0]):>9} @ {ask[0][1]:>4} lots" if ask else "-"
        state = TradingState(matching.book(symbol).state).name.lower()
        write(f"  {symbol:<15} bid {bid_text}  |  ask {ask_text}  ({state})")


def _deliveries(
    sequencer: Sequencer, flow: OrderFlow, payments: int, confirmations: int, refused: int, write: Callable[[str], None]
) -> None:
    desk = flow.desk
    assert desk is not None
    write(
        f"deliveries: {desk.settled} deals settled by delivery versus payment: the buyers paid, the simulation "
        f"warehouses'"
    )
    write(
        f"  operators confirmed the weight delivered, the receipts went to the buyers; {desk.settled_with_difference} "
        f"a little under"
    )
    write("  weight, inside the tolerance (the buyer refunded; for coal the seller kept a residual receipt)")
    write(
        f"  last round after trading: {payments} payments, {confirmations} confirmations; "
        f"{len(sequencer.core.warehouse.open_deals)} deliveries still open; "
        f"{refused} sell orders refused for lack of receipts"
    )


def _stock(sequencer: Sequencer, write: Callable[[str], None]) -> None:
    warehouse = sequencer.core.warehouse
    write(f"goods: {len(warehouse.open_deals)} deliveries open, {len(warehouse.locks)} sell orders holding receipts")
    for row in warehouse.stock_report():
        write(
            f"  {row['warehouse_id']:<18} {row['group']:<12} live {row['live_kg'] // 1000:>7,} t  "
            f"locked {row['locked_kg'] // 1000:>6,} t  in delivery {row['in_delivery_kg'] // 1000:>6,} t"
        )


def _money(sequencer: Sequencer, write: Callable[[str], None]) -> None:
    clearing = sequencer.core.clearing
    ledger = clearing.ledger
    available = sum(b[0] for b in ledger.balances.values())
    margin = sum(b[1] for b in ledger.balances.values())
    escrow = sum(b[2] for b in ledger.balances.values())
    custody = ledger.exchange[3]
    write(
        f"money: bank custody {custody / 100:,.2f} CNY = available {available / 100:,.2f} + frozen margin "
        f"{margin / 100:,.2f} + frozen escrow {escrow / 100:,.2f} + exchange accounts "
        f"{(custody - available - margin - escrow) / 100:,.2f}; {len(clearing.deals)} open deals, "
        f"{len(clearing.orders)} orders holding margin"
    )
