"""Every request gets exactly one answer with a documented code, over real sockets: staff may
move an instrument to the midday break; an unexpected failure is answered INTERNAL_ERROR and the
connection stays; garbage frames count against the rate limit; an amend of another member's
order is answered as one of no order at all; an unknown channel and a repeated request id get
their own codes; cancel-on-disconnect cancels only its own session's orders."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from api._client import Client, RequestError
from api._handlers import HANDLERS, Handler, Submit
from api._harness import running_exchange
from api._keys import derive_signing_key, sign_login
from api._limits import GatewayLimits
from api._queries import Queries
from exchange import Ack, QueueFull, Sequencer
from matching import CancelOrder
from tests.aio import next_answer, run

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


async def answers_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Answers up to and including the one whose id is `last`."""
    got = [await next_answer(ws)]
    while got[-1]["id"] != last:
        got.append(await next_answer(ws))
    return got


async def answer(ws: ClientConnection, frame: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Send one frame and an `instruments` fence after it; the frame's one answer (read until both
    arrived: a query or a login answers after a later fence)."""
    await ws.send(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)
    await ws.send('{"type": "instruments", "id": "fence"}')
    got: list[dict[str, Any]] = []
    fenced = False
    while not (fenced and got):
        message = await next_answer(ws)
        if message["id"] == "fence":
            assert message["type"] == "accepted", message
            fenced = True
        else:
            got.append(message)
    assert len(got) == 1, got
    return got[0]


async def login(ws: ClientConnection, key: tuple[str, str], cancel_on_disconnect: bool = False) -> None:
    key_id, secret = key
    ts = time.time_ns() // 1_000_000
    nonce = f"n{time.time_ns()}"
    frame = {"type": "login", "id": "login", "key_id": key_id, "timestamp_ms": ts, "nonce": nonce,
             "signature": sign_login(key_id, derive_signing_key(key_id, secret), ts, nonce),
             "cancel_on_disconnect": cancel_on_disconnect}  # fmt: skip
    assert (await answer(ws, frame))["type"] == "accepted"


# ------------------------------------------------------------------ the midday break


def test_staff_move_an_instrument_to_the_break_and_back(tmp_path: Path) -> None:
    """`"state":"break"` passed the model but had no handler entry: the KeyError closed the
    connection (1011) and the request was never answered."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, ex.staff_client() as staff:
            trader = Client(ex.url, *ex.trader_key("M1"))
            await trader.connect()
            result = await staff.request("set_trading_state", instrument=RB, state="break")
            assert result["instrument"] == RB
            assert result["state"] == "break"
            listed = {i["symbol"]: i["state"] for i in (await staff.request("instruments"))["instruments"]}
            assert listed[RB] == "break"
            with pytest.raises(RequestError) as info:
                await trader.place_order(RB, "buy", "3500.00", 1)
            assert info.value.code == "MARKET_CLOSED"
            with pytest.raises(RequestError) as info:  # the core's moves: break -> break is none
                await staff.request("set_trading_state", instrument=RB, state="break")
            assert info.value.code == "BAD_STATE"
            resumed = await staff.request("set_trading_state", instrument=RB, state="continuous")
            assert resumed["state"] == "continuous"
            assert (await trader.place_order(RB, "buy", "3500.00", 1))["status"] == "open"
            await trader.close()

    run(main)


# ------------------------------------------------------------ unexpected failures


