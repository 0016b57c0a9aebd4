"""The gateway with a real server on 127.0.0.1 (a free port), real sockets and
the real sequencer, on SQLite and PostgreSQL: local books equal the server's,
private streams survive reconnects, traders stay in their own account, and
shutdown loses nothing acknowledged. The end-to-end tests run both with the
sequencer in the server's process and in its writer process (``bulkex
serve``'s default, exchange/_writer.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import Any

import pytest

from api._client import Client, RequestError
from api._harness import running_exchange
from exchange import Sequencer
from matching import BUY, SELL
from tests.aio import run, wait_for

pytestmark = pytest.mark.timeout(120)
MODES = pytest.mark.parametrize("writer_process", [False, True], ids=["in-process", "writer-process"])

RB = "RB-HRB400E-20"
HC = "HC-Q235B-5.75"


def core_levels(core: Any, symbol: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A core's own book (the truth), as wire levels, best first."""
    book = core.matching.books[symbol]
    price = book.instrument.ticks_to_price
    bids = sorted(((p, q) for p, q in book.level_lots[BUY].items() if q), reverse=True)
    asks = sorted((p, q) for p, q in book.level_lots[SELL].items() if q)
    return [(price(p), q) for p, q in bids], [(price(p), q) for p, q in asks]


async def random_flow(client: Client, rnd: random.Random, count: int, refs: dict[str, int]) -> int:
    """`count` random requests (new, cancel, amend) in pipelined waves; returns how many were accepted."""
    symbols = sorted(refs)
    live: list[tuple[int, str]] = []
    accepted = 0
    sent = 0
    while sent < count:
        wave: list[tuple[str, Awaitable[dict[str, Any]]]] = []
        for _ in range(min(40, count - sent)):
            sent += 1
            roll = rnd.random()
            if live and roll < 0.2:
                order_id, symbol = live.pop(rnd.randrange(len(live)))
                wave.append((symbol, client.cancel_order(order_id)))
            elif live and roll < 0.3:
                order_id, symbol = live[rnd.randrange(len(live))]
                price = f"{refs[symbol] + rnd.randint(-12, 12)}.00"
                wave.append((symbol, client.amend_order(order_id, price, rnd.randint(1, 8))))
            else:
                symbol = rnd.choice(symbols)
                side = rnd.choice(("buy", "sell"))
                offset = rnd.randint(-15, 10) if side == "buy" else rnd.randint(-10, 15)
                tif = rnd.choice(("gtc", "gtc", "gtc", "ioc", "day"))
                price = f"{refs[symbol] + offset}.00"
                wave.append((symbol, client.place_order(symbol, side, price, rnd.randint(1, 8), time_in_force=tif)))
        results = await asyncio.gather(*(w[1] for w in wave), return_exceptions=True)
        for (symbol, _), result in zip(wave, results, strict=True):
            if isinstance(result, RequestError):
                assert result.code in ("UNKNOWN_ORDER", "NOT_YOUR_ORDER"), result
                continue
            assert isinstance(result, dict), result
            accepted += 1
            if "client_order_id" in result and result["open_lots"] > 0:
                live.append((result["order_id"], symbol))
    return accepted


