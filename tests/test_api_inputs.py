"""Every bad input gets its documented error and changes nothing; every
limit is hit at its edge. Real server, raw sockets."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import TEXT, Frame

from api._client import Client, RequestError
from api._harness import running_exchange
from api._keys import derive_signing_key, sign_login
from api._limits import GatewayLimits
from api._protocol import PUSHES, REQUESTS, RESULTS, Accepted
from exchange import Sequencer
from tests.aio import next_answer, run

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"


async def answer(ws: ClientConnection, frame: str | bytes) -> dict[str, Any]:
    """Send a frame and return the next response (skipping pushes)."""
    await ws.send(frame)
    return await next_answer(ws)


def login_frame(key_id: str, secret: str, *, timestamp_ms: int | None = None, nonce: str | None = None,
                signature: str | None = None, rid: str = "login") -> str:  # fmt: skip
    ts = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    nonce = secrets.token_hex(8) if nonce is None else nonce
    signature = signature or sign_login(key_id, derive_signing_key(key_id, secret), ts, nonce)
    return orjson.dumps(
        {"type": "login", "id": rid, "key_id": key_id, "timestamp_ms": ts, "nonce": nonce, "signature": signature}
    ).decode()


def order(**overrides: Any) -> str:
    body = {"type": "new_order", "id": "o1", "instrument": RB, "client_order_id": "c1", "side": "buy",
            "price": "3500.00", "quantity_lots": 1}  # fmt: skip
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...})


BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("not json", "{nope", "MALFORMED_JSON"),
    ("json array", "[1, 2]", "MALFORMED_JSON"),
    ("binary frame", b'{"type": "ping", "id": "p"}', "BINARY_FRAME"),
    ("unknown type", '{"type": "teleport", "id": "t"}', "UNKNOWN_TYPE"),
    ("no type", '{"id": "t"}', "UNKNOWN_TYPE"),
    ("missing id", order(id=...), "INVALID_FIELD"),
    ("price as number", order(price=3500), "INVALID_FIELD"),
    ("quantity as string", order(quantity_lots="1"), "INVALID_FIELD"),
    ("quantity as float", order(quantity_lots=1.0), "INVALID_FIELD"),
    ("unknown field", order(account="SOMEONE"), "INVALID_FIELD"),
    ("negative quantity", order(quantity_lots=-1), "INVALID_FIELD"),
    ("zero quantity", order(quantity_lots=0), "INVALID_FIELD"),
    ("huge quantity", order(quantity_lots=10**30), "INVALID_FIELD"),
    ("negative price", order(price="-3500.00"), "INVALID_FIELD"),
    ("exponent price", order(price="3.5e3"), "INVALID_FIELD"),
    ("huge price", order(price="12345678901.00"), "INVALID_FIELD"),
    ("three decimals", order(price="3500.001"), "INVALID_FIELD"),
    ("off tick", order(price="3500.50"), "PRICE_OFF_TICK"),
    ("zero price", order(price="0.00"), "PRICE_NOT_POSITIVE"),
    ("bad side", order(side="long"), "INVALID_FIELD"),
    ("unknown instrument", order(instrument="GOLD-999"), "UNKNOWN_INSTRUMENT"),
    ("limit without price", order(price=None), "INVALID_FIELD"),
    ("bad order id", '{"type": "cancel_order", "id": "c", "order_id": -5}', "INVALID_FIELD"),
    ("oversized", order(client_order_id="x" * 5000), "MESSAGE_TOO_LARGE"),
    (
        "staff action by trader",
        '{"type": "set_trading_state", "id": "s", "instrument": "RB-HRB400E-20", "state": "halted"}',
        "FORBIDDEN",
    ),
    ("second login", login_frame("kx", "y"), "ALREADY_AUTHENTICATED"),
]


def test_bad_inputs_get_their_error_and_change_nothing(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            key_id, secret = ex.trader_key("M1")
            async with connect(ex.url, max_size=None) as ws:
                # before login
                reply = await answer(ws, order())
                assert reply["code"] == "NOT_AUTHENTICATED"
                assert (await answer(ws, login_frame(key_id, secret)))["type"] == "accepted"
                seq_before = sequencer.last_seq
                hash_before = sequencer.state_hash()
                for name, frame, code in BAD_FRAMES:
                    reply = await answer(ws, frame)
                    assert reply["type"] == "error", name
                    assert reply["code"] == code, (name, reply)
                    assert reply["message"], name
                assert sequencer.last_seq == seq_before
                assert sequencer.state_hash() == hash_before
                # a core reject is sequenced, answered with the core's code and the seq, and the book is unchanged
                reply = await answer(ws, order(price="9999.00"))
                assert reply["code"] == "PRICE_OUT_OF_BAND"
                assert reply["seq"] == seq_before + 1
                assert not ex.sequencer.core.matching.orders
                # still usable afterwards
                reply = await answer(ws, order(client_order_id="c2"))
                assert reply["type"] == "accepted"
                assert reply["result"]["status"] == "open"
                # a frame over the hard cap closes the connection (1009) unread
                await ws.send("x" * (GatewayLimits().max_frame_bytes + 1))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1009

    run(main)


def test_authentication_failures(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            key_id, secret = ex.trader_key("M1")
            now = time.time_ns() // 1_000_000
            skew = GatewayLimits().auth_max_skew_ms
            async with connect(ex.url) as ws:
                cases = [
                    (login_frame("knope", secret), "UNKNOWN_KEY"),
                    (login_frame(key_id, "wrong-secret"), "BAD_SIGNATURE"),
                    (login_frame(key_id, secret, signature="0" * 64), "BAD_SIGNATURE"),
                    (login_frame(key_id, secret, timestamp_ms=now - skew - 1_000), "STALE_TIMESTAMP"),
                    (login_frame(key_id, secret, timestamp_ms=now + skew + 1_000), "STALE_TIMESTAMP"),
                    (login_frame(key_id, secret, nonce="short"), "INVALID_FIELD"),
                ]
                for frame, code in cases:
                    reply = await answer(ws, frame)
                    assert reply["code"] == code, (code, reply)
                # inside the skew window (at the edge, less a margin for the round trip)
                edge = time.time_ns() // 1_000_000 - skew + 2_000  # fresh: the cases above take time on a busy machine
                ok = await answer(ws, login_frame(key_id, secret, timestamp_ms=edge, nonce="nonce-0001"))
                assert ok["type"] == "accepted"
            async with connect(ex.url) as ws:
                reply = await answer(ws, login_frame(key_id, secret, nonce="nonce-0001"))
                assert reply["code"] == "REPLAYED_NONCE"
                assert (await answer(ws, login_frame(key_id, secret)))["type"] == "accepted"
            ex.keys.revoke(key_id)
            async with connect(ex.url) as ws:
                assert (await answer(ws, login_frame(key_id, secret)))["code"] == "KEY_REVOKED"
            # listings, openings, the simulation warehouses, and the member's registration, deposit
            # and receipts (registered and confirmed) only
            from api._harness import HARNESS_RECEIPTS_PER_INSTRUMENT
            from exchange import warehouse_commands

            instruments = [book.instrument for book in ex.sequencer.core.matching.books.values()]
            per_member = 2 + 2 * HARNESS_RECEIPTS_PER_INSTRUMENT * len(ex.symbols)
            expected = len(ex.symbols) * 2 + len(warehouse_commands(instruments)) + per_member * len(ex.funded)
            assert sequencer.last_seq == expected

    run(main)


def test_revoked_key_sessions_are_closed(tmp_path: Any) -> None:
    async def main() -> None:
        limits = GatewayLimits(key_recheck_interval_s=0.1)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            key_id, secret = ex.trader_key("M1")
            client = Client(ex.url, key_id, secret)
            await client.connect()
            ex.keys.revoke(key_id)
            await asyncio.sleep(0.5)
            assert client.close_code == 1008
            assert client.close_reason == "API key revoked"

    run(main)


def test_connection_rate_limit_at_its_edge(tmp_path: Any) -> None:
    async def main() -> None:
        limits = GatewayLimits(connection_rate_per_s=0.001, connection_burst=20)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex, connect(ex.url) as ws:
            codes = [(await answer(ws, f'{{"type": "ping", "id": "p{i}"}}')).get("code") for i in range(25)]
            assert codes == [None] * 20 + ["RATE_LIMITED"] * 5

    run(main)


def test_key_rate_limit_spans_connections(tmp_path: Any) -> None:
    async def main() -> None:
        limits = GatewayLimits(key_rate_per_s=0.001, key_burst=10)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            key = ex.trader_key("M1")
            first, second = Client(ex.url, *key), Client(ex.url, *key)
            await first.connect()
            await second.connect()
            outcomes = []
            for i in range(12):
                client = first if i % 2 else second
                try:
                    await client.request("ping")
                    outcomes.append("ok")
                except RequestError as exc:
                    outcomes.append(exc.code)
            assert outcomes == ["ok"] * 10 + ["KEY_RATE_LIMITED"] * 2
            await first.close()
            await second.close()

    run(main)


def test_subscription_and_session_limits_at_their_edge(tmp_path: Any) -> None:
    async def main() -> None:
        limits = GatewayLimits(max_subscriptions_per_connection=3, max_sessions_per_key=2)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            async with Client(ex.url) as client:
                for channel in ("book", "trades", "ticker"):
                    await client.subscribe(channel, RB)
                with pytest.raises(RequestError) as info:
                    await client.subscribe("state", RB)
                assert info.value.code == "TOO_MANY_SUBSCRIPTIONS"
                with pytest.raises(RequestError) as info:
                    await client.subscribe("book", RB)
                assert info.value.code == "ALREADY_SUBSCRIBED"
                with pytest.raises(RequestError) as info:
                    await client.request("unsubscribe", channel="state", instrument=RB)
                assert info.value.code == "NOT_SUBSCRIBED"
                await client.request("unsubscribe", channel="ticker", instrument=RB)
                await client.subscribe("state", RB)
            key = ex.trader_key("M1")
            sessions = [Client(ex.url, *key) for _ in range(3)]
            await sessions[0].connect()
            await sessions[1].connect()
            with pytest.raises(RequestError) as info:
                await sessions[2].connect()
            assert info.value.code == "TOO_MANY_SESSIONS"
            await sessions[0].close()
            await asyncio.sleep(0.05)
            await sessions[2].reconnect()
            for session in sessions:
                await session.close()

    run(main)


def test_pending_commands_limit_at_its_edge(tmp_path: Any) -> None:
    async def main() -> None:
        limits = GatewayLimits(max_pending_per_connection=2)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            client = Client(ex.url, *ex.trader_key("M1"))
            await client.connect()
            # hold the writer after each commit so answers wait
            ex.sequencer.listeners.insert(0, lambda _batch: time.sleep(0.3))
            results = await asyncio.gather(
                *(client.place_order(RB, "buy", f"{3400 + i}.00", 1) for i in range(4)), return_exceptions=True
            )
            codes = [r.code if isinstance(r, RequestError) else "ok" for r in results]
            assert codes == ["ok", "ok", "TOO_MANY_PENDING", "TOO_MANY_PENDING"]
            await client.close()

    run(main)


def test_every_message_matches_its_model(tmp_path: Any) -> None:
    """Raw frames of a session with every channel validate against the protocol's models."""

    async def main() -> None:
        limits = GatewayLimits(heartbeat_interval_s=0.05)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            key_id, secret = ex.trader_key("M1")
            seen: set[str] = set()
            async with connect(ex.url) as ws, Client(ex.url, *ex.trader_key("M2")) as other:
                assert (await answer(ws, login_frame(key_id, secret)))["type"] == "accepted"
                requests: list[dict[str, Any]] = [
                    {"type": "subscribe", "channel": c, "instrument": RB}
                    for c in ("book", "top", "trades", "ticker", "state")
                ]
                requests += [{"type": "subscribe", "channel": c} for c in ("orders", "executions")]
                requests += [json.loads(order(client_order_id="m1", quantity_lots=5))]
                requests += [json.loads(order(client_order_id="m2", side="sell", price="3600.00"))]
                requests += [{"type": t} for t in ("instruments", "orders", "fills", "ping")]
                requests += [{"type": "snapshot", "channel": "book", "instrument": RB}]
                for n, request in enumerate(requests):
                    await ws.send(json.dumps({**request, "id": f"q{n}"}))
                await other.place_order(RB, "sell", "3500.00", 2)
                await other.place_order(RB, "buy", "3600.00", 1, time_in_force="ioc")
                deadline = asyncio.get_running_loop().time() + 1.0
                while asyncio.get_running_loop().time() < deadline:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.3)
                    except TimeoutError:
                        break
                    message = orjson.loads(raw)
                    kind = message["type"]
                    seen.add(kind if kind not in ("accepted",) else f"accepted:{message['request']}")
                    if kind == "accepted":
                        Accepted.model_validate_json(raw)
                        RESULTS[message["request"]].model_validate_json(orjson.dumps(message["result"]))
                    elif kind == "error":
                        raise AssertionError(message)
                    else:
                        PUSHES[kind].model_validate_json(raw)
            expected = {"book", "top", "trades", "ticker", "state", "orders", "executions", "heartbeat"}
            expected |= {f"accepted:{t}" for t in ("subscribe", "new_order", "instruments", "orders",
                                                   "fills", "ping", "snapshot")}  # fmt: skip
            assert expected <= seen, expected - seen

    run(main)


