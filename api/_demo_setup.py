"""`bulkex serve --demo`: make a fresh (or existing) database ready to trade
by hand: instruments listed and open for continuous trading, demo members
registered at the simulation bank and funded, their goods registered as
warehouse receipts by the simulation warehouses' operators (sellers sell
only against receipts), and a trader key for one of them, printed with a
short client example.

Every step goes through the sequencer as journaled commands; repeating it is
harmless (a repeated deposit record or member registration is answered as
the first and changes nothing; warehouses, operators and receipts that exist
already are not sent again), so running `serve --demo` again after a
restart keeps the same members, balances and receipts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exchange import Sequencer, Settings, funding_commands, load_instruments, stocking_commands
from matching import CONTINUOUS, SetTradingState
from warehouse import AddOperator, AddWarehouse, WarehouseEngine

__all__ = ["DEMO_ACCOUNTS", "prepare_demo"]

DEMO_ACCOUNTS = tuple(f"M{n:03d}" for n in range(1, 11))

EXAMPLE = """\
import asyncio
from api import Client

async def main() -> None:
    async with Client("{url}", "{key_id}", "{secret}") as client:
        book = await client.subscribe_book("{symbol}")
        print(await client.place_order("{symbol}", "buy", "{price}", 2))
        print(book.levels())

asyncio.run(main())
"""


def prepare_demo(settings: Settings) -> tuple[str, str, str]:
    """Journal the demo setup; returns (symbol, price, account) for the example."""
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
        states = sequencer.core.trading_states()
        sequencer.execute(SetTradingState(s, CONTINUOUS) for s, state in sorted(states.items()) if state != CONTINUOUS)
        book = sequencer.core.matching.books[instruments[0].symbol]
        price = book.instrument.ticks_to_price(book.reference_price_ticks)
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


def print_demo(url: str, key_id: str, secret: str, symbol: str, price: str, write: Callable[[str], None]) -> None:
    write("")
    write(f"demo exchange at {url}: instruments open for continuous trading, members {DEMO_ACCOUNTS[0]}..")
    write(f"{DEMO_ACCOUNTS[-1]} funded and holding warehouse receipts for every instrument (a sell order")
    write("locks them; name them with receipts=[...]); trader key for " + f"{DEMO_ACCOUNTS[0]}:")
    write(f"  key_id: {key_id}")
    write(f"  secret: {secret}")
    write("connect with (save as try.py, run with .venv/bin/python try.py):")
    write("")
    for line in EXAMPLE.format(url=url, key_id=key_id, secret=secret, symbol=symbol, price=price).splitlines():
        write("    " + line)
    write("")