@MODES
def test_local_book_equals_server_after_random_orders(database_url: str, writer_process: bool) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    final: dict[str, Any] = {}

    async def main() -> None:
        async with running_exchange(database_url, writer_process=writer_process) as ex:
            refs = {RB: 3500, HC: 3800}
            observer = Client(ex.url)
            await observer.connect()
            books = {symbol: await observer.subscribe_book(symbol) for symbol in refs}
            traders = []
            for n in range(3):
                client = Client(ex.url, *ex.trader_key(f"M{n:03d}"))
                await client.connect()
                traders.append(client)
            accepted = await asyncio.gather(*(random_flow(c, random.Random(rnd.random()), 1000, refs) for c in traders))
            assert sum(accepted) > 2500, (seed, accepted)
            # a lost delta: the client notices the gap, asks for a snapshot and is whole again
            books[RB].seq -= 1
            await traders[0].place_order(RB, "buy", "3300.00", 1)
            await traders[0].place_order(RB, "buy", "3301.00", 1)
            for symbol, book in books.items():
                data = ex.gateway.market.instruments[symbol]

                def caught_up(b: Any = book, d: Any = data) -> bool:
                    return bool(b.synced and b.seq == d.book_seq)

                await wait_for(caught_up)
                if not writer_process:  # the core is here (else: checked against the journal below)
                    assert book.levels() == core_levels(ex.sequencer.core, symbol), (seed, symbol)
                assert book.levels() == (data.top(10_000)), (seed, symbol)
                assert book.checksum_failures == 0, seed
                final[symbol] = book.levels()
            assert books[RB].gaps == 1, seed
            assert books[HC].gaps == 0, seed
            assert books[RB].snapshots == 2, seed
            assert len(final[RB][0]) > 5, seed
            for client in [observer, *traders]:
                await client.close()

    run(main)
    with Sequencer(database_url) as sequencer:  # the state as journaled: the books the client kept
        for symbol, levels in final.items():
            assert core_levels(sequencer.core, symbol) == levels, (seed, symbol)


@MODES
def test_reconnect_and_resume_loses_no_private_message(database_url: str, writer_process: bool) -> None:
    async def main() -> None:
        async with running_exchange(database_url, writer_process=writer_process) as ex:
            maker_key = ex.trader_key("MAKER")
            maker = Client(ex.url, *maker_key)
            maker_other = Client(ex.url, *maker_key)  # a second session of the same member keeps trading
            taker = Client(ex.url, *ex.trader_key("TAKER"))
            for c in (maker, maker_other, taker):
                await c.connect()
            await maker.subscribe_private("orders")
            await maker.subscribe_private("executions")
            for round_number in range(6):
                for i in range(20):
                    await maker_other.place_order(RB, "sell", f"{3500 + i}.00", 2)
                await taker.place_order(RB, "buy", "3510.00", 15, time_in_force="ioc")
                if round_number % 2 == 0:
                    await maker.close()  # away while its orders trade
                    await taker.place_order(RB, "buy", "3520.00", 7, time_in_force="ioc")
                    await maker_other.mass_cancel(RB)
                    await maker.connect()  # logs in again and resumes from the next seq
            for channel in ("orders", "executions"):
                stream = ex.gateway.private.stream(channel, "MAKER")

                def caught_up(s: Any = stream, ch: str = channel) -> bool:
                    return bool(maker.private_seq.get(ch) == s.seq)

                await wait_for(caught_up)
                got = maker.private_messages[channel]
                assert [m["seq"] for m in got] == list(range(1, stream.seq + 1)), channel
                assert got[-1]["seq"] == stream.seq
            executions = maker.private_messages["executions"]
            fills = await maker.request("fills", limit=1000)
            assert len(executions) == len(fills["fills"]) > 0
            assert sum(m["quantity_lots"] for m in executions) == sum(f["quantity_lots"] for f in fills["fills"])
            assert maker.replay_lost == 0
            for c in (maker, maker_other, taker):
                await c.close()

    run(main)