def test_fragmented_messages_keep_their_order_and_bad_utf8_closes_1007(tmp_path: Any) -> None:
    """Complete frames are handled straight from the protocol; a fragmented message switches the
    connection to reassembly without reordering anything; invalid UTF-8 in a text frame closes 1007."""

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            async with connect(ex.url) as ws:
                await ws.send(orjson.dumps({"type": "ping", "id": "a"}), text=True)
                fragments = [b'{"type": "ping", ', b'"id": "b"}']
                await ws.send(iter(fragments), text=True)
                await ws.send(orjson.dumps({"type": "ping", "id": "c"}), text=True)
                await ws.send(b"\x00binary")
                await ws.send(orjson.dumps({"type": "ping", "id": "d"}), text=True)
                seen: list[tuple[str | None, str | None]] = []
                while len(seen) < 5:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                    if message["type"] in ("accepted", "error"):
                        seen.append((message["id"], message.get("code")))
                assert seen == [("a", None), ("b", None), ("c", None), (None, "BINARY_FRAME"), ("d", None)]
            async with connect(ex.url) as ws:
                await ws.send(orjson.dumps({"type": "ping", "id": "a"}), text=True)
                assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["id"] == "a"
                ws.protocol.send_frame(Frame(TEXT, b'{"type": "ping", "id": "\xff"}'))
                ws.send_data()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert ws.close_code == 1007

    run(main)