def test_an_unexpected_failure_is_answered_internal_error_and_the_connection_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that raises, a command's `finish` that raises after the commit, and a handler
    that raises after answering: each request is answered exactly once and the connection stays
    open."""

    def broken(gateway: Any, conn: Any, request: Any) -> Any:
        raise KeyError("a programming error")

    new_order = HANDLERS.handlers["new_order"]

    def broken_finish(gateway: Any, conn: Any, request: Any) -> Submit:
        outcome = new_order.run(gateway, conn, request)
        assert isinstance(outcome, Submit)

        def finish(ack: Ack) -> dict[str, Any]:
            raise RuntimeError("a programming error after the commit")

        return Submit(outcome.command, finish)

    monkeypatch.setitem(HANDLERS.handlers, "ping", Handler(broken, None))
    monkeypatch.setitem(HANDLERS.handlers, "new_order", Handler(broken_finish, new_order.roles))

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, connect(ex.url) as ws:
            await login(ws, ex.trader_key("M1"))
            reply = await answer(ws, {"type": "ping", "id": "p1"})
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "p1", "INTERNAL_ERROR"), reply
            assert "seq" not in reply
            order = {"type": "new_order", "id": "o1", "instrument": RB, "client_order_id": "c1", "side": "buy",
                     "price": "3500.00", "quantity_lots": 1}  # fmt: skip
            reply = await answer(ws, order)
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "o1", "INTERNAL_ERROR"), reply
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)
            assert reply["seq"] == sequencer.last_seq  # sequenced: the client learns where to look
            orders = await answer(ws, {"type": "orders", "id": "q1"})
            assert [o["client_order_id"] for o in orders["result"]["orders"]] == ["c1"]

            subscribe = HANDLERS.handlers["subscribe"]

            def answers_then_fails(gateway: Any, conn: Any, request: Any) -> Any:
                subscribe.run(gateway, conn, request)  # answers the request itself
                raise RuntimeError("a programming error after the answer")

            # (a handler is replaced, not a method: the compiled build's classes take no monkeypatching)
            monkeypatch.setitem(HANDLERS.handlers, "subscribe", Handler(answers_then_fails, subscribe.roles))
            reply = await answer(ws, {"type": "subscribe", "id": "s1", "channel": "book", "instrument": RB})
            assert (reply["type"], reply["id"]) == ("accepted", "s1"), reply  # once (answer() checks)
            assert not ws.close_code

    run(main)


def test_a_query_that_fails_is_answered_internal_error_and_the_connection_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query whose database read raises (here: a broken query method) is answered INTERNAL_ERROR,
    not UNAVAILABLE (which says the exchange is stopping), and the next request is served."""

    def broken(*_args: object) -> Any:
        raise RuntimeError("the database read failed")

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, connect(ex.url) as ws:
            await login(ws, ex.trader_key("M1"))
            with monkeypatch.context() as patch:
                patch.setattr(Queries, "fills", broken)
                reply = await answer(ws, {"type": "fills", "id": "f1"})
            assert (reply["type"], reply["id"], reply["code"]) == ("error", "f1", "INTERNAL_ERROR"), reply
            reply = await answer(ws, {"type": "fills", "id": "f2"})
            assert (reply["type"], reply["id"]) == ("accepted", "f2"), reply
            assert not ws.close_code

    run(main)


def test_a_read_model_that_fails_on_a_batch_leaves_no_request_unanswered(tmp_path: Path) -> None:
    """A read model that raises on a committed batch is logged; the batch's requests are answered
    all the same (they are committed), and the connection stays open."""

    class Failing:
        calls = 0

        def apply_batch(self, batch: Any) -> None:
            self.calls += 1
            raise RuntimeError("a programming error in a read model")

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, connect(ex.url) as ws:
            await login(ws, ex.trader_key("M1"))
            failing = Failing()
            ex.gateway.followers.insert(0, failing)
            order = {"type": "new_order", "id": "o1", "instrument": RB, "client_order_id": "c1", "side": "buy",
                     "price": "3500.00", "quantity_lots": 1}  # fmt: skip
            reply = await answer(ws, order)
            assert (reply["type"], reply["id"]) == ("accepted", "o1"), reply
            assert reply["result"]["status"] == "open"
            assert failing.calls >= 1
            ex.gateway.followers.remove(failing)
            orders = await answer(ws, {"type": "orders", "id": "q1"})
            assert [o["client_order_id"] for o in orders["result"]["orders"]] == ["c1"]
            assert not ws.close_code

    run(main)


# ------------------------------------------------------------- garbage and the rate