def test_a_trader_never_sees_or_touches_another_members_orders(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            alice = Client(ex.url, *ex.trader_key("ALICE"))
            bob = Client(ex.url, *ex.trader_key("BOB"))
            await alice.connect()
            await bob.connect()
            await bob.subscribe_private("orders")
            order = await alice.place_order(RB, "buy", "3490.00", 3, client_order_id="a1")
            with pytest.raises(RequestError) as info:
                await bob.cancel_order(order["order_id"])
            assert info.value.code in ("UNKNOWN_ORDER", "NOT_YOUR_ORDER")
            with pytest.raises(RequestError) as info:
                await bob.amend_order(order["order_id"], "3491.00", 1)
            assert info.value.code in ("UNKNOWN_ORDER", "NOT_YOUR_ORDER")
            cancelled = await bob.mass_cancel()
            assert cancelled["cancelled_orders"] == 0
            for request, field in (("orders", "orders"), ("fills", "fills")):
                with pytest.raises(RequestError) as info:
                    await bob.request(request, account="ALICE")
                assert info.value.code == "FORBIDDEN"
                assert (await bob.request(request, status="all") if request == "orders" else
                        await bob.request(request))[field] == []  # fmt: skip
            with pytest.raises(RequestError) as info:
                await bob.request("subscribe", channel="orders", account="ALICE")
            assert info.value.code == "FORBIDDEN"
            # a same client order id is per account: Bob's does not collide with Alice's
            mine = await bob.place_order(RB, "sell", "3600.00", 1, client_order_id="a1")
            assert not mine["duplicate"]
            alice_orders = (await alice.request("orders"))["orders"]
            assert [(o["order_id"], o["open_lots"]) for o in alice_orders] == [(order["order_id"], 3)]
            await asyncio.sleep(0.05)
            assert all(m["account"] == "BOB" for m in bob.private_messages["orders"])
            bob_messages = bob.private_messages["orders"]
            assert {m["order_id"] for m in bob_messages if m["event"] != "rejected"} == {mine["order_id"]}
            assert {m["event"] for m in bob_messages} == {"rejected", "accepted"}
            # staff see any account; a staff key places no orders
            async with ex.staff_client() as staff:
                seen = await staff.request("orders", account="ALICE")
                assert [o["order_id"] for o in seen["orders"]] == [order["order_id"]]
                with pytest.raises(RequestError) as info:
                    await staff.place_order(RB, "buy", "3490.00", 1)
                assert info.value.code == "FORBIDDEN"
            await alice.close()
            await bob.close()

    run(main)


@MODES
def test_graceful_shutdown_loses_nothing_acknowledged(tmp_path: Any, writer_process: bool) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    answered: list[int] = []
    unavailable = 0

    async def main() -> None:
        nonlocal unavailable
        async with running_exchange(url, writer_process=writer_process) as ex:
            client = Client(ex.url, *ex.trader_key("M1"))
            await client.connect()
            waves = [client.place_order(RB, "buy", f"{3300 + i % 100}.00", 1) for i in range(600)]
            gathered = asyncio.gather(*waves, return_exceptions=True)
            await asyncio.sleep(0.05)
            stopping = asyncio.get_running_loop().create_task(ex.server.stop())
            for result in await gathered:
                if isinstance(result, dict):
                    answered.append(result["order_id"])
                elif isinstance(result, RequestError):
                    assert result.code == "UNAVAILABLE", result
                    unavailable += 1
                else:
                    assert isinstance(result, ConnectionError), result
            await stopping

    run(main)
    assert answered
    with Sequencer(url) as sequencer:
        orders = sequencer.core.matching.orders
        assert all(order_id in orders for order_id in answered)


def test_cancel_on_disconnect(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            key = ex.trader_key("M1")
            careful = Client(ex.url, *key, cancel_on_disconnect=True)
            plain = Client(ex.url, *key)
            await careful.connect()
            await plain.connect()
            assert careful.session["cancel_on_disconnect"] is True
            for i in range(3):
                await careful.place_order(RB, "buy", f"{3400 + i}.00", 1)
            await careful.close()
            await wait_for(lambda: not ex.sequencer.core.matching.account_orders.get("M1"))
            left = await plain.request("orders")
            assert left["orders"] == []
            await plain.place_order(RB, "buy", "3400.00", 1)
            await plain.close()  # without the flag, orders stay
            await asyncio.sleep(0.1)
            assert len(ex.sequencer.core.matching.account_orders["M1"]) == 1

    run(main)
