"""`serve --demo`: the set-up is journaled once (a restart adds nothing), the
simulated makers and takers trade through real sockets at a bounded rate and
stop with the server, and the printed operator key sees the demo warehouse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from api._client import Client
from api._demo_setup import (
    DEMO_ACCOUNTS,
    DEMO_OPERATOR,
    DEMO_WAREHOUSE,
    demo_desk,
    prepare_demo,
    print_demo,
    simulated_traders,
)
from api._keys import create_key
from api._server import GatewayServer, run_server
from exchange import Sequencer, Settings

pytestmark = pytest.mark.timeout(120)


def test_demo_setup_is_journaled_once(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}")
    symbol, price, account = prepare_demo(settings)
    with Sequencer(settings.database_url) as sequencer:
        first_seq = sequencer.last_seq
        warehouse = sequencer.core.warehouse
        assert warehouse.operators[DEMO_OPERATOR] == DEMO_WAREHOUSE
        assert sorted((r.holder, r.state) for r in warehouse.receipts.values() if r.warehouse_id == DEMO_WAREHOUSE) == [
            ("M002", "active"), ("M003", "active"),
        ]  # fmt: skip
        # every demo member also holds the goods the simulation warehouses registered for it
        holders = {r.holder for r in warehouse.receipts.values() if r.state == "active"}
        assert holders >= set(DEMO_ACCOUNTS)
        receipts = len(warehouse.receipts)
    assert prepare_demo(settings) == (symbol, price, account)
    with Sequencer(settings.database_url) as sequencer:
        # the registrations and deposits are journaled again and answered as the first; nothing else
        assert sequencer.last_seq == first_seq + 2 * len(DEMO_ACCOUNTS)
        assert len(sequencer.core.warehouse.receipts) == receipts
    lines: list[str] = []
    print_demo("ws://x", "kid", "sec", symbol, price, lines.append, ("okid", "osec"), simulated=True)
    text_out = "\n".join(lines)
    assert "okid" in text_out
    assert "osec" in text_out
    assert "--no-simulate" in text_out


def test_simulated_traders_trade_over_the_socket_and_stop_with_the_server(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = Settings(database_url=url, host="127.0.0.1")
    desk = demo_desk(settings)
    prepare_demo(settings, desk)
    operator = create_key(url, "operator", DEMO_OPERATOR, "test")
    seen: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        started: list[GatewayServer] = []

        async def watch() -> None:
            while not started:
                await asyncio.sleep(0.01)
            server = started[0]
            await asyncio.sleep(2.0)
            for _ in range(100):  # the first deals settle a second or so after their trades
                if desk.settled:
                    break
                await asyncio.sleep(0.1)
            async with Client(server.url, *operator) as client:
                seen["session"] = client.session
                seen["receipts"] = await client.receipts()
            stop.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        await run_server(
            settings, port=0, schedule=False, stop=stop, ready=started.append,
            background=simulated_traders(url, 40.0, desk),
        )  # fmt: skip
        await watcher

    asyncio.run(main())
    assert seen["session"]["warehouse"] == DEMO_WAREHOUSE
    assert {r["holder"] for r in seen["receipts"]} >= {"M002", "M003"}
    with create_engine(url).connect() as conn:
        orders = conn.execute(text("select count(*) from orders")).scalar_one()
        trades = conn.execute(text("select count(*) from trades")).scalar_one()
        settled = conn.execute(text("select count(*) from warehouse_deliveries where state = 'settled'")).scalar_one()
    assert 10 <= orders <= 600, orders  # 40 requests/s for 2 to 12 s: bounded
    assert trades > 0
    # the desk paid the simulated buyers' deals and confirmed delivery at the simulation warehouses
    assert desk.payments > 0
    assert settled >= desk.settled > 0, (settled, desk.settled)