_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["buy", "sell", "gtc", "ioc", "3500.00", "3500.5", RB, "limit", "market"]),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip


@given(
    request_type=st.sampled_from([*sorted(REQUESTS.models), "nope"]),
    fields=st.dictionaries(
        st.sampled_from(["id", "instrument", "client_order_id", "side", "price", "quantity_lots", "order_id",
                         "time_in_force", "order_type", "channel", "limit", "extra", "type"]),
        _FIELD_VALUES, max_size=8,
    ),
    as_text=st.sampled_from(["orjson", "json", "raw"]),
)  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_one_pass_parse_accepts_exactly_what_decode_then_validate_accepts(
    request_type: str, fields: dict[str, Any], as_text: str
) -> None:
    body = {"type": request_type, "id": "r1", **fields}
    if as_text == "orjson":
        try:
            text = orjson.dumps(body).decode()
        except TypeError:  # integers beyond 64 bits
            text = json.dumps(body)
    elif as_text == "json":
        text = json.dumps(body)
    else:  # duplicate keys, spacing
        text = json.dumps(body)[:-1] + ', "id": "r2"}'
    try:
        slow: Any = None
        data = orjson.loads(text)
        if type(data) is dict and type(data.get("type")) is str and data["type"] in REQUESTS.models:
            slow = REQUESTS.parse(data)
    except (orjson.JSONDecodeError, ValidationError):
        slow = None
    try:
        fast: Any = REQUESTS.parse_json(text)
    except ValidationError:
        fast = None
    if fast is not None:  # what the fast path accepts, the step-by-step path accepts, identically
        assert slow == fast, (text, slow, fast)
    if slow is not None:
        assert fast == slow, (text, slow, fast)


