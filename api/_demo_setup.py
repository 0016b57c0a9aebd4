"""`bulkex serve --demo`: make a fresh (or existing) database ready to trade
by hand: instruments listed and open for continuous trading, demo members
registered at the simulation bank and funded, their goods registered as
warehouse receipts by the simulation warehouses' operators (sellers sell
only against receipts), a demo warehouse designated for every instrument
group with an operator account and confirmed rebar receipts for two
members, a trader key for one of them and an operator key, printed with a
short client example. Simulated makers and takers (``api._demo_traders``)
trade through their own keys while it runs, and their deals settle: a
``DeliveryDesk`` (see ``exchange._simulation``) follows the committed events,
pays the simulated buyers' deals and, as the simulation warehouses'
operators, confirms every paid delivery there (a trader who pays a deal by
hand sees it delivered too). It reads the receipts' pieces and the open
deliveries once, in ``prepare_demo`` (``demo_desk``); deals opened before
the server's first commit reaches it are left to their deadlines.

Every step goes through the sequencer as journaled commands; repeating it is
harmless (a repeated deposit record or member registration is answered as
the first and changes nothing; warehouses, operators and receipts that exist
already are not sent again), so running `serve --demo` again after a
restart keeps the same members, balances and receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from exchange import DeliveryDesk, Sequencer, Settings, funding_commands, load_instruments, stocking_commands
from matching import CONTINUOUS, SetTradingState
from warehouse import AddOperator, AddWarehouse, ConfirmReceipt, RegisterReceipt, WarehouseEngine

__all__ = [
    "DEMO_ACCOUNTS",
    "DEMO_MAKERS",
    "DEMO_OPERATOR",
    "DEMO_TAKERS",
    "DEMO_WAREHOUSE",
    "EXAMPLE",
    "demo_desk",
    "prepare_demo",
    "print_demo",
]

log = logging.getLogger("bulkex.demo")

DEMO_ACCOUNTS = tuple(f"M{n:03d}" for n in range(1, 11))
DEMO_MAKERS = DEMO_ACCOUNTS[1:3]
"""Simulated market makers (M002, M003): they also hold the demo's rebar receipts."""
DEMO_TAKERS = DEMO_ACCOUNTS[3:5]
"""Simulated takers (M004, M005)."""
DEMO_WAREHOUSE = "WH-DEMO"
DEMO_OPERATOR = "op-demo"
DEMO_RECEIPT_KG = 500_000
SETTLE_EVERY_S = 0.5
"""How often the demo's delivery desk sends the payments and confirmations that fell due."""

EXAMPLE = """\
import asyncio, api
async def main() -> None:
    async with api.Client("{url}", "{key_id}", "{secret}") as client:
        print(await client.place_order("{symbol}", "buy", "{price}", 2))
asyncio.run(main())
"""
"""The client example ``print_demo`` shows: five lines that connect, sign in, place an order and
print the answer (tests/test_api_demo_example.py runs it as printed)."""


def demo_desk(settings: Settings) -> DeliveryDesk:
    """The delivery desk of the simulated traders (pass it to ``prepare_demo`` to prime it)."""
    return DeliveryDesk(load_instruments(settings.instruments_file), (*DEMO_MAKERS, *DEMO_TAKERS), seed=0)


def prepare_demo(settings: Settings, desk: DeliveryDesk | None = None) -> tuple[str, str, str]:
    """Journal the demo setup; returns (symbol, price, account) for the example. `desk`, when
    given, is primed with the state the server will start from."""
    instruments = load_instruments(settings.instruments_file)
    sequencer = Sequencer.from_settings(settings)
    sequencer.open()
    try:
        sequencer.list_on_first_start(instruments)
        sequencer.execute(funding_commands(DEMO_ACCOUNTS))
        warehouse = sequencer.core.warehouse
        stocking = [c for c in stocking_commands(instruments, DEMO_ACCOUNTS) if not _done(c, warehouse)]
        if stocking:
            sequencer.execute(stocking)
        sequencer.execute(_warehouse_commands(sequencer, instruments))
        states = sequencer.core.trading_states()
        sequencer.execute(SetTradingState(s, CONTINUOUS) for s, state in sorted(states.items()) if state != CONTINUOUS)
        book = sequencer.core.matching.books[instruments[0].symbol]
        price = book.instrument.ticks_to_price(book.reference_price_ticks)
        if desk is not None:
            desk.prime(sequencer.core.warehouse)
        return instruments[0].symbol, price, DEMO_ACCOUNTS[0]
    finally:
        sequencer.close()


def _done(command: Any, warehouse: WarehouseEngine) -> bool:
    """True for a stocking command whose warehouse, operator or receipt exists already."""
    if isinstance(command, AddWarehouse):
        return command.warehouse_id in warehouse.warehouses
    if isinstance(command, AddOperator):
        return command.operator_id in warehouse.operators
    return command.number in warehouse.receipts


