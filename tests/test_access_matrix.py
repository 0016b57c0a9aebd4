"""The access matrix of the gateway, driven by its own tables: every request type in the
handler registry (``HANDLERS``, with the roles each may be sent by) and every channel of the
protocol, tried by every role and without a login, over real sockets.

- a request type is refused to every role not in its handler's roles (FORBIDDEN) and to a
  connection without a login (NOT_AUTHENTICATED), before anything is sequenced: the journal
  does not grow and the core's state hash is unchanged; a role that may send it is never
  refused for its role. New request types join the matrix by being registered: their valid
  example is built from the request model's JSON schema.
- private channels: a trader sees its own member only, staff name the account, every other
  role and no login are refused; public channels are open to all.
- no error message leaks another member's data (its account, client order ids, prices).
- logins: a wrong signature, a replayed nonce, a stale timestamp, another key's signature and
  a revoked key are refused; revoking a key closes its live sessions.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import find
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api._client import Client, RequestError
from api._handlers import ALL_ROLES, HANDLERS
from api._harness import RunningExchange, running_exchange
from api._keys import derive_signing_key, sign_login
from api._limits import GatewayLimits
from api._protocol import PRIVATE_CHANNELS, PUBLIC_CHANNELS, REQUESTS
from exchange import Sequencer

pytestmark = pytest.mark.timeout(180)

RB = "RB-HRB400E-20"
SUBJECTS = {"trader": "T1", "operator": "OP1", "bank": "SIMBANK", "staff": ""}
KNOWN_VALUES: dict[str, Any] = {
    "instrument": RB, "price": "3500.00", "quantity_lots": 1, "side": "buy", "client_order_id": "acc-1",
    "state": "halted", "channel": "trades", "order_id": 1, "resolution": "cancel",
    "numbers": ("ACC-R1", "ACC-R2"), "groups": ("EAST-STEEL",),  # tuples: the models are strict
}  # fmt: skip


# The policy of record for the request types that existed when this matrix was written: a
# change to their roles in the registry must be deliberate (and made here too). Types added
# later are checked against their registered roles alone.
POLICY = {
    "new_order": {"trader"}, "cancel_order": {"trader"}, "amend_order": {"trader"}, "mass_cancel": {"trader"},
    "set_trading_state": {"staff"}, "orders": {"trader", "staff", "bank"}, "fills": {"trader", "staff", "bank"},
}  # fmt: skip


def test_registered_roles_match_the_policy() -> None:
    for request_type, roles in POLICY.items():
        handler = HANDLERS.handlers.get(request_type)
        assert handler is not None, request_type
        assert handler.roles == frozenset(roles), (request_type, handler.roles)
    for request_type in ("login", "ping", "instruments", "subscribe", "unsubscribe", "snapshot"):
        assert HANDLERS.handlers[request_type].roles is None, request_type
    assert set(HANDLERS.handlers) <= set(REQUESTS.models), "a handler without a request model"


def run(make: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(make())  # type: ignore[arg-type]


def _value(name: str, prop: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in prop:
        return _value(name, defs[prop["$ref"].rsplit("/", 1)[1]], defs)
    allowed = prop.get("enum", [prop["const"]] if "const" in prop else None)
    if name in KNOWN_VALUES and (allowed is None or KNOWN_VALUES[name] in allowed):
        return KNOWN_VALUES[name]  # a field of the same name may mean something else elsewhere
    if "const" in prop:
        return prop["const"]
    if "enum" in prop:
        return prop["enum"][0]
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return _value(name, option, defs)
    kind = prop.get("type")
    if kind == "integer":
        return max(int(prop.get("minimum", 1)), 1)
    if kind == "boolean":
        return False
    if kind == "string":
        if "pattern" in prop:
            return find(st.from_regex(prop["pattern"], fullmatch=True), lambda s: True)
        return "x" * max(int(prop.get("minLength", 1)), 1)
    raise AssertionError(f"cannot build an example for field {name}: {prop}")


def example(request_type: str, rid: str) -> dict[str, Any]:
    """A valid request of `request_type`, built from its model's JSON schema (every required
    field, and the optional ones with a known meaningful value, such as a limit order's price)."""
    return {**_example(request_type), "id": rid}