# ------------------------------------------------------------ money and goods

STEEL_RECEIPT: dict[str, Any] = {
    "number": "R1", "holder": "M1", "instrument": RB, "weight_kg": 20_000, "pieces": 10, "lot_numbers": "HEAT-1",
    "certificate_no": "CERT-1", "steel_grade": "HRB400E", "dimensions": "20 mm x 12 m", "location": "bay 1",
}  # fmt: skip

LISTING: dict[str, Any] = {
    "symbol": "RB-NEW", "commodity": "steel", "product": "rebar", "grade": "HRB400E 20 mm",
    "warehouse_group": "EAST-STEEL", "lot_size_t": 10, "tick": "1.00", "reference_price": "3500.00",
    "price_band_bps": 500, "min_lots": 1, "max_lots": 100,
}  # fmt: skip

# a valid body of every request a role may be refused (the role matrix sends each from every role)
MONEY_AND_GOODS: dict[str, dict[str, Any]] = {
    "new_order": {
        "instrument": RB,
        "client_order_id": "c-matrix",
        "side": "buy",
        "price": "3500.00",
        "quantity_lots": 1,
    },
    "cancel_order": {"order_id": 1},
    "amend_order": {"order_id": 1, "price": "3500.00", "quantity_lots": 1},
    "mass_cancel": {},
    "set_trading_state": {"instrument": RB, "state": "halted"},
    "orders": {"account": "M1"},
    "fills": {"account": "M1"},
    "balances": {},
    "withdrawals": {},
    "receipts": {"warehouse": "W1"},
    "deals": {"warehouse": "W1"},
    "bank_files": {"bank": "SIMBANK"},
    "request_withdrawal": {"withdrawal_id": "w-matrix", "amount": "1.00", "account": "M1"},
    "approve_withdrawal": {"withdrawal_id": "w-none"},
    "pay_deal": {"deal_id": 999_999},
    "resolve_dispute": {"deal_id": 999_999, "resolution": "cancel"},
    "confirm_receipt": {"number": "NOPE"},
    "request_load_out": {"number": "NOPE"},
    "register_receipt": {**STEEL_RECEIPT, "instrument": "GOLD-999"},
    "confirm_delivery": {"deal_id": 999_999, "actual_weight_kg": 10_000, "quality_pass": True, "pieces": 5},
    "confirm_load_out": {"number": "NOPE", "weight_kg": 10_000},
    "cancel_withdrawal": {"withdrawal_id": "w-none"},
    "pledge_receipt": {"number": "NOPE", "bank": "SIMBANK"},
    "release_pledge": {"number": "NOPE"},
    "split_receipt": {"number": "NOPE", "weight_kg": 1_000, "pieces": 1},
    "merge_receipts": {"numbers": ["NOPE", "NOPE-2"]},
    "withdraw_load_out": {"number": "NOPE"},
    "void_receipt": {"number": "NOPE"},
    "freeze_receipt": {"number": "NOPE", "reason": "dispute"},
    "unfreeze_receipt": {"number": "NOPE", "reason": "dispute"},
    "declare_default": {"deal_id": 999_999},
    "sweep_deadlines": {},
    "settle_delivery": {"deal_id": 999_999},
    "require_receipts": {"instrument": RB, "required": True},
    "list_instrument": LISTING,
    "add_warehouse": {"warehouse_id": "W-MATRIX", "name": "matrix", "groups": ["EAST-STEEL"]},
    "add_operator": {"operator_id": "op-matrix", "warehouse_id": "W1"},
    "resolve_break": {"break_id": 999_999},
}


