"""A running exchange on a free loopback port, for tests, benchmarks and demos.

    async with running_exchange(database_url) as ex:
        key_id, secret = ex.trader_key("M001")
        async with Client(ex.url, key_id, secret) as client: ...

All instruments of the packaged file are listed and opened for continuous
trading through a staff key (the session schedule is off). ``trader_key``
also registers the account as a clearing member at the simulation bank,
books its deposit and has the simulation warehouses' operators register
receipts for it on every instrument (once per account), so its orders pass
pre-trade risk and its sell orders lock receipts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from api._client import Client
from api._keys import KeyStore
from api._limits import GatewayLimits
from api._server import Gateway, GatewayServer
from exchange import (
    SIMULATION_BANK,
    Ack,
    Sequencer,
    Settings,
    WriterProcess,
    funding_commands,
    receipt_commands,
    warehouse_commands,
)
from warehouse import AddOperator, AddWarehouse

__all__ = ["HARNESS_RECEIPTS_PER_INSTRUMENT", "RunningExchange", "running_exchange"]

HARNESS_RECEIPTS_PER_INSTRUMENT = 200
"""Receipts of 10 lots each a trader gets per instrument: a resting sell order locks whole
receipts, so this is how many sell orders of one trader may rest on one book."""


@dataclass
class RunningExchange:
    server: GatewayServer
    keys: KeyStore
    staff: tuple[str, str]
    symbols: list[str] = field(default_factory=list)
    funded: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def gateway(self) -> Gateway:
        assert self.server.gateway is not None
        return self.server.gateway

    @property
    def sequencer(self) -> Sequencer | WriterProcess:
        assert self.server.sequencer is not None
        return self.server.sequencer

    def trader_key(self, account: str, receipts: bool = True) -> tuple[str, str]:
        """An API key of a trader of `account`; the account is registered and funded first
        (and given the simulation warehouses' receipts unless `receipts` is false)."""
        self.fund(account, receipts)
        return self.keys.create("trader", account, f"trader of {account}")

    def fund(self, account: str, receipts: bool = True) -> None:
        """Register `account` at the simulation bank, deposit its funds and (unless `receipts` is
        false: a test that registers its own goods) give it warehouse receipts on every
        instrument, once, waiting for the commit."""
        if account in self.funded:
            return
        instruments = [book.instrument for book in self.sequencer.core.matching.books.values()]
        commands = funding_commands([account])
        if receipts:
            commands += receipt_commands(instruments, [account], HARNESS_RECEIPTS_PER_INSTRUMENT)
        if not self.funded:
            commands = warehouse_commands(instruments) + commands
        tickets = self.sequencer.submit_many(commands)
        for ticket in tickets:
            ticket.result(timeout=30)
        self.funded.add(account)

    def staff_client(self) -> Client:
        return Client(self.url, *self.staff)

    def execute(self, commands: list[Any]) -> list[Ack]:
        """Submit set-up commands (warehouses, operators, bank records) to the sequencer and wait for
        their commit; the gateway's read models see them like any other command."""
        return [ticket.result(timeout=30) for ticket in self.sequencer.submit_many(commands)]

    def warehouse(self, warehouse_id: str, groups: tuple[str, ...], operator_id: str) -> tuple[str, str]:
        """A warehouse with one operator account; returns an operator key for it."""
        self.execute(
            [AddWarehouse(warehouse_id, f"warehouse {warehouse_id}", groups, "harness"),
             AddOperator(operator_id, warehouse_id, "harness")]
        )  # fmt: skip
        return self.keys.create("operator", operator_id, f"operator of {warehouse_id}")

    def bank_key(self, bank: str = SIMULATION_BANK) -> tuple[str, str]:
        return self.keys.create("bank", bank, f"bank {bank}")


@contextlib.asynccontextmanager
async def running_exchange(
    database_url: str,
    limits: GatewayLimits | None = None,
    *,
    open_markets: bool = True,
    snapshot_every_commands: int = 100_000,
    writer_process: bool = False,
) -> AsyncIterator[RunningExchange]:
    """A server on a free port with a staff key; `writer_process` as ``bulkex serve`` runs it (the
    sequencer in a process of its own), else the sequencer in this process (faster to start)."""
    settings = Settings(
        database_url=database_url,
        host="127.0.0.1",
        port=1,
        snapshot_every_commands=snapshot_every_commands,
        writer_process=writer_process,
    )
    server = GatewayServer(settings, port=0, limits=limits, schedule=False)
    await server.start()
    keys = KeyStore(database_url)
    try:
        staff = keys.create("staff", "", "harness staff")
        assert server.gateway is not None
        exchange = RunningExchange(server, keys, staff, sorted(server.gateway.market.instruments))
        if open_markets:
            async with exchange.staff_client() as client:
                for symbol in exchange.symbols:
                    await client.request("set_trading_state", instrument=symbol, state="continuous")
        yield exchange
    finally:
        keys.close()
        await server.stop()