@functools.cache
def _example(request_type: str) -> dict[str, Any]:
    """Built once per type: a field with a pattern is drawn by hypothesis, which takes a while."""
    rid = "example"
    model = REQUESTS.models[request_type]
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    body = {"type": request_type, "id": rid}
    for name, prop in schema["properties"].items():
        if name not in body and (name in schema.get("required", []) or name in KNOWN_VALUES):
            body[name] = _value(name, prop, defs)
    model.model_validate(body)  # a new request type whose fields this cannot build fails here, by name
    return body


class Raw:
    """A raw connection: requests by frame, answers by id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.n = 0

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.ws.send(orjson.dumps(body).decode())
        while True:
            message: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if message.get("type") in ("accepted", "error") and message.get("id") == body["id"]:
                return message

    async def login(self, key_id: str, secret: str, nonce: str | None = None, ts: int | None = None,
                    signing_key: bytes | None = None) -> dict[str, Any]:  # fmt: skip
        self.n += 1
        ts = time.time_ns() // 1_000_000 if ts is None else ts
        nonce = nonce or f"nonce{time.time_ns()}"
        signing = signing_key if signing_key is not None else derive_signing_key(key_id, secret)
        return await self.ask({"type": "login", "id": f"login{self.n}", "key_id": key_id, "timestamp_ms": ts,
                               "nonce": nonce, "signature": sign_login(key_id, signing, ts, nonce)})  # fmt: skip


async def _connect(ex: RunningExchange, role: str | None, keys: dict[str, tuple[str, str]]) -> Raw:
    raw = Raw(await connect(ex.url, max_size=None, compression=None))
    if role is not None:
        answer = await raw.login(*keys[role])
        assert answer["type"] == "accepted", answer
    return raw


def _keys(ex: RunningExchange) -> dict[str, tuple[str, str]]:
    """A key per role: trader of T1, the operator account of warehouse W1, the simulation bank, staff."""
    keys = {"trader": ex.trader_key("T1")}
    groups = tuple(sorted({book.instrument.warehouse_group for book in ex.sequencer.core.matching.books.values()}))
    keys["operator"] = ex.warehouse("W1", groups, SUBJECTS["operator"])
    keys["bank"] = ex.keys.create("bank", SUBJECTS["bank"], "matrix bank")
    keys["staff"] = ex.staff
    assert set(keys) == ALL_ROLES, sorted(ALL_ROLES)
    return keys


def _private_answer(channel: str, role: str | None, account: str | None) -> str | None:
    """The error code a subscription to a private channel gets (None: accepted). T1 and T2 are
    members of the simulation bank; the operator works for W1."""
    if role is None:
        return "NOT_AUTHENTICATED"
    if role == "operator" and channel in ("receipts", "deliveries"):
        return None if account is None else "FORBIDDEN"  # its own warehouse's stream only
    if role == "bank" and channel == "balances":
        return "INVALID_FIELD" if account is None else None  # one supervised member per subscription
    if role == "trader":
        return None if account in (None, "T1") else "FORBIDDEN"
    if role == "staff":
        return None if account is not None else "INVALID_FIELD"  # staff must name the account
    return "FORBIDDEN"


def test_every_request_type_is_refused_to_every_role_that_must_not_use_it(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            keys = _keys(ex)
            tried = refused = 0
            for request_type, handler in sorted(HANDLERS.handlers.items()):
                if handler.roles is None:
                    continue  # open to all (login, ping, market data): their checks are per channel, below
                assert handler.roles <= ALL_ROLES, (request_type, handler.roles)
                for role in [None, *sorted(ALL_ROLES)]:
                    raw = await _connect(ex, role, keys)
                    seq, state = sequencer.committed_seq, sequencer.state_hash()
                    answer = await raw.ask(example(request_type, f"{request_type}-{role}"))
                    await raw.ws.close()
                    tried += 1
                    if role is None:
                        assert answer.get("code") == "NOT_AUTHENTICATED", (request_type, answer)
                    elif role not in handler.roles:
                        assert answer.get("code") == "FORBIDDEN", (request_type, role, answer)
                        assert f"a {role} key may not send {request_type}" in answer["message"], answer
                    else:  # may send it: never refused for its role (the handler may still refuse the content)
                        assert f"key may not send {request_type}" not in answer.get("message", ""), answer
                        continue
                    refused += 1
                    assert sequencer.committed_seq == seq, (request_type, role, "journal grew")
                    assert sequencer.state_hash() == state, (request_type, role, "state changed")
            print(f"access matrix: {tried} (request type, role) pairs tried, {refused} refused as they must be")
            assert refused > 0

    run(body)


def test_private_channels_only_for_their_member(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            keys = _keys(ex)
            ex.fund("T2")
            for channel in PRIVATE_CHANNELS:
                for role in [None, *sorted(ALL_ROLES)]:
                    for account in (None, "T1", "T2"):
                        raw = await _connect(ex, role, keys)
                        request = {"type": "subscribe", "id": f"s-{channel}-{role}-{account}", "channel": channel}
                        if account is not None:
                            request["account"] = account
                        answer = await raw.ask(request)
                        await raw.ws.close()
                        code = _private_answer(channel, role, account)
                        if code is None:
                            assert answer["type"] == "accepted", (channel, role, account, answer)
                        else:
                            assert answer.get("code") == code, (channel, role, account, answer)
            for channel in PUBLIC_CHANNELS:
                for role in [None, *sorted(ALL_ROLES)]:
                    raw = await _connect(ex, role, keys)
                    answer = await raw.ask({"type": "subscribe", "id": "p", "channel": channel, "instrument": RB})
                    await raw.ws.close()
                    assert answer["type"] == "accepted", (channel, role, answer)

    run(body)


def test_no_error_leaks_another_members_data(tmp_path: Path) -> None:
    async def body() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            victim_key, other_key = ex.trader_key("T2"), ex.trader_key("T1")
            async with Client(ex.url, *victim_key) as victim, Client(ex.url, *other_key) as other:
                order = await victim.place_order(RB, "sell", "3612.00", 7, client_order_id="secret-cid-77")
                secrets = ("T2", "secret-cid-77", "3612", "S-T2")
                attempts = [
                    other.cancel_order(order["order_id"]),
                    other.amend_order(order["order_id"], "3600.00", 3),
                    other.request("orders", account="T2"),
                    other.request("fills", account="T2"),
                    other.request("subscribe", channel="orders", account="T2"),
                    other.place_order(RB, "buy", "3400.00", 1, client_order_id="secret-cid-77"),
                ]
                for attempt in attempts:
                    try:
                        result = await attempt
                    except RequestError as exc:
                        result = {"error": exc.code, "message": exc.message}
                    if "error" in result:
                        assert not any(s in result["message"] for s in secrets), result
                    else:  # the same client order id in another account is a new order of T1's own
                        assert result.get("duplicate") is False, result
                        assert result["order_id"] != order["order_id"], result
                        assert "T2" not in orjson.dumps(result).decode(), result
                still = await victim.request("orders", status="open")
                assert [o["order_id"] for o in still["orders"]] == [order["order_id"]], still
                assert still["orders"][0]["open_lots"] == 7, still

    run(body)


async def _ping_until_closed(raw: Raw) -> None:
    for _ in range(100):
        await raw.ask({"type": "ping", "id": f"p{time.time_ns()}"})
        await asyncio.sleep(0.05)


def test_signatures_nonces_and_revocation(tmp_path: Path) -> None:
    async def body() -> None:
        limits = GatewayLimits(key_recheck_interval_s=0.2)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            key_id, secret = ex.trader_key("T1")
            other_id, other_secret = ex.trader_key("T2")
            raw = Raw(await connect(ex.url))
            wrong = await raw.login(key_id, secret, signing_key=derive_signing_key(key_id, secret + "x"))
            assert wrong.get("code") == "BAD_SIGNATURE", wrong
            borrowed = await raw.login(key_id, secret, signing_key=derive_signing_key(other_id, other_secret))
            assert borrowed.get("code") == "BAD_SIGNATURE", borrowed
            stale = await raw.login(key_id, secret, ts=time.time_ns() // 1_000_000 - 10 * 60_000)
            assert stale.get("code") == "STALE_TIMESTAMP", stale
            unknown = await raw.login("k" + "0" * 24, secret)
            assert unknown.get("code") == "UNKNOWN_KEY", unknown
            first = await raw.login(key_id, secret, nonce="nonce-once-1")
            assert first["type"] == "accepted", first
            again = Raw(await connect(ex.url))
            replayed = await again.login(key_id, secret, nonce="nonce-once-1")
            assert replayed.get("code") == "REPLAYED_NONCE", replayed
            assert ex.keys.revoke(key_id)
            with pytest.raises(ConnectionClosed) as closed:  # the live session is closed
                await _ping_until_closed(raw)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008, closed.value
            revoked = await again.login(key_id, secret)
            assert revoked.get("code") == "KEY_REVOKED", revoked

    run(body)