def frame(request_type: str, rid: str = "m", **fields: Any) -> str:
    return json.dumps({"type": request_type, "id": rid, **fields})


def test_every_role_that_must_not_send_a_money_or_goods_request_is_refused(tmp_path: Any) -> None:
    from api._handlers import HANDLERS

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            keys = {
                "trader": ex.trader_key("M1"),
                "operator": ex.warehouse("W1", ("EAST-STEEL",), "op1"),
                "bank": ex.bank_key(),
                "staff": ex.staff,
            }
            # every request with a role table is in the matrix (a new one must be added here)
            assert set(MONEY_AND_GOODS) == {t for t, h in HANDLERS.handlers.items() if h.roles is not None}
            seq_before = sequencer.last_seq
            refused = 0
            for role, (key_id, secret) in keys.items():
                async with connect(ex.url) as ws:
                    for request_type, body in MONEY_AND_GOODS.items():
                        if role == "staff":  # before login: nothing but NOT_AUTHENTICATED
                            reply = await answer(ws, frame(request_type, **body))
                            assert reply["code"] == "NOT_AUTHENTICATED", (request_type, reply)
                    assert (await answer(ws, login_frame(key_id, secret)))["type"] == "accepted"
                    for request_type, body in MONEY_AND_GOODS.items():
                        roles = HANDLERS.handlers[request_type].roles
                        assert roles is not None, request_type
                        if role in roles:
                            continue
                        reply = await answer(ws, frame(request_type, **body))
                        assert reply["code"] == "FORBIDDEN", (role, request_type, reply)
                        refused += 1
            assert refused >= 70
            assert sequencer.last_seq == seq_before  # nothing reached the sequencer

    run(main)