def test_garbage_frames_count_against_the_connection_rate(tmp_path: Path) -> None:
    """Malformed JSON, a JSON value that is no object and an oversized message take a token as a
    request does; beyond the burst they are answered RATE_LIMITED, as a valid request would be."""
    burst = 12
    garbage: list[tuple[str, str]] = [("{nope", "MALFORMED_JSON"), ("[1, 2]", "MALFORMED_JSON"),
                                      ("x" * 5_000, "MESSAGE_TOO_LARGE")]  # fmt: skip

    async def main() -> None:
        limits = GatewayLimits(connection_rate_per_s=0.001, connection_burst=burst)
        async with running_exchange(db(tmp_path), limits) as ex, connect(ex.url) as ws:
            frames = [garbage[i % len(garbage)] for i in range(burst + 10)]
            for frame, _code in frames:
                await ws.send(frame)
            await ws.send('{"type": "ping", "id": "last"}')
            got = await answers_until(ws, "last")
            assert [a["code"] for a in got] == [code for _f, code in frames[:burst]] + ["RATE_LIMITED"] * 11
            assert all(a["id"] is None for a in got[:-1])

    run(main)


# --------------------------------------------------- another member's order, unknown


def test_an_amend_of_another_members_order_is_answered_as_one_of_no_order(tmp_path: Path) -> None:
    """The gateway checked the price against the instrument of any live order: another member's
    order id answered PRICE_OFF_TICK where an unknown id answered UNKNOWN_ORDER."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            alice = Client(ex.url, *ex.trader_key("ALICE"))
            bob = Client(ex.url, *ex.trader_key("BOB"))
            await alice.connect()
            await bob.connect()
            theirs = (await alice.place_order(RB, "buy", "3490.00", 3))["order_id"]
            mine = (await bob.place_order(RB, "buy", "3480.00", 1))["order_id"]
            nobody = 10**12
            for price in ("3500.50", "0.00", "3491.00", "9999.00"):
                seen = []
                for order_id in (theirs, nobody):
                    with pytest.raises(RequestError) as info:
                        await bob.amend_order(order_id, price, 2)
                    assert info.value.seq is not None
                    seen.append((info.value.code, info.value.message))
                assert seen[0] == seen[1] == ("UNKNOWN_ORDER", seen[1][1]), (price, seen)
            with pytest.raises(RequestError) as info:  # one's own order is still checked by the gateway
                await bob.amend_order(mine, "3500.50", 2)
            assert (info.value.code, info.value.seq) == ("PRICE_OFF_TICK", None)
            assert (await bob.amend_order(mine, "3481.00", 2))["open_lots"] == 2
            alice_orders = (await alice.request("orders"))["orders"]
            assert [(o["order_id"], o["price"], o["open_lots"]) for o in alice_orders] == [(theirs, "3490.00", 3)]
            await alice.close()
            await bob.close()

    run(main)


# ------------------------------------------------- channel and request id codes


def test_an_unknown_channel_and_a_repeated_request_id_get_their_codes(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, connect(ex.url) as ws:
            for request in (
                {"type": "subscribe", "id": "a", "channel": "candles", "instrument": RB},
                {"type": "unsubscribe", "id": "b", "channel": "candles", "instrument": RB},
                {"type": "snapshot", "id": "c", "channel": "candles", "instrument": RB},
                {"type": "subscribe", "id": "d", "channel": "", "instrument": RB},
                {"type": "snapshot", "id": "d2", "channel": "candles"},  # no instrument: still the channel
            ):
                reply = await answer(ws, request)
                assert (reply["type"], reply["id"], reply["code"]) == ("error", request["id"], "UNKNOWN_CHANNEL"), reply
            wrong: tuple[dict[str, object], ...] = (
                {"type": "subscribe", "id": "e", "channel": 5, "instrument": RB},  # not a name: wrong type
                {"type": "subscribe", "id": "f", "channel": "candles", "instrument": RB, "extra": 1},
                {"type": "snapshot", "id": "g", "channel": "orders", "instrument": RB},  # a private channel
                {"type": "snapshot", "id": "h", "channel": "candles", "instrument": 5},  # and a wrong instrument
            )
            for bad in wrong:
                reply = await answer(ws, bad)
                assert (reply["type"], reply["id"], reply["code"]) == ("error", bad["id"], "INVALID_FIELD"), reply
            for private in ({"type": "subscribe", "id": "p1", "channel": "orders"},
                            {"type": "unsubscribe", "id": "p2", "channel": "orders"}):  # fmt: skip
                reply = await answer(ws, private)  # not logged in: the same code both ways
                assert (reply["id"], reply["code"]) == (private["id"], "NOT_AUTHENTICATED"), reply
            await login(ws, ex.trader_key("M1"))
            ex.sequencer.listeners.insert(0, lambda _batch: time.sleep(0.3))  # answers wait for the writer
            order = {"type": "new_order", "id": "dup", "instrument": RB, "client_order_id": "c1", "side": "buy",
                     "price": "3500.00", "quantity_lots": 1}  # fmt: skip
            await ws.send(orjson.dumps(order).decode())
            await ws.send(orjson.dumps({**order, "client_order_id": "c2"}).decode())
            await ws.send('{"type": "ping", "id": "last"}')
            got = await answers_until(ws, "last")
            assert [(a["id"], a.get("code")) for a in got] == [("dup", "DUPLICATE_REQUEST_ID"), ("last", None)], got
            got = await answers_until(ws, "dup")
            assert [(a["type"], a["result"]["client_order_id"]) for a in got] == [("accepted", "c1")], got

    run(main)


def test_an_invalid_request_with_a_list_field_names_only_what_is_wrong(tmp_path: Path) -> None:
    """The step-by-step validation ran on the decoded object, where a JSON array is a list and the
    strict models want a tuple: every error message also said "numbers: Input should be a valid
    tuple", whatever was really wrong."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, connect(ex.url) as ws:
            cases: tuple[tuple[dict[str, object], str], ...] = (
                ({"type": "merge_receipts", "id": "a", "numbers": ["W1#1", "W1#2"], "bogus": 1}, "bogus: Extra"),
                ({"type": "merge_receipts", "id": "b", "numbers": ["W1#1"]}, "numbers: Tuple should have at least 2"),
                ({"type": "new_order", "id": "c", "instrument": RB, "client_order_id": "x", "side": "sell",
                  "price": "3500.00", "quantity_lots": -1, "receipts": ["W1#1"]}, "quantity_lots: "),
            )  # fmt: skip
            for request, detail in cases:
                reply = await answer(ws, request)
                assert (reply["type"], reply["id"], reply["code"]) == ("error", request["id"], "INVALID_FIELD"), reply
                assert reply["message"].count(":") == 1, reply  # one error: the one that is there
                assert detail in reply["message"], reply
                assert "tuple" not in reply["message"].replace("Tuple should", ""), reply

    run(main)