def _warehouse_commands(sequencer: Sequencer, instruments: list[Any]) -> list[Any]:
    """The demo warehouse, its operator and the makers' rebar receipts, once (a restart adds nothing)."""
    warehouse = sequencer.core.warehouse
    if DEMO_WAREHOUSE in warehouse.warehouses:
        return []
    groups = tuple(dict.fromkeys(i.warehouse_group for i in instruments))
    commands: list[Any] = [
        AddWarehouse(DEMO_WAREHOUSE, "Demo Warehouse", groups, "serve-demo"),
        AddOperator(DEMO_OPERATOR, DEMO_WAREHOUSE, "serve-demo"),
    ]
    rebar = next((i for i in instruments if i.commodity == "steel"), None)
    if rebar is not None:
        for member in DEMO_MAKERS:
            number = f"DEMO-{member}"
            commands.append(
                RegisterReceipt(
                    DEMO_OPERATOR,
                    number,
                    member,
                    rebar.symbol,
                    DEMO_RECEIPT_KG,
                    DEMO_RECEIPT_KG // 2_000,
                    f"HEAT-{member}",
                    f"CERT-{member}",
                    0,
                    0,
                    0,
                    "HRB400E",
                    "20 mm x 12 m",
                    "demo bay",
                )
            )
            commands.append(ConfirmReceipt(number, member))
    return commands


def simulated_traders(
    database_url: str, rate_per_s: float, desk: DeliveryDesk | None = None
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """The background task of ``serve --demo``: keys for the simulated makers and takers (new ones each
    run; a key's secret is never stored), then the traders on the server's own URL until cancelled;
    with `desk` (primed by ``prepare_demo``) their deals are paid and delivered as well."""
    from api._demo_traders import SimulatedTraders, TraderKey
    from api._keys import create_key

    makers = [TraderKey(a, *create_key(database_url, "trader", a, "serve --demo maker")) for a in DEMO_MAKERS]
    takers = [TraderKey(a, *create_key(database_url, "trader", a, "serve --demo taker")) for a in DEMO_TAKERS]

    async def run(server: Any) -> None:
        settling = None
        if desk is not None:
            # observe runs in the committer thread; due is a deque, taken from here (one consumer)
            server.sequencer.listeners.append(lambda pairs: desk.observe(e for _c, ack in pairs for e in ack.events))
            settling = asyncio.get_running_loop().create_task(_settle(server, desk))
        try:
            await SimulatedTraders(server.url, makers, takers, rate_per_s).run()
        finally:
            if settling is not None:
                settling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await settling

    return run


async def _settle(server: Any, desk: DeliveryDesk) -> None:
    """Send the desk's due payments and confirmations through the gateway's own submission."""
    logged = 0
    while True:
        await asyncio.sleep(SETTLE_EVERY_S)
        for command in desk.take(len(desk.due)):
            server.gateway.submit_internal(command)
        if desk.settled >= logged + 100:
            logged = desk.settled
            log.info("demo deliveries: %d settled by delivery versus payment, %d a little under weight",
                     desk.settled, desk.settled_with_difference)  # fmt: skip


def print_demo(
    url: str,
    key_id: str,
    secret: str,
    symbol: str,
    price: str,
    write: Callable[[str], None],
    operator_key: tuple[str, str] | None = None,
    simulated: bool = False,
) -> None:
    write("")
    write(f"demo exchange at {url}: instruments open for continuous trading, members {DEMO_ACCOUNTS[0]}..")
    write(f"{DEMO_ACCOUNTS[-1]} funded and holding warehouse receipts for every instrument (a sell order")
    write("locks them; name them with receipts=[...]); trader key for " + f"{DEMO_ACCOUNTS[0]}:")
    write(f"  key_id: {key_id}")
    write(f"  secret: {secret}")
    if operator_key is not None:
        write(f"operator key for warehouse {DEMO_WAREHOUSE} (operator account {DEMO_OPERATOR}):")
        write(f"  key_id: {operator_key[0]}")
        write(f"  secret: {operator_key[1]}")
    if simulated:
        makers = ", ".join(DEMO_MAKERS)
        takers = ", ".join(DEMO_TAKERS)
        write(f"simulated makers {makers} and takers {takers} trade through the socket (--no-simulate: off);")
        write("they pay their deals and the simulation warehouses' operators confirm delivery, so deals settle")
        write("by delivery versus payment and the goods move to the buyers")
    write("connect with (save as try.py, run with .venv/bin/python try.py: it signs in, places an order for")
    write(f"{DEMO_ACCOUNTS[0]} and prints the answer):")
    write("")
    for line in EXAMPLE.format(url=url, key_id=key_id, secret=secret, symbol=symbol, price=price).splitlines():
        write("    " + line)
    write("")