Refusal = tuple[tuple[str, str], str, dict[str, Any], str]  # key, request type, its fields, the error code


def test_bad_money_and_goods_inputs_get_their_error_and_change_nothing(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            trader = ex.trader_key("M1")
            operator = ex.warehouse("W1", ("EAST-STEEL",), "op1")
            ghost = ex.keys.create("operator", "ghost", "an operator account never opened")
            bank = ex.bank_key()
            schema_errors: list[tuple[str, dict[str, Any]]] = [
                ("register_receipt", {**STEEL_RECEIPT, "weight_kg": -5}),
                ("register_receipt", {**STEEL_RECEIPT, "weight_kg": "20000"}),
                ("register_receipt", {**STEEL_RECEIPT, "weight_kg": 20000.0}),
                ("register_receipt", {**STEEL_RECEIPT, "weight_kg": 0}),
                ("register_receipt", {**STEEL_RECEIPT, "pieces": -1}),
                ("register_receipt", {**STEEL_RECEIPT, "holder": ""}),
                ("register_receipt", {**STEEL_RECEIPT, "colour": "red"}),
                ("register_receipt", {k: v for k, v in STEEL_RECEIPT.items() if k != "certificate_no"}),
                ("confirm_delivery", {"deal_id": 1, "actual_weight_kg": -98_000, "quality_pass": True}),
                ("confirm_delivery", {"deal_id": 1, "actual_weight_kg": 98_000, "quality_pass": "yes"}),
                ("confirm_delivery", {"deal_id": 0, "actual_weight_kg": 98_000, "quality_pass": True}),
                ("confirm_delivery", {"deal_id": "1", "actual_weight_kg": 98_000, "quality_pass": True}),
                ("confirm_load_out", {"number": "R1", "weight_kg": -1}),
                ("confirm_load_out", {"number": "R 1", "weight_kg": 1}),
            ]
            trader_schema_errors: list[tuple[str, dict[str, Any]]] = [
                ("request_withdrawal", {"withdrawal_id": "w1", "amount": 100}),
                ("request_withdrawal", {"withdrawal_id": "w1", "amount": "-5.00"}),
                ("request_withdrawal", {"withdrawal_id": "w1", "amount": "1.001"}),
                ("request_withdrawal", {"withdrawal_id": "w1", "amount": "1e3"}),
                ("request_withdrawal", {"withdrawal_id": "", "amount": "1.00"}),
                ("pay_deal", {"deal_id": -1}),
                ("confirm_receipt", {"number": 5}),
                ("balances", {"holds_limit": 0}),
                ("receipts", {"state": "gone"}),
                ("deals", {"limit": 10**6}),
                ("cancel_withdrawal", {"withdrawal_id": ""}),
                ("pledge_receipt", {"number": "R1", "bank": ""}),
                ("pledge_receipt", {"number": "R1"}),
                ("split_receipt", {"number": "R1", "weight_kg": -1, "pieces": 0}),
                ("split_receipt", {"number": "R1", "weight_kg": 1000, "pieces": "1"}),
                ("split_receipt", {"number": "R1", "weight_kg": 10**13}),
                ("merge_receipts", {"numbers": ["R1"]}),
                ("merge_receipts", {"numbers": [f"R{n}" for n in range(101)]}),
                ("merge_receipts", {"numbers": "R1,R2"}),
                ("withdraw_load_out", {"number": "R,1"}),
            ]
            staff_schema_errors: list[tuple[str, dict[str, Any]]] = [
                ("freeze_receipt", {"number": "R1", "reason": ""}),
                ("unfreeze_receipt", {"number": "R1"}),
                ("declare_default", {"deal_id": 0}),
                ("settle_delivery", {"deal_id": "7"}),
                ("sweep_deadlines", {"staff": "me"}),
                ("require_receipts", {"instrument": RB, "required": "yes"}),
                ("list_instrument", {**LISTING, "lot_size_t": 0}),
                ("list_instrument", {**LISTING, "tick": "0.001"}),
                ("list_instrument", {**LISTING, "margin_rate_bps": 10_001}),
                ("list_instrument", {**LISTING, "payment_days": 61}),
                ("list_instrument", {**LISTING, "sessions": [{"at": "25:00", "state": "auction"}]}),
                ("list_instrument", {**LISTING, "sessions": [{"at": "09:00", "state": "halted"}]}),
                ("list_instrument", {**LISTING, "colour": "red"}),
                ("list_instrument", {k: v for k, v in LISTING.items() if k != "tick"}),
                ("add_warehouse", {"warehouse_id": "W#9", "name": "yard", "groups": ["EAST-STEEL"]}),
                ("add_warehouse", {"warehouse_id": "W9", "name": "yard", "groups": []}),
                ("add_warehouse", {"warehouse_id": "W9", "name": "", "groups": ["EAST-STEEL"]}),
                ("add_operator", {"operator_id": "op 9", "warehouse_id": "W1"}),
                ("resolve_break", {"break_id": 0}),
                ("resolve_break", {"break_id": 1, "note": "x" * 201}),
            ]
            gateway_refusals: list[Refusal] = [  # answered before the sequencer
                (trader, "cancel_withdrawal", {"withdrawal_id": "w-none"}, "UNKNOWN_REQUEST"),
                (trader, "pledge_receipt", {"number": "R1", "bank": "NOBANK"}, "UNKNOWN_BANK"),
                (ex.staff, "require_receipts", {"instrument": "GOLD-999", "required": True}, "UNKNOWN_INSTRUMENT"),
                (ex.staff, "list_instrument", {**LISTING, "symbol": RB}, "INSTRUMENT_EXISTS"),
                (ex.staff, "list_instrument", {**LISTING, "reference_price": "3500.50"}, "PRICE_OFF_TICK"),
                (ex.staff, "list_instrument", {**LISTING, "min_lots": 9, "max_lots": 3}, "INVALID_FIELD"),
            ]
            core_refusals: list[Refusal] = [  # sequenced, refused by the core, nothing changed
                (operator, "register_receipt", {**STEEL_RECEIPT, "instrument": "GOLD-999"}, "UNKNOWN_INSTRUMENT"),
                (operator, "register_receipt", {**STEEL_RECEIPT, "pieces": 0}, "BAD_PIECES"),
                (operator, "register_receipt", {**STEEL_RECEIPT, "weight_kg": 10**11}, "BAD_WEIGHT"),
                (operator, "register_receipt", {**STEEL_RECEIPT, "number": "R#1"}, "BAD_RECEIPT_NUMBER"),
                (ghost, "register_receipt", STEEL_RECEIPT, "UNKNOWN_OPERATOR"),
                (operator, "confirm_load_out", {"number": "NOPE", "weight_kg": 10}, "UNKNOWN_RECEIPT"),
                (operator, "confirm_delivery", {"deal_id": 424_242, "actual_weight_kg": 10, "quality_pass": True},
                 "UNKNOWN_DEAL"),
                (trader, "confirm_receipt", {"number": "NOPE"}, "UNKNOWN_RECEIPT"),
                (trader, "request_load_out", {"number": "NOPE"}, "UNKNOWN_RECEIPT"),
                (trader, "pay_deal", {"deal_id": 424_242}, "UNKNOWN_DEAL"),
                (ex.staff, "resolve_dispute", {"deal_id": 424_242, "resolution": "cancel"}, "UNKNOWN_DEAL"),
                (ex.staff, "approve_withdrawal", {"withdrawal_id": "w-none"}, "UNKNOWN_REQUEST"),
                (ex.staff, "cancel_withdrawal", {"withdrawal_id": "w-none"}, "UNKNOWN_REQUEST"),
                (trader, "pledge_receipt", {"number": "NOPE", "bank": "SIMBANK"}, "UNKNOWN_RECEIPT"),
                (bank, "release_pledge", {"number": "NOPE"}, "UNKNOWN_RECEIPT"),
                (trader, "split_receipt", {"number": "NOPE", "weight_kg": 1_000, "pieces": 1}, "UNKNOWN_RECEIPT"),
                (trader, "merge_receipts", {"numbers": ["NOPE", "NOPE-2"]}, "UNKNOWN_RECEIPT"),
                (trader, "merge_receipts", {"numbers": ["NOPE", "NOPE"]}, "REPEATED_RECEIPT"),
                (trader, "withdraw_load_out", {"number": "NOPE"}, "UNKNOWN_RECEIPT"),
                (operator, "void_receipt", {"number": "NOPE"}, "UNKNOWN_RECEIPT"),
                (ex.staff, "freeze_receipt", {"number": "NOPE", "reason": "dispute"}, "UNKNOWN_RECEIPT"),
                (ex.staff, "unfreeze_receipt", {"number": "NOPE", "reason": "dispute"}, "UNKNOWN_RECEIPT"),
                (ex.staff, "declare_default", {"deal_id": 424_242}, "UNKNOWN_DEAL"),
                (ex.staff, "settle_delivery", {"deal_id": 424_242}, "UNKNOWN_DEAL"),
                (ex.staff, "add_warehouse", {"warehouse_id": "W1", "name": "again", "groups": ["EAST-STEEL"]},
                 "WAREHOUSE_EXISTS"),
                (ex.staff, "add_warehouse", {"warehouse_id": "W9", "name": "yard", "groups": ["A", "A"]},
                 "BAD_WAREHOUSE"),
                (ex.staff, "add_operator", {"operator_id": "op1", "warehouse_id": "W1"}, "OPERATOR_EXISTS"),
                (ex.staff, "add_operator", {"operator_id": "op9", "warehouse_id": "W404"}, "UNKNOWN_WAREHOUSE"),
                (ex.staff, "resolve_break", {"break_id": 999}, "UNKNOWN_BREAK"),
                (ex.staff, "list_instrument", {**LISTING, "sessions": [{"at": "10:00", "state": "auction"},
                                                                       {"at": "09:00", "state": "continuous"}]},
                 "BAD_INSTRUMENT"),
            ]  # fmt: skip
            seq_before = sequencer.last_seq
            hash_before = sequencer.state_hash()
            receipts_before = set(ex.sequencer.core.warehouse.receipts)
            for key, errors in ((operator, schema_errors), (trader, trader_schema_errors),
                                (ex.staff, staff_schema_errors)):  # fmt: skip
                async with connect(ex.url) as ws:
                    assert (await answer(ws, login_frame(*key)))["type"] == "accepted"
                    for n, (request_type, body) in enumerate(errors):
                        reply = await answer(ws, frame(request_type, f"b{n}", **body))
                        assert reply["code"] == "INVALID_FIELD", (request_type, body, reply)
                        assert reply["message"]
            for n, (key, request_type, body, code) in enumerate(gateway_refusals):
                async with connect(ex.url) as ws:
                    assert (await answer(ws, login_frame(*key)))["type"] == "accepted"
                    reply = await answer(ws, frame(request_type, f"g{n}", **body))
                    assert (reply["code"], reply.get("seq")) == (code, None), (request_type, body, reply)
            assert sequencer.last_seq == seq_before
            for n, (key, request_type, body, code) in enumerate(core_refusals):
                async with connect(ex.url) as ws:
                    assert (await answer(ws, login_frame(*key)))["type"] == "accepted"
                    reply = await answer(ws, frame(request_type, f"c{n}", **body))
                    assert reply["code"] == code, (request_type, body, reply)
                    assert reply["seq"] == seq_before + n + 1, reply
            assert sequencer.state_hash() == hash_before
            assert set(ex.sequencer.core.warehouse.receipts) == receipts_before
            # a refused withdrawal id is remembered (exactly once), and no money moves
            async with Client(ex.url, *trader) as client:
                before = await client.balances()
                with pytest.raises(RequestError) as info:
                    await client.request("request_withdrawal", withdrawal_id="w0", amount="0.00")
                assert info.value.code == "BAD_AMOUNT"
                with pytest.raises(RequestError) as info:
                    await client.request("request_withdrawal", withdrawal_id="w0", amount="5.00")
                assert info.value.code == "BAD_AMOUNT"  # a repeat of the id answers as the first
                assert await client.balances() == before

    run(main)