# -------------------------------------------------- cancel-on-disconnect per session


def test_cancel_on_disconnect_cancels_only_its_own_sessions_orders(tmp_path: Path) -> None:
    """The flag cancelled every open order of the member (a mass cancel), those of its other
    sessions too. Now: the orders this session entered that are still open, and one it entered
    whose answer was still on its way when it went."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            key = ex.trader_key("M1")
            careful = Client(ex.url, *key, cancel_on_disconnect=True)
            plain = Client(ex.url, *key)
            await careful.connect()
            await plain.connect()
            kept = [(await plain.place_order(RB, "buy", f"{3400 + i}.00", 1))["order_id"] for i in range(2)]
            for i in range(3):
                await careful.place_order(RB, "buy", f"{3390 + i}.00", 1)
            gone = await careful.place_order(RB, "buy", "3393.00", 1)
            await careful.cancel_order(gone["order_id"])  # no longer open: not cancelled again
            ex.sequencer.listeners.insert(0, lambda _batch: time.sleep(0.2))  # the last order's answer waits
            await careful.send_raw(orjson.dumps({"type": "new_order", "id": "late", "instrument": RB,
                                                 "client_order_id": "late", "side": "buy", "price": "3394.00",
                                                 "quantity_lots": 1}).decode())  # fmt: skip
            await careful.close()

            async def open_orders() -> list[int]:
                return sorted(o["order_id"] for o in (await plain.request("orders"))["orders"])

            deadline = asyncio.get_running_loop().time() + 10
            while await open_orders() != sorted(kept):
                assert asyncio.get_running_loop().time() < deadline, await open_orders()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert await open_orders() == sorted(kept)
            await plain.close()

    run(main)


def test_cancel_on_disconnect_waits_out_a_full_queue(tmp_path: Path) -> None:
    """The session's cancels were logged and dropped when the sequencer's queue was full at the
    moment it went, so its orders stayed on the book. Now they wait and are submitted again."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex:
            key = ex.trader_key("M1")
            careful = Client(ex.url, *key, cancel_on_disconnect=True)
            plain = Client(ex.url, *key)
            await careful.connect()
            await plain.connect()
            for i in range(3):
                await careful.place_order(RB, "buy", f"{3390 + i}.00", 1)
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)
            submit_batch = sequencer.submit_batch
            refused: list[int] = []

            def full_for_cancels(commands: Any) -> Any:
                if len(refused) < 4 and all(isinstance(c, CancelOrder) for c in commands):
                    refused.append(len(commands))
                    raise QueueFull(sequencer.queue_max_commands)
                return submit_batch(commands)

            sequencer.submit_batch = full_for_cancels  # type: ignore[method-assign]
            try:
                await careful.close()

                async def open_orders() -> int:
                    return len((await plain.request("orders"))["orders"])

                deadline = asyncio.get_running_loop().time() + 10
                while await open_orders():
                    assert asyncio.get_running_loop().time() < deadline, await open_orders()
                    await asyncio.sleep(0.05)
            finally:
                sequencer.submit_batch = submit_batch  # type: ignore[method-assign]
            assert refused == [3, 3, 3, 3]
            await plain.close()

    run(main)


