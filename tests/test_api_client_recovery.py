"""The Python client never believes it is in sync when it is not, over real sockets: a refused
subscription is not remembered (and does not stop a reconnect), a closed connection unsyncs every
book, a refused snapshot request or stream repair is tried again, messages that aged out while away
are counted as lost, and a failing on_message callback does not stop the reader."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api._client import Client, RequestError
from api._harness import running_exchange
from api._limits import GatewayLimits
from tests.aio import run, wait_for

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


def test_a_refused_subscription_is_not_remembered(tmp_path: Path) -> None:
    """A typo in an instrument was kept and replayed by every reconnect, which stopped at it: no
    book was resubscribed, and the real book said synced while nothing updated it."""

    async def main() -> None:
        async with (
            running_exchange(db(tmp_path)) as ex,
            Client(ex.url, *ex.trader_key("M1")) as client,
            Client(ex.url, *ex.trader_key("M2")) as other,
        ):
            book = await client.subscribe_book(RB)
            await wait_for(lambda: book.synced)
            with pytest.raises(RequestError) as info:
                await client.subscribe_book("RB-TYPO")
            assert info.value.code == "UNKNOWN_INSTRUMENT"
            with pytest.raises(RequestError) as info:
                await client.subscribe_private("orders", account="M2")  # a trader names no other member
            assert info.value.code == "FORBIDDEN"
            assert sorted(client.books) == [RB]
            assert "orders" not in client.private_seq
            await client.subscribe_private("orders")  # without the account refused a moment ago
            await client.reconnect()
            assert client.subscription_errors == []
            await wait_for(lambda: book.synced)
            await other.place_order(RB, "buy", "3400.00", 2)
            await wait_for(lambda: book.levels()[0] == [("3400.00", 2)])
            await client.place_order(RB, "buy", "3399.00", 1)
            await wait_for(lambda: len(client.private_messages["orders"]) >= 1)

    run(main)


def test_a_subscription_refused_on_reconnect_is_dropped_after_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            client = Client(ex.url, *ex.trader_key("M1"))
            await client.connect()
            gone = await client.subscribe_book(RB)
            client.books["NO-SUCH"] = client.books[RB].__class__("NO-SUCH")  # as if delisted meanwhile
            client.public.add(("trades", RB))
            await client.close()
            with pytest.raises(RequestError) as info:
                await client.connect()
            assert info.value.code == "UNKNOWN_INSTRUMENT"
            assert client.subscription_errors == [("book", "NO-SUCH", "UNKNOWN_INSTRUMENT")]
            assert sorted(client.books) == [RB]
            assert ("trades", RB) in client.public  # tried after the refusal, and kept
            await wait_for(lambda: gone.synced)
            await client.close()

    run(main)


def test_a_closed_connection_unsyncs_every_book(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            client = Client(ex.url, *ex.trader_key("M1"))
            await client.connect()
            book = await client.subscribe_book(RB)
            await wait_for(lambda: book.synced)
            assert client.connected
            for conn in tuple(ex.gateway.connections):
                conn.close(1008, "closed by the exchange")
            await wait_for(lambda: not client.connected)
            assert not book.synced
            assert client.close_code == 1008
            await client.reconnect()
            await wait_for(lambda: book.synced)
            await client.close()

    run(main)


def test_messages_aged_out_while_away_are_counted_lost(tmp_path: Path) -> None:
    """A stream subscribed while empty lost the messages beyond the replay ring without a count."""

    async def main() -> None:
        async with running_exchange(db(tmp_path), GatewayLimits(private_ring_messages=8)) as ex:
            key = ex.trader_key("M1")
            client = Client(ex.url, *key)
            await client.connect()
            await client.subscribe_private("orders")
            async with Client(ex.url, *key) as other_session:
                await client.close()
                for i in range(20):
                    await other_session.place_order(RB, "buy", f"{3400 + i}.00", 1)
                await client.connect()
            assert client.replay_lost == 1
            await client.close()
            # and a resume that loses nothing counts nothing
            async with Client(ex.url, *key) as other_session:
                await client.connect()
                await client.close()
                await other_session.place_order(RB, "buy", "3300.00", 1)
                await client.connect()
                await wait_for(lambda: client.private_messages["orders"][-1]["seq"] == client.private_seq["orders"])
                assert client.replay_lost == 1
            await client.close()

    run(main)


def test_a_refused_snapshot_request_and_stream_repair_are_tried_again(tmp_path: Path) -> None:
    """The snapshot request after a gap, and the repair of a private stream, were sent once: refused
    (RATE_LIMITED) the book stayed unsynced and the stream unsubscribed for good."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            client = Client(ex.url, *ex.trader_key("M1"))
            await client.connect()
            book = await client.subscribe_book(RB)
            await client.subscribe_private("orders")
            await wait_for(lambda: book.synced)
            (conn,) = [c for c in ex.gateway.connections if ("book", RB) in c.subscriptions]
            async with Client(ex.url, *ex.trader_key("M2")) as other, Client(ex.url, *ex.trader_key("M1")) as mine:
                book.seq -= 1  # as if a delta had been lost
                conn.bucket.tokens = 0.0
                rate = conn.bucket.rate_per_s
                conn.bucket.rate_per_s = 1e-9
                await other.place_order(RB, "buy", "3490.00", 1)  # the gap shows; the snapshot is refused
                await asyncio.sleep(0.3)
                assert not book.synced
                conn.bucket.rate_per_s = rate
                await wait_for(lambda: book.synced)
                assert book.levels()[0] == [("3490.00", 1)]
                # the stream: the unsubscribe of the repair goes through, its subscribe is refused
                await mine.place_order(RB, "buy", "3480.00", 1)
                await wait_for(lambda: client.private_seq["orders"] == 1)
                client.private_seq["orders"] = 0  # as if that message had been lost
                client.private_messages["orders"].clear()
                conn.bucket.tokens = 1.0
                conn.bucket.rate_per_s = 1e-9
                await mine.place_order(RB, "buy", "3470.00", 1)
                await asyncio.sleep(0.3)
                assert ("orders", "M1") not in conn.subscriptions
                conn.bucket.rate_per_s = rate
                await wait_for(lambda: [m["seq"] for m in client.private_messages["orders"]] == [1, 2])
                assert client.replay_lost == 0
            await client.close()

    run(main)


def test_a_failing_on_message_callback_does_not_stop_the_reader(tmp_path: Path) -> None:
    calls: list[str] = []

    def fragile(message: dict[str, Any]) -> None:
        calls.append(str(message.get("type")))
        raise ValueError("a bug in the trader's callback")

    async def main() -> None:
        async with (
            running_exchange(db(tmp_path)) as ex,
            Client(ex.url, *ex.trader_key("M1"), on_message=fragile) as client,
        ):
            book = await client.subscribe_book(RB)
            first = await client.place_order(RB, "buy", "3400.00", 1)
            second = await client.place_order(RB, "buy", "3401.00", 1)
            assert second["order_id"] > first["order_id"]
            await wait_for(lambda: book.levels()[0] == [("3401.00", 1), ("3400.00", 1)])
            assert client.connected
            assert "book" in calls

    run(main)