@pytest.mark.parametrize("writer_process", [False, True], ids=["in-process", "writer-process"])
def test_an_order_from_before_a_restart_is_amended_by_its_owner_only(tmp_path: Path, writer_process: bool) -> None:
    """The gateway takes the resting orders (and their owners) of the recovered core: an amend of
    an order entered before the restart was sent to the core with a placeholder price (and refused
    PRICE_OUT_OF_BAND) because the gateway did not know the order."""
    url = db(tmp_path)
    entered: dict[str, int] = {}

    async def first() -> None:
        async with running_exchange(url, writer_process=writer_process) as ex:
            ex.fund("BOB")
            async with Client(ex.url, *ex.trader_key("ALICE")) as alice:
                entered["order_id"] = (await alice.place_order(RB, "buy", "3490.00", 3))["order_id"]

    async def second() -> None:
        async with running_exchange(url, open_markets=False, writer_process=writer_process) as ex:
            order_id = entered["order_id"]
            async with Client(ex.url, *ex.keys.create("trader", "BOB")) as bob:
                with pytest.raises(RequestError) as info:
                    await bob.amend_order(order_id, "3500.50", 3)
                assert info.value.code == "UNKNOWN_ORDER"
            async with Client(ex.url, *ex.keys.create("trader", "ALICE")) as alice:
                with pytest.raises(RequestError) as info:
                    await alice.amend_order(order_id, "3500.50", 3)
                assert (info.value.code, info.value.seq) == ("PRICE_OFF_TICK", None)
                amended = await alice.amend_order(order_id, "3491.00", 3)
                assert (amended["price"], amended["open_lots"]) == ("3491.00", 3)

    run(first)
    run(second)


def test_an_amend_answers_its_price_as_the_streams_write_it(tmp_path: Path) -> None:
    """The answer echoed the request's text ("3501") where the book, the streams and the queries write
    the instrument's price format ("3501.00")."""

    async def main() -> None:
        async with running_exchange(db(tmp_path)) as ex, Client(ex.url, *ex.trader_key("M1")) as client:
            order = await client.place_order(RB, "buy", "3500", 2)
            amended = await client.amend_order(order["order_id"], "3501", 2)
            assert amended["price"] == "3501.00", amended
            (listed,) = (await client.request("orders"))["orders"]
            assert listed["price"] == amended["price"]

    run(main)
